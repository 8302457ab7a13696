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

A ``--track`` value is checked before training starts (``check_target``): a scheme MLflow has no
store for, a server that does not answer within ``REACH_TIMEOUT``, or a store that cannot be
written is one line then, not a traceback after the run. Logging runs under the HTTP deadlines
of ``HTTP_DEADLINES`` (MLflow's defaults retry for minutes), and its failures are one line.

>>> parse_target("mlflow")
'sqlite:///mlflow.db'
>>> parse_target("mlflow:sqlite:////tmp/t.db")
'sqlite:////tmp/t.db'
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mnistlab import rundir
from mnistlab.errors import MnistlabError
from mnistlab.pages.run_pieces import health_verdict
from mnistlab.recipe import Recipe
from mnistlab.rundir import RECIPE

DEFAULT_URI = "sqlite:///mlflow.db"
EXPERIMENT = "mnistlab"
_EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")
# Stores MLflow ships: a file, a tracking server, a database ("": a plain folder path).
SCHEMES = ("sqlite", "http", "https", "file", "", "postgresql", "mysql", "mssql", "databricks")
_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433, "databricks": 443}
REACH_TIMEOUT = 5.0  # s for the check that a tracking server or database host answers
# MLflow's deadlines for its HTTP requests while logging (its defaults: 120 s a request and 7
# retries with backoff, minutes on a dead server): 3 tries of at most 30 s each.
HTTP_DEADLINES = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


class TrackError(MnistlabError):
    """Tracking was asked for but cannot be done (bad --track value, MLflow missing)."""


def parse_target(spec: str) -> str:
    """The tracking URI of a ``--track`` value: ``mlflow`` (default store) or ``mlflow:URI``."""
    kind, _, uri = spec.partition(":")
    if kind != "mlflow":
        raise TrackError(f"--track: expected 'mlflow' or 'mlflow:URI', got {spec!r}")
    uri = uri or DEFAULT_URI
    scheme = _scheme(uri)
    if scheme not in SCHEMES:
        raise TrackError(
            f"--track {spec}: MLflow has no store for '{scheme}:'; expected sqlite:///FILE, "
            "http(s)://HOST:PORT, a folder, or a database URL (postgresql://, mysql://)"
        )
    return uri


def _scheme(uri: str) -> str:
    scheme = urlsplit(uri).scheme.lower().split("+")[0]  # postgresql+psycopg -> postgresql
    return "" if len(scheme) == 1 else scheme  # C:\\mlruns is a folder, not a scheme


def check_target(uri: str) -> None:
    """Before any work: the store of ``uri`` can be written (SQLite, a folder) or its host
    answers within REACH_TIMEOUT (a server, a database); else one TrackError line."""
    parts, scheme = urlsplit(uri), _scheme(uri)
    if scheme == "sqlite":
        _check_writable(Path(uri[len("sqlite:///") :].split("?", 1)[0]), uri)
    elif scheme in ("file", ""):  # MLflow makes the folder: the nearest existing one counts
        folder = Path(parts.path if scheme == "file" else uri).absolute()
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        _check_writable(folder / "meta.yaml", uri)
    elif scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=REACH_TIMEOUT).close()
        except urllib.error.HTTPError:
            pass  # it answered; what it makes of the requests is MLflow's to report
        except (OSError, ValueError) as exc:
            raise TrackError(
                f"--track {uri}: the tracking server does not answer within "
                f"{REACH_TIMEOUT:g} s ({getattr(exc, 'reason', exc)})"
            ) from None
    elif parts.hostname:
        address = (parts.hostname, parts.port or _PORTS.get(scheme, 0))
        try:
            socket.create_connection(address, timeout=REACH_TIMEOUT).close()
        except OSError as exc:
            raise TrackError(f"--track {uri}: cannot reach {parts.netloc} ({exc})") from None


def _check_writable(file: Path, uri: str) -> None:
    """A file can be made beside ``file``, and ``file`` opened for writing if it exists: a
    missing or read-only folder is refused before training, not after it."""
    folder = file.parent
    try:
        if not folder.is_dir():
            raise FileNotFoundError(2, "no such folder")
        if file.is_file():
            with open(file, "r+b"):
                pass
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".mnistlab-track-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise TrackError(
            f"--track {uri}: cannot write the tracking store in {folder} "
            f"({exc.strerror or exc}); choose a writable location"
        ) from None


@contextlib.contextmanager
def _deadlines(uri: str) -> Iterator[None]:
    """MLflow's HTTP deadlines of ``HTTP_DEADLINES`` for the block (the user's own settings
    win), and any failure of MLflow's inside it as one TrackError line."""
    saved = {k: os.environ.get(k) for k in HTTP_DEADLINES}
    for key, value in HTTP_DEADLINES.items():
        os.environ.setdefault(key, value)
    try:
        yield
    except MnistlabError:
        raise
    except Exception as exc:  # MlflowException, requests' and SQLAlchemy's errors, by store
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrackError(f"--track {uri}: logging to MLflow failed ({text})") from None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


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

    require_mlflow()
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
    with _deadlines(uri):
        client = MlflowClient(tracking_uri=uri)
        run = client.create_run(
            _experiment_id(client, experiment, uri), run_name=path.name, tags=all_tags
        )
        _log(client, run.info.run_id, path, history, metrics, params)
    return run.info.run_id


def _log(client, run_id: str, path: Path, history, metrics, params) -> None:
    """The run's parameters, metrics and files into the MLflow run ``run_id``, then FINISHED
    (FAILED when any of it fails)."""
    from mlflow.entities import Metric, Param, RunTag

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
        with contextlib.suppress(Exception):  # the store may be what failed
            client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
