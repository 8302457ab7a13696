"""explore: exact statistics (checked against plain NumPy), seeded samples, report files, CLI."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mnistlab import datasets
from mnistlab import exploration as explore
from mnistlab.errors import DataError


def _synthetic(n_train=5000, n_test=701, seed=0):
    """More rows than one statistics block (4096), mostly-zero images like MNIST, unequal
    classes."""
    rng = np.random.default_rng(seed)
    y = rng.choice(10, size=n_train, p=[0.2] + [0.8 / 9] * 9).astype(np.uint8)
    x = (rng.random((n_train, 28, 28)) < 0.25) * rng.integers(0, 256, (n_train, 28, 28))
    xt = rng.integers(0, 256, (n_test, 28, 28))
    return datasets.Dataset(
        name="synthetic",
        x_train=x.astype(np.uint8),
        y_train=y,
        x_test=xt.astype(np.uint8),
        y_test=(np.arange(n_test) % 10).astype(np.uint8),
    )


def test_class_distribution_exact():
    d = explore.class_distribution(np.array([0, 0, 0, 1, 2, 2], dtype=np.uint8), 4)
    assert d["counts"] == [3, 1, 2, 0] and d["n"] == 6
    assert d["shares"] == pytest.approx([0.5, 1 / 6, 1 / 3, 0.0])
    assert d["imbalance_ratio"] is None and d["empty_classes"] == [3]  # empty class: said, not inf
    assert explore.class_distribution(np.array([0, 0, 0, 1, 2, 2]), 3)["imbalance_ratio"] == 3.0
    with pytest.raises(DataError, match="0..2"):
        explore.class_distribution(np.array([0, 3]), 3)


@pytest.mark.parametrize("shape", [(50, 28, 28), (3, 5, 7)])  # 3*5*7 = 105 pixels: odd count
def test_pixel_distribution_matches_numpy(shape):
    x = np.random.default_rng(2).integers(0, 200, shape).astype(np.uint8)
    x[0, 0, 0] = 0
    p = explore.pixel_distribution(x)
    assert p["histogram"] == np.bincount(x.ravel(), minlength=256).tolist()
    assert p["mean"] == pytest.approx(np.mean(x), rel=1e-12)
    assert p["std"] == pytest.approx(np.std(x), rel=1e-12)
    assert p["variance"] == pytest.approx(np.var(x), rel=1e-12)
    assert (p["min"], p["max"]) == (int(x.min()), int(x.max()))
    assert p["zero_share"] == pytest.approx(np.mean(x == 0))
    assert p["mean_01"] == pytest.approx(np.mean(x / 255.0)) and p["std_01"] == pytest.approx(
        np.std(x / 255.0)
    )
    with pytest.raises(DataError, match="uint8"):
        explore.pixel_distribution(x.astype(np.float32))


def test_pixel_images_match_numpy_across_blocks():
    ds = _synthetic()
    mean, std, means = explore.pixel_images(ds.x_train, ds.y_train, 10)
    xf = ds.x_train.astype(np.float64)
    np.testing.assert_allclose(mean, xf.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, xf.std(axis=0), rtol=1e-9, atol=1e-9)
    for c in range(10):
        np.testing.assert_allclose(means[c], xf[ds.y_train == c].mean(axis=0), rtol=1e-12)


def test_samples_are_seeded_and_of_their_class():
    ds = _synthetic()
    a, ia = explore.sample_per_class(ds.x_train, ds.y_train, 10, 6, seed=3)
    b, ib = explore.sample_per_class(ds.x_train, ds.y_train, 10, 6, seed=3)
    _, ic = explore.sample_per_class(ds.x_train, ds.y_train, 10, 6, seed=4)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(ia, ic)
    for c in range(10):
        assert (ds.y_train[ia[c]] == c).all() and len(set(ia[c])) == 6
        np.testing.assert_array_equal(a[c], ds.x_train[ia[c]])
    # a class with fewer images than asked: the rest is marked -1 and left blank
    _, few = explore.sample_per_class(ds.x_train[:3], np.array([0, 0, 1]), 3, 2, seed=0)
    assert few[1].tolist()[1] == -1 and few[2].tolist() == [-1, -1]


def test_explore_on_bundled_sample_and_report(tmp_path):
    ds = datasets.load("mnist-sample")
    s = explore.explore(ds, seed=0)
    for split, y in (("train", ds.y_train), ("test", ds.y_test)):
        c = s["classes"][split]
        assert sum(c["counts"]) == len(y) == c["n"]
        assert c["counts"] == np.bincount(y, minlength=10).tolist()
        assert sum(c["shares"]) == pytest.approx(1.0)
    assert s["pixels"]["train"]["mean"] == pytest.approx(np.mean(ds.x_train), rel=1e-12)
    assert s["pixels"]["train"]["std"] == pytest.approx(np.std(ds.x_train), rel=1e-12)
    assert s["pixels"]["test"]["std"] == pytest.approx(np.std(ds.x_test), rel=1e-12)
    assert "standardize" in s["advice"] and f"{s['pixels']['train']['std']:.2f}" in s["advice"]

    files = explore.write_files(s, tmp_path / "rep")
    assert set(files) == set(explore.FIGURES) | {"summary"}
    for key in explore.FIGURES:
        with Image.open(files[key]) as im:
            assert im.format == "PNG" and 400 <= min(im.size) and max(im.size) <= 3000
    doc = json.loads(files["summary"].read_text())
    assert "images" not in doc and doc["figures"] == explore.FIGURES
    assert doc["classes"] == s["classes"] and doc["dataset"] == "mnist-sample"
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == sorted(
        list(explore.FIGURES.values()) + ["summary.json"]
    )


def test_write_files_onto_a_file_is_a_one_line_error(tmp_path):
    from mnistlab.errors import MnistlabError

    (tmp_path / "taken.png").write_text("x")
    with pytest.raises(MnistlabError, match="taken.png: cannot create this folder"):
        explore.write_files({}, tmp_path / "taken.png")


def test_full_mnist_known_numbers(mnist_dir):  # conftest: ../shared/data/mnist, skipped when absent
    s = explore.explore(datasets.load("mnist", data_dir=mnist_dir))
    px = s["pixels"]["train"]
    assert round(px["mean"], 2) == 33.32 and round(px["std"], 2) == 78.57
    assert round(px["mean_01"], 4) == 0.1307 and round(px["std_01"], 4) == 0.3081
    assert s["classes"]["train"]["counts"] == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert s["classes"]["test"]["counts"] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert s["classes"]["train"]["imbalance_ratio"] == pytest.approx(6742 / 5421)
    assert (px["min"], px["max"]) == (0, 255)


def test_cli_explore_writes_report_and_prints_tables(tmp_path):
    from mnistlab.cli import app

    res = CliRunner().invoke(
        app, ["explore", "--dataset", "mnist-sample", "--out", str(tmp_path / "r"), "--seed", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "class distribution" in res.output and "share of zero pixels" in res.output
    assert "What this means for training" in res.output
    doc = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert doc["seed"] == 1 and doc["dataset"] == "mnist-sample"


def test_cli_explore_unknown_dataset_is_one_line_error(tmp_path):
    import subprocess
    import sys

    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnistlab",
            "explore",
            "--dataset",
            "no-such-set",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert (
        p.stderr.startswith("error: ") and "no-such-set" in p.stderr and "Traceback" not in p.stderr
    )


def test_cli_explore_negative_seed_is_a_usage_error(tmp_path):
    from mnistlab.cli import app

    res = CliRunner().invoke(
        app, ["explore", "--dataset", "mnist-sample", "--seed", "-1", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2 and "--seed" in res.output, res.output  # not a numpy ValueError
    assert not (tmp_path / "r").exists()
