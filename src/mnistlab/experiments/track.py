"""Experiment tracking: log a finished run folder to MLflow (the optional extra
``mnistlab[track]``).

One call per run, after the fact: the run folder already holds everything, so tracking never
slows or changes training, and compare or search can log each of their runs the same way.

* parameters: every recipe field (flat names, e.g. ``learning_rate``, ``hidden``);
* per-epoch metrics: each history.csv row with ``step = epoch`` (loss, accuracy, val_loss,
  val_accuracy, learning_rate, seconds);
* final metrics: ``test_loss``, ``test_accuracy`` and, when ``mnistlab evaluate`` stored them, the
  test evaluation's macro F1 and probability R²;
* tags: the run folder, dataset, engine and the health verdict;
* artifacts: every file of the run folder (lock files excepted).

The default store is ``sqlite:///mlflow.db`` in the current folder (MLflow's own default backend,
no server); artifacts of a new experiment go next to an SQLite file, in ``mlruns/``.

>>> parse_target("mlflow")
'sqlite:///mlflow.db'
>>> parse_target("mlflow:sqlite:////tmp/t.db")
'sqlite:////tmp/t.db'
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError

DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT = "mnistlab"
_EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


class TrackError(MnistlabError):
    """Tracking was asked for but cannot be done (bad --track value, MLflow missing)."""


def parse_target(spec: str) -> str:
    """The tracking URI of a ``--track`` value: ``mlflow`` (default store) or ``mlflow:URI``."""
    kind, _, uri = spec.partition(":")
    if kind != "mlflow":
        raise TrackError(f"--track: expected 'mlflow' or 'mlflow:URI', got {spec!r}")
    return uri or DEFAULT_URI


def require_mlflow():
    """The mlflow module, or a one-line TrackError naming the extra to install."""
    try:
        import mlflow
    except ImportError:
        raise TrackError(
            "--track mlflow needs MLflow, which is not installed: pip install 'mnistlab[track]'"
        ) from None
    return mlflow


def _experiment_id(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # beside the database, not wherever the command ran
        db = Path(uri[len("sqlite:///") :])
        location = (db.resolve().parent / "mlruns").as_uri()
    return client.create_experiment(name, artifact_location=location)


def _params(run_dir: Path) -> dict[str, str]:
    from mnistlab.recipe import Recipe
    from mnistlab.rundir import RECIPE

    recipe = Recipe.from_toml(run_dir / RECIPE)
    out = {}
    for key, value in recipe.to_dict().items():
        for k, v in value.items() if isinstance(value, dict) else [(key, value)]:
            out[k] = ",".join(map(str, v)) if isinstance(v, list) else str(v)
    return out


def _final(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    test = metrics.get("test") or {}
    for key in ("loss", "accuracy"):
        if isinstance(test.get(key), (int, float)):
            out[f"test_{key}"] = float(test[key])
    stored = (metrics.get("evaluation") or {}).get("test") or {}
    if isinstance((stored.get("macro_avg") or {}).get("f1"), (int, float)):
        out["test_macro_f1"] = float(stored["macro_avg"]["f1"])
    r2 = (stored.get("r2") or {}).get("probabilities_vs_onehot")
    if isinstance(r2, (int, float)):
        out["test_r2_probabilities"] = float(r2)
    return out


def log_run(
    run_dir: str | Path,
    uri: str | None = None,
    *,
    experiment: str = EXPERIMENT,
    tags: dict[str, str] | None = None,
) -> str:
    """Log the finished run in ``run_dir`` to the MLflow store at ``uri`` (default
    ``sqlite:///mlflow.db``) under ``experiment``; return the MLflow run id."""
    from mnistlab import rundir
    from mnistlab.pages.run_pieces import health_verdict

    require_mlflow()
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    path = Path(run_dir)
    params = _params(path)  # read everything first: a broken folder logs nothing
    history = rundir.read_history(path / rundir.HISTORY)
    metrics = rundir.read_metrics(path / rundir.METRICS)
    env = rundir.read_environment(path / rundir.ENVIRONMENT)
    dataset = rundir.DatasetRecord.from_environment(env, path / rundir.ENVIRONMENT)
    verdict = health_verdict(metrics)
    all_tags = {
        "mnistlab.run_dir": str(path.resolve()),
        "mnistlab.dataset": dataset.name,
        "mnistlab.engine": env["engine"],
        "mnistlab.health": verdict[0] if verdict else "unknown",
        **(tags or {}),
    }

    uri = uri or DEFAULT_URI
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "creating tables" chatter
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(
        _experiment_id(client, experiment, uri), run_name=path.name, tags=all_tags
    )
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        points = [
            Metric(k, float(row[k]), now, int(row["epoch"]))
            for row in history
            for k in _EPOCH_METRICS
            if row.get(k) is not None
        ]
        points += [Metric(k, v, now, len(history)) for k, v in _final(metrics).items()]
        client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag("mnistlab.epochs", str(len(history)))],
        )
        for start in range(0, len(points), 1000):  # MLflow takes at most 1000 metrics a batch
            client.log_batch(run_id, metrics=points[start : start + 1000])
        for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".lock"):
            parent = file.parent.relative_to(path).as_posix()
            client.log_artifact(run_id, str(file), artifact_path=None if parent == "." else parent)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
