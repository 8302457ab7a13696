"""datasets.load and its resolution order, verification, caches and fallback (real files)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import time

import numpy as np
import pytest

from mnistlab import datasets
from mnistlab.datasets import registry, store
from mnistlab.errors import DataError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_loads_and_verifies_by_gz_hash(mnist_dir, mnistlab_home):
    ds = datasets.load("mnist", data_dir=mnist_dir)
    assert ds.name == "mnist" and ds.note is None
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (10000, 28, 28) and ds.y_test.dtype == np.uint8
    assert np.bincount(ds.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(ds.y_test).tolist() == MNIST_TEST_COUNTS
    assert abs(float(ds.x_train.mean()) - 33.32) < 0.01
    assert set(ds.verified_by.values()) == {"gz-sha256"}
    assert ds.source == f"data_dir: {mnist_dir}"
    assert ds.checksums["train-images-idx3-ubyte.gz"].startswith("ba891046e650")


def test_real_fashion_verifies_by_payload_though_gz_differs(fashion_dir, mnistlab_home):
    spec = registry.get("fashion-mnist")
    on_disk = {f.name: store.idx.file_sha256(fashion_dir / f.name) for f in spec.files}
    assert all(on_disk[f.name] != f.gz_sha256 for f in spec.files)  # Debian recompressed them
    ds = datasets.load("fashion-mnist", data_dir=fashion_dir.parent)  # parent/<name>/ layout
    assert set(ds.verified_by.values()) == {"payload-sha256"}
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10


def test_one_byte_change_is_caught_in_gz_and_in_raw(mnist_dir, tmp_path, mnistlab_home):
    d = tmp_path / "mnist"
    shutil.copytree(mnist_dir, d)
    for p in d.iterdir():
        p.chmod(0o644)
    labels = d / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # still a valid label: only the checksum can tell
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte\.gz: checksum mismatch.*delete it"
    ):
        datasets.load("mnist", data_dir=d)
    labels.unlink()
    (d / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))  # uncompressed form is read too
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: checksum mismatch"):
        datasets.load("mnist", data_dir=d)
    raw[100] = gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())[100]
    (d / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    assert (
        datasets.load("mnist", data_dir=d).verified_by["t10k-labels-idx1-ubyte"] == "payload-sha256"
    )


def test_second_load_is_memory_mapped_and_hashes_nothing(mnist_dir, mnistlab_home, monkeypatch):
    first = datasets.load("mnist", data_dir=mnist_dir)
    cache = mnistlab_home / "datasets" / "mnist"
    source = json.loads((cache / "arrays.json").read_text())["source"]
    assert source["train_images"].startswith("ba891046")
    calls = []
    monkeypatch.setattr(store, "verify_file", lambda *a: calls.append(a) or "x")
    second = datasets.load("mnist", data_dir=mnist_dir)
    assert calls == []  # remembered by size + mtime
    assert isinstance(second.x_train, np.memmap) and not second.x_train.flags.writeable
    assert np.array_equal(first.x_train, second.x_train)
    assert np.array_equal(first.y_test, second.y_test)


def test_touched_file_is_rehashed(mnist_dir, tmp_path, mnistlab_home, monkeypatch):
    d = tmp_path / "m"
    shutil.copytree(mnist_dir, d)
    datasets.load("mnist", data_dir=d)
    f = d / "t10k-labels-idx1-ubyte.gz"
    os.chmod(f, 0o644)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    seen = []
    real = store.verify_file
    monkeypatch.setattr(store, "verify_file", lambda p, *a: seen.append(p.name) or real(p, *a))
    datasets.load("mnist", data_dir=d)
    assert seen == ["t10k-labels-idx1-ubyte.gz"]


def test_cache_then_env_dir_resolution(mnist_dir, mnistlab_home, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(mnist_dir.parent))
    assert datasets.load("mnist").source == f"MNISTLAB_DATA_DIR: {mnist_dir}"
    monkeypatch.delenv("MNISTLAB_DATA_DIR")
    assert datasets.import_dir(mnist_dir) == mnistlab_home / "datasets" / "mnist"
    ds = datasets.load("mnist")
    assert ds.source == f"cache: {mnistlab_home / 'datasets' / 'mnist'}" and ds.note is None
    assert datasets.path("mnist") == mnistlab_home / "datasets" / "mnist"
    assert set(datasets.verify("mnist").values()) == {"gz-sha256", "matches"}


def test_explicit_data_dir_missing_files_is_clear_error(tmp_path, mnistlab_home):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(
        DataError,
        match=r"missing mnist files: train-labels-idx1-ubyte\.gz, "
        r"t10k-images-idx3-ubyte\.gz, t10k-labels-idx1-ubyte\.gz",
    ):
        datasets.load("mnist", data_dir=tmp_path)


def test_explicit_mnist_never_falls_back_and_says_where_to_put_files(mnistlab_home):
    t0 = time.monotonic()
    with pytest.raises(DataError) as err:
        datasets.load("mnist")
    msg = str(err.value)
    assert time.monotonic() - t0 < 10
    assert "\n" not in msg and "download failed: no network" in msg
    assert str(mnistlab_home / "datasets" / "mnist") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "mnistlab data import" in msg


def test_default_falls_back_to_sample_and_says_so(mnistlab_home):
    ds = datasets.load()
    assert ds.name == "mnist-sample" and ds.x_train.shape == (10000, 28, 28)
    assert ds.note.startswith("full MNIST not found (looked in cache ")
    assert (
        "download failed" in ds.note
        and "mnist-sample (10,000 train / 2,000 test images)" in ds.note
    )
    assert "\n" not in ds.note


def test_default_uses_full_mnist_when_cached(mnist_dir, mnistlab_home):
    datasets.import_dir(mnist_dir)
    ds = datasets.load()
    assert ds.name == "mnist" and ds.note is None and len(ds.y_train) == 60000


def test_offline_switch_disables_download(mnistlab_home, monkeypatch):
    monkeypatch.setenv("MNISTLAB_OFFLINE", "1")
    with pytest.raises(DataError, match="MNISTLAB_OFFLINE"):
        datasets.fetch("mnist")


def test_unknown_dataset_lists_known_names():
    with pytest.raises(
        DataError,
        match=r"unknown dataset 'emnist'; expected one of: mnist, "
        r"fashion-mnist, kmnist, mnist-sample",
    ):
        datasets.load("emnist")


def test_import_refuses_a_bad_folder_and_copies_nothing(mnist_dir, tmp_path, mnistlab_home):
    d = tmp_path / "bad"
    shutil.copytree(mnist_dir, d)
    (d / "train-labels-idx1-ubyte.gz").chmod(0o644)
    (d / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01" + b"\0" * 4))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: checksum mismatch"):
        datasets.import_dir(d)
    cache = mnistlab_home / "datasets" / "mnist"
    assert not cache.exists() or not list(cache.glob("*.gz"))


def test_kmnist_without_known_payload_hash_is_never_called_verified(tmp_path, mnistlab_home):
    # A well-formed file that is not the official .gz: with no payload hash known, refuse it.
    f = registry.get("kmnist").file("test_labels")
    assert f.payload_sha256 is None and f.gz_sha256
    p = tmp_path / f.name
    datasets.idx.write_idx(p, np.zeros(10000, np.uint8))
    with pytest.raises(DataError, match="cannot verify.*not known"):
        store.verify_file(p, f, "kmnist")


def test_registry_table_is_complete():
    for name in ("mnist", "fashion-mnist", "kmnist"):
        spec = registry.get(name)
        assert len(spec.urls) >= 2 and len(spec.class_names) == 10
        assert spec.license and spec.attribution and spec.homepage
        for f in spec.files:
            assert len(f.gz_sha256) == 64 and len(f.gz_md5) == 32
            assert f.payload_sha256 is None or len(f.payload_sha256) == 64
    assert registry.get("mnist").files[0].payload_size == 47040016


def test_verify_rebuilds_a_tampered_array_cache(mnist_dir, mnistlab_home):
    datasets.load("mnist", data_dir=mnist_dir)
    npy = mnistlab_home / "datasets" / "mnist" / "y_test.npy"
    y = np.load(npy)
    y[0] = (y[0] + 1) % 10
    np.save(npy, y)
    assert datasets.verify("mnist", mnist_dir)["array cache"] == "rebuilt"
    assert datasets.verify("mnist", mnist_dir)["array cache"] == "matches"
    assert datasets.load("mnist", data_dir=mnist_dir).y_test[0] == (y[0] - 1) % 10


def test_system_copy_is_found_after_the_cache(fashion_dir, mnist_dir, mnistlab_home, monkeypatch):
    spec = registry.get("fashion-mnist")
    monkeypatch.setitem(
        registry.DOWNLOADABLE,
        "fashion-mnist",
        dataclasses.replace(spec, system_dirs=(str(fashion_dir),)),
    )
    ds = datasets.load("fashion-mnist", download=False)
    assert ds.source == f"system: {fashion_dir}" and ds.name == "fashion-mnist"
    datasets.import_dir(fashion_dir, "fashion-mnist")
    assert datasets.load("fashion-mnist", download=False).source.startswith("cache: ")


@pytest.mark.parametrize("source", ["MNISTLAB_DATA_DIR", "cache"])
def test_an_array_cache_edited_in_place_is_rebuilt_from_the_verified_files(
    mnist_dir, mnistlab_home, monkeypatch, source
):
    from mnistlab.datasets import idx

    pristine = idx.read_images(mnist_dir / "t10k-images-idx3-ubyte.gz")
    if source == "cache":
        datasets.import_dir(mnist_dir)
    else:
        monkeypatch.setenv("MNISTLAB_DATA_DIR", str(mnist_dir))
    datasets.load("mnist")
    time.sleep(0.05)  # later than the cache was written, as an edit would be
    npy = mnistlab_home / "datasets" / "mnist" / "x_test.npy"
    edited = np.load(npy, mmap_mode="r+")
    edited[:2000] = 255 - edited[:2000]
    edited.flush()
    del edited
    with pytest.warns(
        UserWarning,
        match=r"x_test.npy was modified after it was written.*"
        r"rebuilt it from the verified files in ",
    ):
        ds = datasets.load("mnist")
    assert np.array_equal(ds.x_test, pristine)
    again = datasets.load("mnist")  # rebuilt: memory-mapped and right again, no warning
    assert isinstance(again.x_test, np.memmap) and np.array_equal(again.x_test, pristine)


def test_a_cache_that_cannot_be_rewritten_is_not_served(mnist_dir, mnistlab_home, fail_writes):
    from mnistlab.datasets import idx

    datasets.load("mnist", data_dir=mnist_dir)
    npy = mnistlab_home / "datasets" / "mnist" / "y_test.npy"
    y = np.load(npy)
    np.save(npy, (y + 1) % 10)
    fail_writes(mnistlab_home)
    with pytest.warns(
        UserWarning,
        match=r"y_test.npy was modified.*cannot write the array cache"
        r".*using the verified files in",
    ):
        ds = datasets.load("mnist", data_dir=mnist_dir)
    assert np.array_equal(ds.y_test, idx.read_labels(mnist_dir / "t10k-labels-idx1-ubyte.gz", 10))


def test_default_falls_back_to_the_sample_when_home_is_unusable(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("a file, not a folder")
    monkeypatch.setenv("MNISTLAB_HOME", str(home))
    ds = datasets.load()
    assert ds.name == "mnist-sample" and "cannot create the dataset folder" in ds.note
    with pytest.raises(DataError, match="cannot create the dataset folder.*writable folder"):
        datasets.load("mnist")  # named: no fallback, the reason instead
    assert home.read_text() == "a file, not a folder"
