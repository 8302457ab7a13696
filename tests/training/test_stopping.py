"""Early stopping: the decision from the history, the best weights restored, resume-safe."""

import math
import sys

import numpy as np
import pytest

from mnistlab import rundir
from mnistlab.evaluation.evaluate import evaluate
from mnistlab.recipe import Recipe
from mnistlab.training import fit as train_module
from mnistlab.training.fit import fit
from mnistlab.training.stopping import EarlyStopping

# 1,000 training images and a high learning rate: val_loss is best at epoch 3, then stalls,
# so patience 2 stops after epoch 5 (seen in the history, not assumed: the tests read it).
STALLS = Recipe(
    hidden=[32],
    epochs=12,
    validation_split=0.9,
    learning_rate=0.03,
    early_stopping=2,
    dataset="mnist-sample",
)


def _rows(values, key="val_loss"):
    return [{"epoch": e, key: v} for e, v in enumerate(values, 1)]


def test_decision_follows_keras_patience_and_direction():
    s = EarlyStopping(2, "val_loss")
    assert [s.update(r) for r in _rows([0.5, 0.4, 0.4, 0.41])] == [False, False, False, True]
    assert (s.best, s.best_epoch, s.stopped_epoch) == (0.4, 2, 4)  # equal is no improvement
    a = EarlyStopping(1, "val_accuracy")
    assert [a.update(r) for r in _rows([0.8, 0.9, 0.85], "val_accuracy")] == [False, False, True]
    assert a.best_epoch == 2
    n = EarlyStopping(2, "val_loss")  # a NaN never counts as the best
    assert [n.update(r) for r in _rows([math.nan, 0.3, math.nan, math.nan])][-1] is True
    assert n.best_epoch == 2
    replayed = EarlyStopping(2, "val_loss")
    assert replayed.replay(_rows([0.5, 0.4, 0.4, 0.41, 0.1])) is True  # stops at epoch 4
    assert (replayed.best_epoch, replayed.stopped_epoch) == (2, 4)


def _stop_epoch(history, patience, key="val_loss"):
    best, best_epoch = math.inf, 0
    for row in history:
        if row[key] < best:
            best, best_epoch = row[key], row["epoch"]
        elif row["epoch"] - best_epoch >= patience:
            return best_epoch, row["epoch"]
    return best_epoch, None


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_fit_stops_and_restores_the_best_epoch(tmp_path, engine):
    recipe = STALLS.replace(engine=engine)
    run = fit(recipe, out=tmp_path / "r", quiet=True)
    best, stopped = _stop_epoch(run.history, STALLS.early_stopping)
    assert stopped is not None and stopped < STALLS.epochs and len(run.history) == stopped
    es = run.metrics["early_stopping"]
    assert (es["best_epoch"], es["stopped_epoch"], es["restored_epoch"]) == (best, stopped, best)
    assert run.metrics["train"]["epoch"] == best
    row = run.history[best - 1]
    ev = evaluate(run.path, split="val", out=tmp_path / "figs")
    assert ev["loss"] == pytest.approx(row["val_loss"], rel=1e-4)
    assert ev["accuracy"] == pytest.approx(row["val_accuracy"], abs=1e-9)
    kept = fit(recipe.replace(restore_best=False), out=tmp_path / "k", quiet=True)
    assert kept.metrics["early_stopping"]["restored_epoch"] is None
    assert kept.metrics["train"]["epoch"] == stopped
    assert not np.array_equal(kept.weights["dense_0.kernel"], run.weights["dense_0.kernel"])


def _interrupted(monkeypatch, where, when):
    """Make fit raise KeyboardInterrupt once, as a kill would stop it there."""
    real = getattr(train_module if where != "write_model" else rundir, where)
    calls = {"n": 0}

    def once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == when:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module if where != "write_model" else rundir, where, once)
    return lambda: monkeypatch.setattr(
        train_module if where != "write_model" else rundir, where, real
    )


@pytest.mark.parametrize(
    "where,when",
    [
        ("learning_rates", 4),  # in epoch 4: best is epoch 3
        ("write_model", 1),
    ],
)  # stopped, model not yet written
def test_resume_gives_the_uninterrupted_result(tmp_path, monkeypatch, where, when):
    whole = fit(STALLS, out=tmp_path / "whole", quiet=True)
    undo = _interrupted(monkeypatch, where, when)
    with pytest.raises(KeyboardInterrupt):
        fit(STALLS, out=tmp_path / "cut", quiet=True)
    undo()
    assert not (tmp_path / "cut" / rundir.MODEL).exists()
    resumed = fit(out=tmp_path / "cut", resume=True, quiet=True)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in whole.history]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history] == strip
    for k in whole.weights:
        np.testing.assert_array_equal(resumed.weights[k], whole.weights[k], err_msg=k)
    assert resumed.metrics["early_stopping"] == whole.metrics["early_stopping"]
    assert resumed.metrics["test"] == whole.metrics["test"]


def test_cli_refuses_early_stopping_without_validation(monkeypatch, capsys, tmp_path):
    from mnistlab.cli import main

    for args, words in (
        (
            ["--early-stopping", "2", "--validation-split", "0"],
            "field 'early_stopping': expected 0 when validation_split is 0",
        ),
        (["--monitor", "loss"], "field 'monitor'"),
        (["--early-stopping", "-1"], "field 'early_stopping'"),
    ):
        monkeypatch.setattr(sys, "argv", ["mnistlab", "train", "--out", str(tmp_path / "r"), *args])
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
        assert words in err, err
