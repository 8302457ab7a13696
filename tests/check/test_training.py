"""check.raw_pixels and check.learning_rates: a loss history, from any framework, diagnosed by
the training health check (diverged / stuck at ln 10 / learning)."""

from __future__ import annotations

import math

import pytest

from mnistlab import check
from mnistlab.check.training import diagnose


class History:
    """What Keras' model.fit returns: the per-epoch numbers in ``.history``."""

    def __init__(self, **columns):
        self.history = columns


def test_the_notebook_raw_run_diverges_and_passes(runs, capsys):
    r = check.raw_pixels(runs["raw"])
    assert r.passed and r.details["diagnosis"] == "diverged" and r.details["epoch"] == 1
    out = capsys.readouterr().out
    assert out.startswith("✓ raw pixels: passed: diverged: the loss reached ")
    assert ", then stuck at 2.30" in out or f"in epoch {len(runs['raw'].history)} the" in out


@pytest.mark.parametrize(
    "history, kind",
    [
        (History(loss=[14.51, 14.50], accuracy=[0.099, 0.098]), "stuck"),  # Keras clips its log
        ([2.41, 2.3031, 2.3027], "stuck"),  # a PyTorch loop's losses, no accuracy
        ([{"loss": float("nan")}, {"loss": float("nan")}], "diverged"),
        ({"loss": [3e16, 2.303], "accuracy": [0.1, 0.1]}, "diverged"),
    ],
)
def test_failures_from_any_framework_pass_with_their_diagnosis(history, kind):
    r = check.raw_pixels(history)
    assert r.passed and r.details["diagnosis"] == kind


def test_a_history_that_learns_is_not_the_raw_pixel_experiment(runs):
    r = check.raw_pixels(runs["base0"])
    assert not r.passed
    assert r.problems[0] == "this run scaled its inputs (normalize='standardize')"
    assert r.problems[1].startswith("this training is learning: the loss went from ")
    r = check.raw_pixels(History(loss=[0.6, 0.3], accuracy=[0.83, 0.92]))
    assert r.problems == [
        "this training is learning: the loss went from 0.6 to 0.3, accuracy 92.0%; on raw "
        "pixels with the tutorial's SGD it fails"
    ]


def test_the_diagnosis_reuses_the_health_check():
    assert diagnose([{"epoch": 1, "loss": 2.31, "accuracy": 0.11}]).kind == "stuck"
    # above chance accuracy is not stuck, even at a high loss (health: 5 points of margin)
    assert diagnose([{"epoch": 1, "loss": 2.4, "accuracy": 0.4}]).kind == "learning"
    assert diagnose([{"epoch": 1, "loss": 1e4, "accuracy": 0.4}]).kind == "diverged"
    text = diagnose([{"epoch": 1, "loss": math.inf}, {"epoch": 2, "loss": math.inf}]).text
    assert text == "diverged: the loss reached inf in epoch 1, and in epoch 2 the loss is still inf"
    rows = [{"epoch": 1, "loss": 1e9, "val_loss": 1e4}, {"epoch": 2, "loss": 2.3, "val_loss": 1e4}]
    assert diagnose(rows).text.endswith(", and in epoch 2 the val_loss is still 1e+04")
    rows[1]["val_loss"] = 2.31
    assert diagnose(rows).text.endswith(
        ", then stuck at 2.300 (ln 10 = 2.30, a uniform guess over 10 classes)"
    )


@pytest.mark.parametrize(
    "history, said",
    [
        ("somewhere/else", "raw: somewhere/else: "),
        (42, "raw: a int"),
        ([], "raw: an empty history (no epoch trained)"),
        ({"acc": [0.1]}, "raw: no 'loss' in ['acc']"),
        ([[1, 2], [3, 4]], "raw: losses of shape (2, 2)"),
    ],
)
def test_unreadable_histories_get_not_yet_with_the_forms_it_reads(history, said):
    r = check.raw_pixels(history)
    assert not r.passed and r.problems[0].startswith(said), r.problems
    assert "a Keras History" in r.hint


def test_learning_rates_pass_with_a_smaller_rate_and_say_what_each_did(runs, capsys):
    r = check.learning_rates({0.01: runs["raw"], 0.001: runs["raw-small"]})
    assert r.passed and r.details[0.01]["diagnosis"] == "diverged"
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "✓ learning rates: passed: 2 learning rates on raw pixels"
    assert out[1].startswith("  note: lr 0.01: diverged") and out[2].startswith("  note: lr 0.001")
    assert check.learning_rates([runs["raw"], runs["raw-small"]]).passed  # runs say their rate


def test_learning_rate_slips():
    r = check.learning_rates({0.01: [2.3], 10: [math.nan, math.nan]})
    assert r.problems == ["you tried 0.01, 10: none is smaller than the tutorial's 0.01"]
    assert "too large" in r.hint
    assert check.learning_rates({0.01: [2.3]}).problems == [
        "1 learning rate tried: compare at least two"
    ]


def test_learning_rates_are_read_from_the_runs_when_there_are_runs(runs):
    r = check.learning_rates({0.01: runs["raw"], 0.001: runs["base0"]})
    assert r.problems == [
        "the run at lr 0.001 scaled its inputs: this experiment is on raw pixels",
        "the run under lr 0.001 trained with 0.01",
    ]
    r = check.learning_rates([runs["raw"], [2.3]])
    assert r.problems[0].startswith("lr_runs: a list holds mnistlab runs only")
    r = check.learning_rates({"fast": [2.3]})
    assert r.problems == ["lr_runs: its keys must be the learning rates (numbers)"]
