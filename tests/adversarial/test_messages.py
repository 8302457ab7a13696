"""States that used to go on silently or advise a flag that does not exist: a run whose
checkpoint was deleted, a search started over another study's trials."""

from __future__ import annotations

import dataclasses

import pytest

from mnistlab import datasets, rundir
from mnistlab.errors import MnistlabError, RunError
from mnistlab.recipe import Recipe
from mnistlab.training.fit import fit


@pytest.fixture(scope="module")
def tiny():
    ds = datasets.load("mnist-sample")
    return dataclasses.replace(ds, x_train=ds.x_train[:300], y_train=ds.y_train[:300])


def test_a_run_whose_checkpoint_was_deleted_is_not_restarted_silently(tmp_path, tiny):
    run = tmp_path / "r"
    fit(Recipe(epochs=2, hidden=[8]), tiny, out=run, quiet=True)
    for name in (rundir.CHECKPOINT, rundir.MODEL, rundir.METRICS):  # as if killed, then deleted
        (run / name).unlink()
    history = (run / rundir.HISTORY).read_bytes()
    with pytest.raises(
        RunError,
        match=r"checkpoint\.safetensors: file is missing, but "
        r"history\.csv records 2 finished epochs",
    ):
        fit(out=run, resume=True, quiet=True, dataset=tiny)
    assert (run / rundir.HISTORY).read_bytes() == history  # nothing trained over it


def test_a_run_killed_in_its_first_epoch_restarts_and_says_so(tmp_path, tiny, capsys):
    run = tmp_path / "r"
    fit(Recipe(epochs=1, hidden=[8]), tiny, out=run, quiet=True)
    for name in (rundir.CHECKPOINT, rundir.MODEL, rundir.METRICS, rundir.HISTORY):
        (run / name).unlink()
    fit(out=run, resume=True, dataset=tiny)
    assert (
        "no epoch had finished (no checkpoint); starting it from epoch 0" in capsys.readouterr().out
    )
    assert len(rundir.read_history(run / rundir.HISTORY)) == 1


def test_a_search_over_another_studys_trials_names_what_to_do(tmp_path, tiny):
    from mnistlab.experiments import search as srch

    space = srch.parse_space(
        {"base": {"epochs": 1, "hidden": [8]}, "space": {"dropout": {"low": 0.0, "high": 0.5}}},
        source="s.toml",
        default_name="s",
    )
    srch.search(space, 1, out=tmp_path / "o", dataset=tiny)
    with pytest.raises(MnistlabError) as err:
        srch.search(space, 1, out=tmp_path / "o", dataset=tiny, study="other")
    message = str(err.value)
    assert "trial-0000: holds trial 0 of another study than 'other'" in message
    assert "--resume" not in message and "its own --out" in message
