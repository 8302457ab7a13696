"""How an image was prepared, step by step: ``prepare(..., steps=True)`` returns the very image
``prepare`` gives and each stage on the way; ``predict(..., steps=True)`` keeps them and
``predict --show`` draws them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab.use import imageprep
from mnistlab.use import predict as pr


def _drawing(offset=(0, 0), size=(300, 220)) -> np.ndarray:
    """A 7 in dark ink on light paper, off-centre."""
    img = Image.new("RGB", size, (235, 233, 228))
    d = ImageDraw.Draw(img)
    ox, oy = offset
    d.line(
        [(40 + ox, 40 + oy), (110 + ox, 40 + oy), (70 + ox, 170 + oy)], fill=(30, 30, 40), width=7
    )
    return np.asarray(img)


@pytest.mark.parametrize("style", ["mnist", "fashion"])
def test_the_steps_end_in_the_prepared_image(style):
    image = _drawing(offset=(120, 10))
    x, steps = imageprep.prepare(image, style=style, steps=True)
    np.testing.assert_array_equal(x, imageprep.prepare(image, style=style))
    assert [s.name for s in steps] == list(imageprep.STEPS[style])
    assert [s.title for s in steps] == list(imageprep.STEPS[style].values())
    np.testing.assert_array_equal(steps[-1].image, x)
    assert steps[0].image.shape == image.shape[:2] and steps[0].image.mean() > 200  # as seen
    ink, cropped, box = steps[1].image, steps[2].image, steps[3].image
    assert ink.shape == image.shape[:2] and ink[0, 0] == 0 and ink.max() == 255  # ink bright
    assert cropped.shape[0] < ink.shape[0] and cropped.shape[1] < ink.shape[1]
    assert max(box.shape) == (20 if style == "mnist" else 28)
    placed = steps[4]
    top, left, h, w = placed.box
    assert (h, w) == box.shape
    np.testing.assert_array_equal(placed.image[top : top + h, left : left + w], box)
    np.testing.assert_array_equal(np.rint(placed.image).astype(np.uint8), x)
    cy, cx = placed.centre
    if style == "mnist":  # the centre of mass lands within half a pixel of (14, 14)
        assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    else:  # the box is centred
        assert abs(top + h / 2 - 14) <= 0.5 and abs(left + w / 2 - 14) <= 0.5


def test_a_file_gives_its_steps_too(tmp_path):
    path = tmp_path / "seven.png"
    Image.fromarray(_drawing()).save(path)
    x, steps = imageprep.load_image(path, steps=True)
    np.testing.assert_array_equal(x, imageprep.load_image(path))
    assert len(steps) == 6


def test_predict_keeps_the_steps_and_show_draws_them(tmp_path):
    from mnistlab import datasets
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import fit

    ds = datasets.load("mnist-sample")
    small = dataclasses.replace(ds, x_train=ds.x_train[:600], y_train=ds.y_train[:600])
    run = fit(Recipe(epochs=1, hidden=[8]), small, out=tmp_path / "run", quiet=True)
    path = tmp_path / "seven.png"
    Image.fromarray(_drawing()).save(path)
    plain = pr.predict(run.path, [path, tmp_path / "missing.png"], on_error="collect")
    assert plain[0].steps is None
    results = pr.predict(run.path, [path, tmp_path / "missing.png"], on_error="collect", steps=True)
    assert [s.name for s in results[0].steps][-1] == "seen" and not results[1].ok
    np.testing.assert_array_equal(results[0].image, plain[0].image)
    with_steps = pr.show(results, run.class_names, tmp_path / "steps.png")
    without = pr.show(plain, run.class_names, tmp_path / "plain.png")
    wide, narrow = Image.open(with_steps).size, Image.open(without).size
    assert wide[0] > narrow[0]  # the strip of steps beside the bars
