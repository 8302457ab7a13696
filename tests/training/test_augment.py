"""augment.py: the transforms do what they declare, deterministically, inside train.fit."""

import dataclasses

import numpy as np
import pytest

from mnistlab import datasets, rundir
from mnistlab.datasets import preprocess
from mnistlab.errors import RecipeError
from mnistlab.recipe import Recipe
from mnistlab.training import augment
from mnistlab.training.fit import epoch_order, fit


@pytest.fixture(scope="module")
def digits():
    return datasets.load("mnist-sample").x_train[:64]


def test_integer_shift_is_the_image_shifted_exactly(digits):
    shifts = np.array([[2, -3], [-1, 0], [0, 4], [5, 5]] * 16, dtype=np.float64)
    out = augment.transform(digits, shift=shifts)
    for img, got, (dy, dx) in zip(digits, out, shifts.astype(int)):
        want = np.zeros((28, 28), np.float32)
        src = img[max(0, -dy) : 28 - max(0, dy), max(0, -dx) : 28 - max(0, dx)]
        want[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
        np.testing.assert_array_equal(got, want)


def test_no_rotation_and_unit_scale_are_the_identity(digits):
    n = len(digits)
    out = augment.transform(digits, shift=np.zeros((n, 2)), angle=np.zeros(n), scale=np.ones(n))
    np.testing.assert_array_equal(out, digits.astype(np.float32))


def test_rotation_turns_counter_clockwise_and_scale_zooms_about_the_centre(digits):
    n = len(digits)
    turned = augment.transform(digits, angle=np.full(n, 90.0))
    np.testing.assert_allclose(turned, np.rot90(digits, 1, axes=(1, 2)), atol=1e-3)
    # zoom x2 about the centre (13.5, 13.5): output pixel (y, x) reads (13.5 + (y-13.5)/2, ...)
    img = np.zeros((1, 28, 28), np.float32)
    img[0, 14, 14] = 100.0
    zoomed = augment.transform(img, scale=np.array([2.0]))
    assert zoomed[0, 14, 14] == pytest.approx(100.0 * 0.75 * 0.75)
    assert zoomed.sum() == pytest.approx(400.0)  # a pixel grows to 2x2 pixels' worth


def test_elastic_displacement_moves_pixels_smoothly(digits):
    r = Recipe(augment_elastic=34.0, augment_elastic_sigma=4.0)
    p = augment.draw(r, epoch=0, step=0, n=8, side=(28, 28))
    d = p["displacement"]
    assert d.shape == (8, 2, 28, 28) and 0.3 < np.abs(d).mean() < 5.0
    assert np.abs(np.diff(d, axis=-1)).mean() < 0.25 * np.abs(d).mean()  # smooth, not noise
    out = augment.transform(digits[:8], displacement=d)
    assert not np.array_equal(out, digits[:8].astype(np.float32))
    zero = augment.transform(digits[:8], displacement=np.zeros_like(d))
    np.testing.assert_array_equal(zero, digits[:8].astype(np.float32))


def _all_on(**kw):
    return Recipe(
        **{
            "augment_shift": 2.0,
            "augment_rotate": 10.0,
            "augment_scale": 0.1,
            "augment_elastic": 8.0,
            "batch_size": 16,
            **kw,
        }
    )


def test_same_seed_epoch_step_same_augmentation_else_different(digits):
    r = _all_on()
    order = epoch_order(0, 0, len(digits))
    x = preprocess.preprocess(digits, 33.0, 78.0)
    a = augment.epoch_images(r, digits, order, 0, x, 33.0, 78.0)
    b = augment.epoch_images(r, digits, order, 0, x, 33.0, 78.0)
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == np.float32 and not np.array_equal(a, x)
    assert not np.array_equal(a, augment.epoch_images(r, digits, order, 1, x, 33.0, 78.0))
    assert not np.array_equal(
        a, augment.epoch_images(dataclasses.replace(r, seed=1), digits, order, 0, x, 33.0, 78.0)
    )
    p0, p1 = augment.draw(r, 0, 0, 16, (28, 28)), augment.draw(r, 0, 1, 16, (28, 28))
    assert not np.array_equal(p0["shift"], p1["shift"])  # each step draws its own


def test_epoch_images_follow_the_batches_of_the_order(digits):
    """Row i is image i transformed with its batch's parameters, whatever the chunking."""
    r = _all_on()
    order = epoch_order(3, 2, len(digits))
    x = preprocess.preprocess(digits, 0.0, 1.0)
    got = augment.epoch_images(r, digits, order, 2, x, 0.0, 1.0)
    for k in range(4):
        idx = order[k * 16 : (k + 1) * 16]
        want = augment.transform(digits[idx], **augment.draw(r, 2, k, 16, (28, 28)))
        np.testing.assert_allclose(got[idx], want.reshape(16, -1), rtol=1e-6, atol=1e-4)
    small_chunks = augment.CHUNK
    try:
        augment.CHUNK = 16
        np.testing.assert_array_equal(augment.epoch_images(r, digits, order, 2, x, 0.0, 1.0), got)
        two = dataclasses.replace(r, threads=2)  # 4 chunks shared by two threads
        np.testing.assert_array_equal(augment.epoch_images(two, digits, order, 2, x, 0.0, 1.0), got)
    finally:
        augment.CHUNK = small_chunks


def test_an_epoch_of_augmentation_does_not_fault_in_fresh_pages():
    """Work arrays reused chunk after chunk: page faults (a count, steady on a busy machine)
    stay a small fraction of what mapping fresh temporaries for every chunk would cost."""
    import resource

    imgs = np.random.default_rng(0).integers(0, 256, (6_000, 28, 28), dtype=np.uint8)
    x = preprocess.preprocess(imgs, 0.0, 1.0)
    r = _all_on(batch_size=128)
    order = np.arange(len(imgs))
    augment.epoch_images(r, imgs, order, 0, x, 0.0, 1.0)  # the allocator's pools, warmed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    augment.epoch_images(r, imgs, order, 1, x, 0.0, 1.0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    # measured: ~2,400 faults with 128-image chunks, 23,000 with 4,096 and 79,000 with 1,024
    assert faults < 2 * len(imgs), faults


def test_off_returns_the_training_array_itself(digits):
    x = preprocess.preprocess(digits, 0.0, 1.0)
    assert augment.epoch_images(Recipe(), digits, np.arange(64), 0, x, 0.0, 1.0) is x


def test_a_large_batch_is_one_vectorized_call(monkeypatch):
    """10,000 images go through a single transform call: no per-image Python loop."""
    calls = []
    real = augment.transform
    monkeypatch.setattr(
        augment, "transform", lambda imgs, **p: calls.append(len(imgs)) or real(imgs, **p)
    )
    monkeypatch.setattr(augment, "CHUNK", 10_000)
    imgs = np.random.default_rng(0).integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
    x = preprocess.preprocess(imgs, 0.0, 1.0)
    out = augment.epoch_images(_all_on(batch_size=10_000), imgs, np.arange(10_000), 0, x, 0, 1)
    assert calls == [10_000] and out.shape == (10_000, 784)


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("augment_shift", -1.0, "a number of pixels in [0, 14]"),
        ("augment_rotate", 200.0, "a number of degrees in [0, 180]"),
        ("augment_scale", 1.0, "a number in [0, 1)"),
        ("augment_elastic", float("nan"), "a number of pixels in [0, 100]"),
        ("augment_elastic_sigma", 0.0, "a number of pixels in [0.1, 20]"),
    ],
)
def test_bad_augment_fields_are_one_line_errors(field, value, expected):
    with pytest.raises(RecipeError) as err:
        Recipe(**{field: value}).validate()
    assert f"field '{field}': expected {expected}" in str(err.value)
    assert "\n" not in str(err.value)


