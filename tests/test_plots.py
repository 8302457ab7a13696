"""Every figure helper writes a real, readable PNG atomically; the mosaic layout is exact."""

import numpy as np
import pytest
from PIL import Image

from mnistlab import plots

NAMES = [str(i) for i in range(10)]
LONG = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _png(path, min_side=300, max_side=3000):
    """Open with Pillow, check it is a PNG of sane size, and that it is not a blank canvas."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        assert min_side <= w <= max_side and min_side <= h <= max_side, im.size
        gray = np.asarray(im.convert("L"))
    assert gray.std() > 5, "figure looks empty"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")], (
        "temp file left behind"
    )
    return w, h


def test_mosaic_places_every_tile_with_gutters():
    tiles = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2) + 1
    m = plots._mosaic(tiles, pad=1, pad_top=2)
    assert m.shape == (2 * (2 + 2 + 1) - 1, 3 * (2 + 1) - 1)
    for r in range(2):
        for c in range(3):
            y, x = r * 5 + 2, c * 3
            np.testing.assert_array_equal(m[y : y + 2, x : x + 2], tiles[r, c])
    assert m.sum() == tiles.sum()  # gutters are blank


@pytest.mark.parametrize("names", [NAMES, LONG])
def test_class_balance_png(tmp_path, names):
    counts = np.array([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    _png(plots.class_balance(counts, counts // 6, names, tmp_path / "b.png"))


def test_pixel_histogram_png_handles_empty_bins(tmp_path):
    hist = np.zeros(256, dtype=np.int64)
    hist[0], hist[255], hist[128] = 800, 30, 5  # zero bins must not break the log scale
    _png(plots.pixel_histogram(hist, hist, tmp_path / "h.png"))


def test_pixel_images_pngs(tmp_path):
    rng = np.random.default_rng(0)
    _png(
        plots.pixel_mean_std(
            rng.uniform(0, 140, (28, 28)), rng.uniform(0, 110, (28, 28)), tmp_path / "ms.png"
        )
    )
    _png(plots.class_means(rng.uniform(0, 255, (10, 28, 28)), LONG, tmp_path / "cm.png"))
    _png(
        plots.sample_grid(
            rng.integers(0, 256, (10, 6, 28, 28), dtype=np.uint8), LONG, tmp_path / "s.png"
        )
    )


def test_confusion_matrix_png(tmp_path):
    cm = np.diag(np.full(10, 950)) + np.eye(10, k=1, dtype=int) * 7
    cm[3, 3] = 0  # an empty row must not divide by zero
    _png(plots.confusion_matrix(cm, NAMES, tmp_path / "c.png"))


def test_misclassified_grid_png_and_empty_case(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (13, 28, 28), dtype=np.uint8)
    true, pred = np.arange(13) % 10, (np.arange(13) + 1) % 10
    w, h = _png(
        plots.misclassified_grid(imgs, true, pred, np.full(13, 0.87), LONG, tmp_path / "m.png")
    )
    assert h > 300  # two rows of eight
    _png(
        plots.misclassified_grid(
            imgs[:0], true[:0], pred[:0], np.zeros(0), NAMES, tmp_path / "none.png"
        ),
        min_side=100,
    )


def test_failed_render_leaves_no_file(tmp_path):
    with pytest.raises(ValueError):
        plots.class_means(np.zeros((10, 28)), NAMES, tmp_path / "bad.png")  # wrong shape
    assert list(tmp_path.iterdir()) == []
