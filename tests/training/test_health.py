"""health.py: the notebook's divergence lesson as a check on history numbers, plus real runs."""

import dataclasses
import math

import pytest

from mnistlab import datasets
from mnistlab.recipe import Recipe
from mnistlab.training.health import chance_loss, check_epoch, check_history, likely_cause

RAW = Recipe(normalize="none")


def row(epoch, loss, acc, val_loss=0.5):
    return {"epoch": epoch, "loss": loss, "accuracy": acc, "val_loss": val_loss}


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf"), 2.1566e16])
def test_non_finite_loss_is_divergence_naming_raw_pixels(loss):
    w = check_epoch(row(1, loss, 0.1), RAW, pixel_std=78.57)
    assert w.kind == "diverged" and w.epoch == 1
    for words in (
        "unscaled raw pixels",
        "std 78.6",
        "learning_rate 0.01",
        "normalize='standardize'",
        "lower learning_rate",
    ):
        assert words in w.message


def test_nan_val_loss_alone_is_divergence():
    assert check_epoch(row(2, 0.4, 0.9, val_loss=float("nan")), Recipe()).kind == "diverged"


def test_stuck_at_chance_level():
    assert chance_loss() == pytest.approx(math.log(10))
    w = check_epoch(row(3, 2.3026, 0.112), RAW)
    assert w.kind == "stuck" and "2.30" in w.message and "uniform guess" in w.message
    assert check_epoch(row(3, 2.35, 0.149), RAW).kind == "stuck"


def test_stuck_on_validation_alone_is_flagged():
    # rmsprop at lr 0.01, momentum 0.9 on the sample: 17 % train accuracy, 12 % on val
    r = {"epoch": 1, "loss": 4.06, "accuracy": 0.172, "val_loss": 2.79, "val_accuracy": 0.12}
    w = check_epoch(r, Recipe(optimizer="rmsprop"))
    assert w.kind == "stuck" and "val_loss is stuck at 2.790" in w.message
    assert check_epoch({**r, "val_accuracy": 0.9, "val_loss": 0.3}, Recipe()) is None


@pytest.mark.parametrize("loss,acc", [(2.29, 0.11), (2.4, 0.16), (0.25, 0.93)])
def test_healthy_or_learning_is_silent(loss, acc):
    assert check_epoch(row(1, loss, acc), RAW) is None


def test_cause_on_scaled_inputs_is_the_learning_rate():
    cause, fix = likely_cause(Recipe(learning_rate=1.0))
    assert "learning_rate 1 is too large" in cause and "lower learning_rate (e.g. 0.01)" in fix
    w = check_epoch(row(1, float("nan"), 0.1), Recipe(learning_rate=1.0))
    assert "raw pixels" not in w.message and "too large" in w.message


def test_check_history_reports_each_kind_once():
    hist = [row(1, 2.31, 0.1), row(2, float("nan"), 0.1), row(3, float("nan"), 0.1)]
    ws = check_history(hist, RAW)
    assert [(w.kind, w.epoch) for w in ws] == [("stuck", 1), ("diverged", 2)]
    assert check_history([row(1, 0.3, 0.9), row(2, 0.2, 0.94)], Recipe()) == []


@pytest.fixture(scope="module")
def small():
    ds = datasets.load("mnist-sample")
    return dataclasses.replace(ds, x_train=ds.x_train[:2000], y_train=ds.y_train[:2000])


def test_real_training_on_raw_pixels_warns_and_standardized_is_silent(small, tmp_path, capsys):
    from mnistlab.training.fit import fit

    bad = fit(
        Recipe(normalize="none", epochs=1, hidden=[64]), small, out=tmp_path / "raw", quiet=True
    )
    assert len(bad.warnings) == 1 and "normalize='standardize'" in bad.warnings[0]
    assert "normalize='standardize'" in capsys.readouterr().err  # shown even with quiet
    assert bad.metrics["health"] == bad.warnings
    assert bad.metrics["test"]["accuracy"] < 0.2  # the notebook's ~10 %
    good = fit(Recipe(epochs=1, hidden=[64]), small, out=tmp_path / "std", quiet=True)
    assert good.warnings == [] and good.metrics["health"] == []
    assert good.metrics["test"]["accuracy"] > 0.8


def test_stop_on_divergence_stops_after_the_first_bad_epoch(small, tmp_path):
    from mnistlab.training.fit import fit

    run = fit(
        Recipe(normalize="none", epochs=3, hidden=[32]),
        small,
        out=tmp_path / "r",
        quiet=True,
        stop_on_divergence=True,
    )
    assert len(run.history) == 1 and "stop-on-divergence" in run.stopped
    assert run.metrics["stopped"] == run.stopped


@pytest.mark.parametrize(
    "recipe,suggested",
    [
        (Recipe(learning_rate=10), "e.g. 0.01)"),  # sgd's working range
        (Recipe(optimizer="adam", learning_rate=10), "e.g. 0.001)"),  # adam's
        (Recipe(learning_rate=0.05), "e.g. 0.005)"),  # a tenth, when in range
        (Recipe(normalize="none", learning_rate=10), "e.g. 0.01)"),
    ],
)
def test_the_fix_suggests_a_learning_rate_that_works_for_the_recipe(recipe, suggested):
    _, fix = likely_cause(recipe)
    assert suggested in fix, fix
