"""Everything training writes into its run folder, through ``rundir``, each file atomically.

A new run folder appears whole with its recipe.toml and environment.json (``start``); every
epoch writes the checkpoint and history.csv together, so a kill loses one epoch at most; the end
writes model.safetensors, completes environment.json, merges metrics.json and stores the final
model's test-set probabilities (predictions.safetensors, which compare pairs runs on; a run
without them has them recomputed from its model) (``finish``).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import fsio, rundir
from mnistlab._version import __version__
from mnistlab.datasets import Dataset
from mnistlab.engines.protocol import Engine
from mnistlab.recipe import Recipe
from mnistlab.training.plan import Data, Plan

TRAIN_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")  # metrics.json's "train"


class Recorder:
    def __init__(self, run_dir: Path, recipe: Recipe, engine: str, resumed_after: int):
        self.run_dir, self.recipe, self.engine = run_dir, recipe, engine
        self.resumed_after = resumed_after

    @classmethod
    def start(cls, plan: Plan, engine: Engine, hold: Callable[[Path], None]) -> Recorder:
        """The run folder of ``plan``: made (fresh, then held) or given its environment.json
        (restart); a resumed one gets its history.csv back in step with its checkpoint."""
        run_dir = plan.run_dir
        if plan.mode in ("fresh", "restart"):
            env = environment(plan.recipe, plan.dataset, engine, plan.data_dir)
            if plan.mode == "fresh":
                files = {
                    rundir.RECIPE: plan.recipe.to_toml().encode(),
                    rundir.ENVIRONMENT: rundir.json_bytes(env),
                }
                run_dir = rundir.new_run_dir(plan.recipe, run_dir, files)  # whole or not at all
                hold(run_dir)
            else:
                fsio.atomic_write_bytes(run_dir / rundir.ENVIRONMENT, rundir.json_bytes(env))
        if plan.state is not None:
            rundir.write_history(run_dir / rundir.HISTORY, plan.history)
        return cls(run_dir, plan.recipe, engine.name, plan.start)

    def checkpoint(
        self, state: dict[str, np.ndarray], epoch: int, history: list[dict[str, Any]]
    ) -> None:
        """State and history after ``epoch`` finished epochs. The checkpoint (which carries the
        history too) first: the larger write fails first."""
        path = self.run_dir / rundir.CHECKPOINT
        rundir.write_checkpoint(path, state, epoch, history, self.engine, self.recipe)
        rundir.write_history(self.run_dir / rundir.HISTORY, history)

    def finish(
        self, engine: Engine, data: Data, final: dict[str, Any], test: tuple, watched: dict
    ) -> rundir.Run:
        """Write the model, complete environment.json and metrics.json; the finished Run."""
        ds, run_dir = data.dataset, self.run_dir
        weights = engine.weights()
        classes = tuple(ds.class_names)
        model = run_dir / rundir.MODEL
        rundir.write_model(model, weights, data.mean, data.std, classes, self.recipe, ds.name)
        env = rundir.read_environment(run_dir / rundir.ENVIRONMENT)
        env.update(imported(engine))
        if self.resumed_after > 0:
            at = datetime.now(UTC).isoformat(timespec="seconds")
            env.setdefault("resumed", []).append({"after_epoch": self.resumed_after, "at": at})
        fsio.atomic_write_json(run_dir / rundir.ENVIRONMENT, env)
        test_loss, test_acc = test
        rundir.update_metrics(
            run_dir,
            {
                "train": {k: final.get(k) for k in TRAIN_KEYS},
                "test": {"loss": test_loss, "accuracy": test_acc},
                **watched,
            },
        )
        run = rundir.load_run(run_dir)
        proba = run.predict_proba(ds.x_test)
        rundir.write_predictions(run_dir / rundir.PREDICTIONS, proba, classes, ds.name)
        run.warnings, run.stopped = watched["health"], watched["stopped"]
        return run


def environment(recipe: Recipe, ds: Dataset, engine: Engine, data_dir) -> dict[str, Any]:
    """environment.json of a new run: versions, machine, seed, engine and the dataset record."""
    env: dict[str, Any] = {
        "mnistlab": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "seed": recipe.seed,
        "threads": recipe.threads,
        "cpu_count": os.cpu_count(),
        "engine": engine.name,
        "engine_reason": engine.reason,
        "device": engine.device,
        "dataset": rundir.DatasetRecord.of(ds, data_dir).to_dict(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    env.update(imported(engine))
    return env


def imported(engine: Engine) -> dict[str, Any]:
    """Versions and thread counts of what the run actually imported (known after training)."""
    # backend: numba or numpy on the fast engine, torch on the reference one
    out: dict[str, Any] = {"engine_threads": engine.threads, "engine_backend": engine.backend}
    out["subnormals"] = getattr(engine, "subnormals", None)  # flushed to zero, or why not
    for name in ("torch", "numba"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = module.__version__
    if "torch" in sys.modules:
        out["torch_threads"] = sys.modules["torch"].get_num_threads()
    return out
