"""The bundled mnist-sample: size, balance, checksums, provenance, reproducibility."""

from __future__ import annotations

import hashlib
import importlib.util
import json

import numpy as np
import pytest

from mnistlab import datasets
from mnistlab.datasets import idx, registry

SAMPLE = registry.SAMPLE_DIR
MANIFEST = json.loads((SAMPLE / "manifest.json").read_text())


def _make_sample_module():
    path = registry.SAMPLE_DIR.parents[3] / "scripts" / "make_sample.py"
    spec = importlib.util.spec_from_file_location("make_sample", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_size_and_counts():
    ds = datasets.load("mnist-sample")
    assert ds.x_train.shape == (10000, 28, 28) and ds.x_test.shape == (2000, 28, 28)
    total = sum((SAMPLE / f.name).stat().st_size for f in registry.get("mnist-sample").files)
    assert total <= 2.5e6
    assert ds.note is None and ds.source.startswith("bundled: ")


# MNIST's own class counts (LeCun et al.): digit 1 is the most common, 5 the rarest.
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_classes_keep_mnists_own_proportions():
    ds = datasets.load("mnist-sample")
    for y, official in ((ds.y_train, MNIST_TRAIN), (ds.y_test, MNIST_TEST)):
        counts = np.bincount(y, minlength=10)
        exact = np.array(official) * len(y) / sum(official)
        assert np.all(np.abs(counts - exact) < 1), (counts, exact)  # largest remainder
        assert counts.argmax() == 1 and counts.argmin() == 5  # not a flat chart
    assert MANIFEST["class_counts"]["train"] == np.bincount(ds.y_train).tolist()


def test_proportional_split_adds_up_by_largest_remainder():
    split = _make_sample_module().proportional
    assert split(np.array(MNIST_TEST), 2000).tolist() == [
        196, 227, 206, 202, 196, 178, 192, 206, 195, 202
    ]  # fmt: skip
    assert split(np.array([1, 1, 1]), 2).tolist() == [1, 1, 0]  # a tie goes to the lower class
    assert split(np.array(MNIST_TRAIN), 12345).sum() == 12345


def test_checksums_manifest_and_sums_file_agree_with_the_bytes():
    sums = dict(line.split("  ")[::-1] for line in (SAMPLE / "SHA256SUMS").read_text().splitlines())
    assert len(sums) == 4
    for name, entry in MANIFEST["files"].items():
        data = (SAMPLE / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["gz_sha256"] == sums[name]
        assert idx.payload_sha256(SAMPLE / name) == (entry["payload_sha256"], entry["payload_size"])
    assert set(datasets.verify("mnist-sample").values()) == {"gz-sha256", "absent"}


def test_tampered_sample_copy_is_rejected(tmp_path):
    from mnistlab.datasets import store

    f = registry.get("mnist-sample").file("test_labels")
    y = idx.read_labels(SAMPLE / f.name).copy()
    y[0] = (y[0] + 1) % 10
    idx.write_idx(tmp_path / f.name, y)
    with pytest.raises(datasets.DataError, match="checksum mismatch.*reinstall mnistlab"):
        store.verify_file(tmp_path / f.name, f, "mnist-sample")


def test_attribution_and_license_beside_the_files():
    text = (SAMPLE / "ATTRIBUTION.md").read_text()
    for needle in ("Yann LeCun", "Corinna Cortes", "CC BY-SA 3.0", "make_sample.py"):
        assert needle in text
    assert registry.get("mnist-sample").license == "CC BY-SA 3.0"


def test_every_sample_image_is_byte_equal_to_its_official_source(mnist_dir):
    ds = datasets.load("mnist-sample")
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        src = np.array(MANIFEST["source_indices"][split])
        assert len(src) == len(x) and len(np.unique(src)) == len(src)
        prefix = "train" if split == "train" else "t10k"
        official_x = idx.read_images(mnist_dir / f"{prefix}-images-idx3-ubyte.gz")
        official_y = idx.read_labels(mnist_dir / f"{prefix}-labels-idx1-ubyte.gz")
        assert np.array_equal(official_x[src], x)
        assert np.array_equal(official_y[src], y)


def test_make_sample_is_deterministic(mnist_dir, tmp_path):
    _make_sample_module().build(mnist_dir, tmp_path)
    for name in [*MANIFEST["files"], "manifest.json", "SHA256SUMS", "ATTRIBUTION.md"]:
        assert (tmp_path / name).read_bytes() == (SAMPLE / name).read_bytes(), name


def test_make_sample_refuses_non_official_sources(fashion_dir, tmp_path):
    with pytest.raises(SystemExit, match="expected official"):
        _make_sample_module().build(fashion_dir, tmp_path)
