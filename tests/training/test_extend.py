"""Training a finished run further (``train --resume RUN --epochs N``): the run it becomes is the
run N epochs would have given, bit for bit on this machine, or it is refused in one line."""

import dataclasses
import json
import sys

import numpy as np
import pytest

from mnistlab import datasets, rundir
from mnistlab.errors import RunError
from mnistlab.recipe import Recipe
from mnistlab.training.fit import fit, resume


@pytest.fixture(scope="module")
def small():
    ds = datasets.load("mnist-sample")
    return dataclasses.replace(ds, x_train=ds.x_train[:800], y_train=ds.y_train[:800])


def _without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize(
    "changes",
    [
        {"dropout": 0.2},
        {"schedule": "step", "step_size": 2, "gamma": 0.5, "warmup_epochs": 1.5},
        {"schedule": "exponential", "step_size": 2, "gamma": 0.5},
        {"schedule": "plateau", "plateau_patience": 1, "plateau_factor": 0.5},
        {"early_stopping": 4, "optimizer": "adam", "lr": 0.003},
    ],
    ids=["constant-dropout", "step-warmup", "exponential", "plateau", "early-stopping"],
)
def test_five_epochs_then_eight_is_the_eight_epoch_run(small, tmp_path, changes):
    recipe = Recipe(hidden=[16], threads=1, **changes)
    whole = fit(recipe.replace(epochs=8), small, out=tmp_path / "eight", quiet=True)
    short = fit(recipe.replace(epochs=5), small, out=tmp_path / "five", quiet=True)
    (tmp_path / "five" / rundir.REPORT).write_text("stale")
    longer = resume(short.path, dataset=small, epochs=8, quiet=True)

    assert longer.path == short.path and longer.recipe == whole.recipe
    assert _without_seconds(longer.history) == _without_seconds(whole.history)
    assert sorted(longer.weights) == sorted(whole.weights)
    for name in whole.weights:
        np.testing.assert_array_equal(longer.weights[name], whole.weights[name], err_msg=name)
    assert longer.metrics["test"] == whole.metrics["test"]
    assert rundir.load_run(short.path).recipe.epochs == 8  # recipe.toml says what it now is
    assert not (tmp_path / "five" / rundir.REPORT).exists()  # the 5-epoch page is gone
    stored = rundir.read_predictions(tmp_path / "five" / rundir.PREDICTIONS)["proba"]
    np.testing.assert_array_equal(stored, longer.predict_proba(small.x_test))
    env = json.loads((tmp_path / "five" / rundir.ENVIRONMENT).read_text())
    assert [(e["from_epochs"], e["to_epochs"]) for e in env["extended"]] == [(5, 8)]


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"schedule": "cosine"}, "schedule 'cosine' decays to 0 over the run's total epochs"),
        ({"schedule": "onecycle"}, "schedule 'onecycle'"),
        ({"early_stopping": 1, "monitor": "val_accuracy", "lr": 1e-7}, "early stopping ended it"),
    ],
)
def test_runs_that_cannot_be_continued_are_refused_untouched(small, tmp_path, changes, words):
    run = fit(Recipe(hidden=[16], epochs=3, **changes), small, out=tmp_path / "r", quiet=True)
    before = {p.name: p.read_bytes() for p in run.path.iterdir()}
    with pytest.raises(RunError, match=words) as err:
        resume(run.path, dataset=small, epochs=6, quiet=True)
    assert "train a new run with --epochs 6" in str(err.value) and "\n" not in str(err.value)
    assert {p.name: p.read_bytes() for p in run.path.iterdir()} == before


def test_fewer_epochs_are_refused(small, tmp_path):
    run = fit(Recipe(hidden=[8], epochs=2), small, out=tmp_path / "r", quiet=True)
    with pytest.raises(RunError, match="has 2 epochs; --epochs 1 would cut it short"):
        resume(run.path, dataset=small, epochs=1, quiet=True)


def test_killed_while_extending_a_plain_resume_finishes_the_longer_run(small, tmp_path):
    recipe = Recipe(hidden=[8], threads=1)
    whole = fit(recipe.replace(epochs=4), small, out=tmp_path / "whole", quiet=True)
    run = fit(recipe.replace(epochs=2), small, out=tmp_path / "r", quiet=True)

    def killed(*args, **kwargs):  # the first new epoch never finishes
        raise KeyboardInterrupt

    import mnistlab.training.fit as fit_module

    real = fit_module.augment.epoch_images
    fit_module.augment.epoch_images = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            resume(run.path, dataset=small, epochs=4, quiet=True)
    finally:
        fit_module.augment.epoch_images = real
    assert not (run.path / rundir.MODEL).exists()
    done = resume(run.path, dataset=small, quiet=True)  # no --epochs: recipe.toml says 4
    assert _without_seconds(done.history) == _without_seconds(whole.history)


def test_cli_resume_takes_epochs_and_nothing_else(small, tmp_path, monkeypatch, capsys):
    from mnistlab.cli import main

    run = fit(Recipe(hidden=[8], epochs=1, dataset="mnist-sample"), out=tmp_path / "r", quiet=True)

    def cli(*extra):
        args = ["train", "--resume", str(run.path), "--epochs", "2", "--quiet", *extra]
        monkeypatch.setattr(sys, "argv", ["mnistlab", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        return (exc.value.code, *capsys.readouterr())

    code, out, err = cli("--lr", "0.1")
    assert code == 2 and "only 'epochs'" in err and "field 'learning_rate'" in err, err
    assert rundir.load_run(run.path).recipe.epochs == 1
    code, out, err = cli()
    assert code == 0 and out == f"{run.path}\n", out + err
    assert rundir.load_run(run.path).recipe.epochs == 2
    assert len(rundir.load_run(run.path).history) == 2


def test_a_damaged_extension_record_is_one_line(small, tmp_path):
    run = fit(Recipe(hidden=[8], epochs=1), small, out=tmp_path / "r", quiet=True)
    (run.path / rundir.MODEL).unlink()  # as if killed while being extended
    env_file = run.path / rundir.ENVIRONMENT
    env = json.loads(env_file.read_text())
    env_file.write_text(json.dumps({**env, "extended": [{"to_epochs": 2}]}))
    with pytest.raises(RunError, match=r"\['extended'\]\[0\]\['from_epochs'\] is missing"):
        resume(run.path, dataset=small, quiet=True)
