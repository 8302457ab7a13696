"""What a run page is made of: each piece of a run folder read on its own, so a damaged or
missing piece becomes one "missing" box instead of no page.

>>> _read(int, "x").problem
"invalid literal for int() with base 10: 'x'"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import rundir
from mnistlab.engines.arch import network
from mnistlab.errors import MnistlabError, RunError
from mnistlab.evaluation import calibration as cal
from mnistlab.evaluation import evaluate
from mnistlab.pages.inside_sections import BREAKS, LEARNED
from mnistlab.recipe import Recipe
from mnistlab.rundir.calibration import read_calibration

REPORT = rundir.REPORT
SECTIONS = {
    "recipe": "Recipe",
    "dataset": "Dataset",
    "learning-curves": "Learning curves",
    "confusion": "Confusion matrix (test set)",
    "per-class": "Precision, recall and F1 per class",
    "confused-pairs": "Most-confused pairs",
    "mistakes": "Misclassified digits",
    **LEARNED,
    "r2": "R\u00b2, honestly",
    "calibration": "How sure it should be",
    **BREAKS,
    "health": "Health check",
    "environment": "Environment and timings",
}
# What a damaged piece of a run raises while being read: never a bare Exception, so a bug in
# this module still surfaces as a traceback instead of a "missing" box.
_READ_ERRORS = (MnistlabError, OSError, ValueError, KeyError, TypeError)


@dataclass
class Loaded:
    """One part of a run folder as loaded: its value, or one line saying why it could not be."""

    value: Any = None
    problem: str | None = None


def _read(fn, *args) -> Loaded:
    try:
        return Loaded(fn(*args))
    except _READ_ERRORS as exc:
        return Loaded(problem=str(exc) or type(exc).__name__)


# ---- gathering --------------------------------------------------------------------------
def _evaluation(path: Path, dataset: Loaded, metrics: Loaded) -> Loaded:
    """Test-set predictions of the run's model: {"result", "x", "y", "proba"}; when the model
    or the data cannot be used but ``mnistlab evaluate`` stored a test evaluation, that one
    (without images) with ``problem`` saying why."""

    try:
        if dataset.problem is not None:
            raise RunError(dataset.problem)
        model = rundir.read_model(path / rundir.MODEL)
        run = rundir.Run(
            path=path,
            recipe=model["recipe"],
            weights=model["weights"],
            mean=model["mean"],
            std=model["std"],
            class_names=model["class_names"],
            history=[],
            dataset_name=model["dataset"],
            engine="",
            dataset=dataset.value,
        )
        x, y = evaluate.split_data(run, "test")
        proba = run.finite_proba(x, before="evaluating")
        result = evaluate.evaluate_predictions(y, proba, run.class_names)
        return Loaded(
            {
                "result": result,
                "x": np.asarray(x),
                "y": np.asarray(y),
                "proba": proba,
                "params": network(model["recipe"], len(model["class_names"])).trainable_count,
                "run": run,
            }
        )
    except _READ_ERRORS as exc:
        problem = str(exc)
    stored = (metrics.value or {}).get("evaluation", {}) if isinstance(metrics.value, dict) else {}
    stored = stored.get("test") if isinstance(stored, dict) else None
    keys = ("confusion_matrix", "per_class", "class_names", "r2", "most_confused", "accuracy", "n")
    if isinstance(stored, dict) and all(k in stored for k in keys):
        return Loaded(
            {"result": stored, "x": None, "y": None, "proba": None, "params": None, "run": None},
            problem,
        )
    return Loaded(problem=problem)


def _calibration(path: Path, evaluation: Loaded) -> Loaded:
    """The test set's logits and the temperature that calibrates them: the stored
    calibration.json's, else one fitted now on the validation part (not stored), else none
    and why. A damaged or stale calibration.json is named in ``damaged``."""

    run = (evaluation.value or {}).get("run")
    if run is None:
        return Loaded(problem=evaluation.problem or "the model cannot be used")
    value: dict[str, Any] = {"stored": None, "damaged": None, "why_not": None, "fitted_on": None}
    try:
        if (path / rundir.CALIBRATION).is_file():
            try:
                value["stored"] = read_calibration(run)
                value["temperature"] = value["stored"].temperature
                value["fitted_on"] = value["stored"].fitted_on
            except RunError as exc:
                value["damaged"] = str(exc)
        if value["stored"] is None:
            try:
                value["temperature"], value["fitted_on"] = cal.fit_run_temperature(run)
            except RunError as exc:  # no validation part, or one that cannot be rebuilt
                value["temperature"], value["why_not"] = None, str(exc)
        x, y = evaluation.value["x"], evaluation.value["y"]
        value["logits"], value["y"] = run.predict_logits(x), y
        value["test"] = cal.before_after(value["logits"], y, value["temperature"], "test")
    except _READ_ERRORS as exc:
        return Loaded(problem=str(exc))
    return Loaded(value)


def gather(run_dir: str | Path) -> dict[str, Loaded]:
    """Every piece of a run folder the report shows, each read on its own."""

    path = rundir.run_folder(run_dir)
    env_file = path / rundir.ENVIRONMENT
    parts = {
        "recipe": _read(Recipe.from_toml, path / rundir.RECIPE),
        "history": _read(rundir.read_history, path / rundir.HISTORY),
        "metrics": _read(rundir.read_metrics, path / rundir.METRICS),
        "environment": _read(rundir.read_environment, env_file),
    }
    env = parts["environment"]
    parts["dataset"] = (
        _read(rundir.DatasetRecord.from_environment, env.value, env_file)
        if env.problem is None
        else env
    )
    parts["evaluation"] = _evaluation(path, parts["dataset"], parts["metrics"])
    parts["calibration"] = _calibration(path, parts["evaluation"])
    return parts


def architecture(recipe) -> str:
    """The network in one line, e.g. '784 → 128 relu → 128 relu → 128 relu → 10 softmax'."""
    return network(recipe).line


def health_verdict(metrics: Any) -> tuple[str, list[str]] | None:
    """("healthy" | "warning", messages) from metrics.json, or None when it holds no verdict."""
    if not isinstance(metrics, dict) or not isinstance(metrics.get("health"), list):
        return None
    messages = [str(m) for m in metrics["health"]]
    return ("warning" if messages else "healthy"), messages