def test_augment_section_round_trips_through_toml(tmp_path):
    r = _all_on()
    r.to_toml(tmp_path / "r.toml")
    assert "[augment]" in (tmp_path / "r.toml").read_text()
    assert Recipe.from_toml(tmp_path / "r.toml") == r


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_fit_trains_with_augmentation_and_resumes_exactly(tmp_path, kind, monkeypatch):
    from mnistlab.training import fit as train

    ds = datasets.load("mnist-sample")
    small = dataclasses.replace(ds, x_train=ds.x_train[:400], y_train=ds.y_train[:400])
    r = Recipe(
        kind=kind,
        hidden=[16],
        conv_channels=[4],
        epochs=3,
        batch_size=32,
        augment_shift=2.0,
        augment_rotate=10.0,
        augment_elastic=8.0,
    )
    plain = fit(
        dataclasses.replace(r, augment_shift=0.0, augment_rotate=0.0, augment_elastic=0.0),
        small,
        out=tmp_path / "p",
        quiet=True,
    )
    whole = fit(r, small, out=tmp_path / "whole", quiet=True)
    assert whole.history[0]["loss"] != plain.history[0]["loss"]  # it trained on other pixels
    assert whole.metrics["test"]["accuracy"] > 0.3

    real = train.learning_rates

    def stop_in_epoch_2(recipe, epoch, steps, history=None):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(recipe, epoch, steps, history)

    monkeypatch.setattr(train, "learning_rates", stop_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit(r, small, out=tmp_path / "cut", quiet=True)
    monkeypatch.setattr(train, "learning_rates", real)
    resumed = fit(out=tmp_path / "cut", resume=True, quiet=True, dataset=small)
    for k in whole.weights:
        np.testing.assert_array_equal(resumed.weights[k], whole.weights[k], err_msg=k)


def test_cli_flags_train_with_augmentation_or_fail_in_one_line(tmp_path, monkeypatch, capsys):
    import sys

    from mnistlab.cli import main

    monkeypatch.setenv("MNISTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "mnistlab",
            "train",
            "--dataset",
            "mnist-sample",
            "--hidden",
            "8",
            "--epochs",
            "1",
            "--augment-shift",
            "1.5",
            "--augment-rotate",
            "5",
            "--quiet",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, None)
    assert rundir.load_run(tmp_path / "r").recipe.augment_rotate == 5.0
    monkeypatch.setattr(sys, "argv", ["mnistlab", "train", "--augment-scale", "1.5"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "augment_scale" in err


def test_best_presets_load_and_say_what_they_measured():
    from importlib import resources

    from mnistlab.engines.fast import FastEngine
    from mnistlab.recipe import load_preset

    mlp, cnn = load_preset("best-mlp"), load_preset("best-cnn")
    assert mlp.kind == "mlp" and FastEngine.unsupported(mlp) is None and augment.active(mlp)
    assert cnn.kind == "cnn" and augment.active(cnn)
    for name in ("best-mlp", "best-cnn"):
        lines = (
            (resources.files("mnistlab.recipe") / "presets" / f"{name}.toml")
            .read_text()
            .splitlines()
        )
        comments = " ".join(line[2:] for line in lines if line.startswith("# "))
        assert "test accuracy seed 0 / 1 / 2: 99." in comments and "How it was found" in comments
