"""A finished run, loaded and verified: what evaluate, predict, export and serve take.

>>> import mnistlab
>>> run = mnistlab.load_run  # load_run(path) -> Run; see the README's tour
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.datasets.preprocess import preprocess
from mnistlab.engines import predictor
from mnistlab.errors import RunError
from mnistlab.recipe import Recipe
from mnistlab.rundir.dataset import DatasetRecord
from mnistlab.rundir.files import read_model
from mnistlab.rundir.folder import (
    ENVIRONMENT,
    HISTORY,
    METRICS,
    MODEL,
    RECIPE,
    REQUIRED,
    run_folder,
)
from mnistlab.rundir.records import read_environment, read_history, read_metrics


# ---- the Run object ---------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """A loaded run folder. ``predict_proba`` takes raw uint8 images; ``dataset`` is what it
    trained on (``dataset.load`` gets those images again, verified)."""

    path: Path
    recipe: Recipe
    weights: dict[str, np.ndarray]
    mean: float
    std: float
    class_names: tuple[str, ...]
    history: list[dict[str, Any]]
    dataset_name: str
    engine: str
    dataset: DatasetRecord
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    environment: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)  # health check, this session
    stopped: str | None = None  # why training stopped early, if it did
    _predict: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)
    _logits: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        return preprocess(x, self.mean, self.std)

    def predict_proba(self, x: np.ndarray, batch_size: int = 10000) -> np.ndarray:
        """(N, n_classes) float32 softmax probabilities for uint8 images ``x``."""
        if self._predict is None:
            self._predict = predictor(self.recipe, self.weights)
        predict = self._predict
        parts = [
            predict(self.preprocess(x[s : s + batch_size])) for s in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.class_names)), np.float32)

    def predict_logits(self, x: np.ndarray, batch_size: int = 10000) -> np.ndarray:
        """(N, n_classes) float32 logits for uint8 images ``x``: what ``predict_proba`` takes
        the softmax of (calibration divides them by a temperature first)."""
        if self._logits is None:
            self._logits = predictor(self.recipe, self.weights, logits=True)
        parts = [
            self._logits(self.preprocess(x[s : s + batch_size]))
            for s in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.class_names)), np.float32)

    def finite_proba(self, x: np.ndarray, before: str) -> np.ndarray:
        """``predict_proba``, refused in one RunError line when the model answers NaN or
        infinity (weights that blew up in training): there is nothing to use ``before``
        (e.g. "evaluating") it is retrained."""
        proba = self.predict_proba(x)
        if not np.all(np.isfinite(proba)):
            raise RunError(
                f"{Path(self.path) / MODEL}: the model predicts NaN/inf probabilities "
                f"(training diverged?); retrain it before {before}"
            )
        return proba


def load_run(path: str | Path) -> Run:
    """Read and verify a finished run folder; any problem is a RunError naming the file."""
    path = run_folder(path)
    for name in REQUIRED:
        if not (path / name).is_file():
            raise RunError(
                f"{path / name}: file is missing (the run is incomplete; "
                f"if training was interrupted, continue it with --resume)"
            )
    recipe = Recipe.from_toml(path / RECIPE)
    model = read_model(path / MODEL)
    if model["recipe"] != recipe:
        raise RunError(f"{path / MODEL}: its recipe differs from {path / RECIPE}")
    env = read_environment(path / ENVIRONMENT)
    return Run(
        path=path,
        recipe=recipe,
        weights=model["weights"],
        mean=model["mean"],
        std=model["std"],
        class_names=model["class_names"],
        history=read_history(path / HISTORY),
        dataset_name=model["dataset"],
        engine=env["engine"],
        dataset=DatasetRecord.from_environment(env, path / ENVIRONMENT),
        metrics=read_metrics(path / METRICS),
        environment=env,
    )
