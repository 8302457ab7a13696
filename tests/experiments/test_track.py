"""track: a run folder logged to a local MLflow store and read back with MLflow's client;
--track on train; a missing MLflow is one line naming the extra."""

from __future__ import annotations

import builtins
import dataclasses
import json
import sys
from pathlib import Path

import pytest

from mnistlab import datasets
from mnistlab.errors import RunError
from mnistlab.experiments import track
from mnistlab.recipe import Recipe
from mnistlab.training.fit import fit


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    ds = datasets.load("mnist-sample")
    small = dataclasses.replace(ds, x_train=ds.x_train[:800], y_train=ds.y_train[:800])
    out = tmp_path_factory.mktemp("track") / "tiny"
    fit(Recipe(name="tiny", epochs=3, hidden=[8], learning_rate=0.02), small, out=out, quiet=True)
    return out


def test_log_run_round_trip(run_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    run_id = track.log_run(run_dir, uri)
    client = MlflowClient(tracking_uri=uri)
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "tiny"
    assert client.get_experiment(got.info.experiment_id).name == "mnistlab"

    params = got.data.params
    assert params["learning_rate"] == "0.02" and params["hidden"] == "8" and params["epochs"] == "3"
    assert params["optimizer"] == "sgd" and params["momentum"] == "0.9"  # resolved values

    history = [ln.split(",") for ln in (run_dir / "history.csv").read_text().splitlines()]
    header, rows = history[0], history[1:]
    for key in ("loss", "val_accuracy", "learning_rate"):
        points = client.get_metric_history(run_id, key)
        assert [p.step for p in points] == [1, 2, 3]
        assert [p.value for p in points] == [float(r[header.index(key)]) for r in rows]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert got.data.metrics["test_accuracy"] == metrics["test"]["accuracy"]
    assert got.data.metrics["test_loss"] == metrics["test"]["loss"]
    assert got.data.tags["mnistlab.dataset"] == "mnist-sample"
    assert got.data.tags["mnistlab.health"] == "healthy"
    assert got.data.tags["mnistlab.run_dir"] == str(run_dir.resolve())

    names = {a.path for a in client.list_artifacts(run_id)}
    assert {
        "recipe.toml",
        "history.csv",
        "metrics.json",
        "model.safetensors",
        "environment.json",
    } <= names
    assert not any(n.endswith(".lock") for n in names)
    # artifacts sit beside the database, not in the current folder
    local = Path(client.download_artifacts(run_id, "recipe.toml", str(tmp_path / "dl")))
    assert local.read_bytes() == (run_dir / "recipe.toml").read_bytes()
    experiment = client.get_experiment(got.info.experiment_id)
    assert experiment.artifact_location == (tmp_path / "mlruns").resolve().as_uri()
    assert (tmp_path / "mlruns").is_dir()

    # a second log is a second MLflow run in the same experiment
    again = track.log_run(run_dir, uri, experiment="mnistlab")
    assert again != run_id
    assert len(client.search_runs([got.info.experiment_id])) == 2


def test_broken_folder_logs_nothing(run_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "recipe.toml").write_bytes((run_dir / "recipe.toml").read_bytes())
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    with pytest.raises(RunError, match="history.csv: file is missing"):
        track.log_run(broken, uri)
    assert not (tmp_path / "store.db").exists() or not MlflowClient(uri).search_experiments(
        filter_string="name = 'mnistlab'"
    )


def test_parse_target_and_missing_mlflow(monkeypatch):
    assert track.parse_target("mlflow") == "sqlite:///mlflow.db"
    assert track.parse_target("mlflow:http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    with pytest.raises(track.TrackError, match="expected 'mlflow' or 'mlflow:URI', got 'wandb'"):
        track.parse_target("wandb")

    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "mlflow", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(track.TrackError, match=r"pip install 'mnistlab\[track\]'"):
        track.require_mlflow()


def _cli(monkeypatch, capsys, *args):
    from mnistlab.cli import main

    monkeypatch.setattr(sys, "argv", ["mnistlab", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_train_track_default_store_in_the_current_folder(monkeypatch, capsys, tmp_path):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(monkeypatch, capsys, "train", "--track", "sqlite", "--epochs", "1")
    assert code == 2 and "--track: expected 'mlflow'" in err and not (tmp_path / "runs").exists()
    code, out, err = _cli(
        monkeypatch,
        capsys,
        "train",
        "--dataset",
        "mnist-sample",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--validation-split",
        "0.9",
        "--no-report",
        "--track",
        "mlflow",
        "--out",
        "r",
    )
    assert code == 0, err
    assert (tmp_path / "mlflow.db").is_file() and "tracked: MLflow run" in out
    runs = MlflowClient("sqlite:///mlflow.db").search_runs(
        [MlflowClient("sqlite:///mlflow.db").get_experiment_by_name("mnistlab").experiment_id]
    )
    assert len(runs) == 1 and runs[0].data.params["hidden"] == "8"
    assert "report.html" not in {
        a.path for a in MlflowClient("sqlite:///mlflow.db").list_artifacts(runs[0].info.run_id)
    }


def _tagged(uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name("mnistlab")
    return [] if found is None else client.search_runs([found.experiment_id])


@pytest.mark.slow  # ~20-40 s: a 2 x 2 compare and a 2-trial search, each run logged to MLflow
def test_compare_and_search_track_each_finished_run_once(monkeypatch, capsys, tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    quick = ["--dataset", "mnist-sample", "--train-images", "800", "--test-images", "200"]
    variants = tmp_path / "tiny.toml"
    variants.write_text("[base]\nhidden = [8]\nepochs = 1\n[variants.a]\n[variants.b]\nl2 = 1e-4\n")
    for cmd, args in (
        ("compare", [str(variants), "--seeds", "2"]),
        ("search", [str(variants), "--trials", "2"]),
    ):
        code, _, err = _cli(
            monkeypatch, capsys, cmd, *args, "--out", str(tmp_path / cmd), "--track", "wandb"
        )
        assert code == 2 and "--track: expected 'mlflow'" in err and len(err.splitlines()) == 1
        assert not (tmp_path / cmd).exists()  # checked before anything is written or trained

    cmd = [
        "compare",
        str(variants),
        "--seeds",
        "2",
        *quick,
        "--out",
        str(tmp_path / "c"),
        "--track",
        f"mlflow:{uri}",
    ]
    code, out, err = _cli(monkeypatch, capsys, *cmd)
    assert code == 0, err
    assert out.count("tracked: ") == 4
    runs = _tagged(uri)
    got = sorted(
        (
            r.data.tags["mnistlab.compare"],
            r.data.tags["mnistlab.variant"],
            r.data.tags["mnistlab.seed"],
            r.data.tags["mnistlab.run_dir"],
        )
        for r in runs
    )
    assert got == [
        ("tiny", v, str(s), str((tmp_path / "c" / "runs" / f"{v}-seed{s}").resolve()))
        for v in ("a", "b")
        for s in (0, 1)
    ]
    assert all(r.info.status == "FINISHED" and r.data.params["hidden"] == "8" for r in runs)
    code, out, err = _cli(monkeypatch, capsys, *cmd)  # all done: nothing trained, nothing logged
    assert code == 0 and "tracked: " not in out and len(_tagged(uri)) == 4

    space = tmp_path / "space.toml"
    space.write_text(
        "[base]\nhidden = [8]\nepochs = 1\n[space]\nlr = { low = 0.001, high = 0.1 }\n"
    )
    code, out, err = _cli(
        monkeypatch,
        capsys,
        "search",
        str(space),
        "--trials",
        "2",
        *quick,
        "--out",
        str(tmp_path / "s"),
        "--track",
        f"mlflow:{uri}",
        "--quiet",
    )
    assert code == 0, err
    trials = sorted(
        (
            r.data.tags["mnistlab.trial"],
            r.data.tags["mnistlab.trial_state"],
            r.data.tags["mnistlab.run_dir"],
            r.data.params["learning_rate"],
        )
        for r in _tagged(uri)
        if r.data.tags.get("mnistlab.study") == "space"
    )
    assert [t[:3] for t in trials] == [
        (str(n), "COMPLETE", str((tmp_path / "s" / "trials" / f"trial-000{n}").resolve()))
        for n in (0, 1)
    ]
    assert trials[0][3] != trials[1][3]  # the trials' own recipes, not the base's
