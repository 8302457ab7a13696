"""Whether training goes on after an epoch: the health check, early stopping,
``stop_on_divergence`` and the caller's ``on_epoch``, asked in that order, as one answer.

The watch sees each epoch twice: ``observe`` before its checkpoint (early stopping's best epoch
and weights travel in it) and ``stop`` after (so whatever stops training, the epoch is saved).
At the end ``restore_best`` puts the best epoch's weights back, and ``record`` is what
metrics.json says about it all: health warnings, why training stopped early, early stopping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mnistlab.recipe import Recipe
from mnistlab.training.console import Console
from mnistlab.training.health import HealthWarning, check_epoch, check_history
from mnistlab.training.stopping import EarlyStopping


class Watch:
    def __init__(
        self,
        recipe: Recipe,
        history: list[dict[str, Any]],
        console: Console,
        pixel_std: float | None,
        n_classes: int,
        *,
        stop_on_divergence: bool = False,
        on_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
    ):
        self.recipe, self.console = recipe, console
        self.pixel_std, self.n_classes = pixel_std, n_classes
        self.stop_on_divergence, self.on_epoch = stop_on_divergence, on_epoch
        self.stopper = EarlyStopping.for_recipe(recipe)
        # Epochs finished before a resume keep their warnings (already shown back then).
        self.warnings: list[HealthWarning] = check_history(history, recipe, pixel_std, n_classes)
        self.stopped: str | None = None  # why training stopped before its rules said so
        self.early_stop = False
        # A run killed after early stopping had decided, but before the model was written.
        self.done = self.stopper is not None and self.stopper.replay(history)

    def load(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A checkpoint's engine state, early stopping's best weights taken out of it."""
        return self.stopper.load(state) if self.stopper is not None else state

    def observe(self, row: dict[str, Any], engine) -> dict[str, np.ndarray]:
        """Take a finished epoch's row; the state its checkpoint holds (engine + best weights)."""
        self.early_stop = self.stopper is not None and self.stopper.update(row)
        state = engine.state()
        if self.stopper is not None:
            if self.stopper.best_epoch == row["epoch"]:
                self.stopper.keep(engine.weights())
            state.update(self.stopper.tensors())
        return state

    def stop(self, row: dict[str, Any]) -> bool:
        """True when training ends after this (checkpointed) epoch; says why."""
        epoch, recipe = row["epoch"], self.recipe
        warning = check_epoch(row, recipe, self.pixel_std, self.n_classes)
        if warning is not None and warning.kind not in {w.kind for w in self.warnings}:
            self.warnings.append(warning)
            self.console.warn(warning.message)
        if warning is not None and self.stop_on_divergence:
            self.stopped = f"stopped after epoch {epoch}: {warning.kind} (--stop-on-divergence)"
            self.console.warn(self.stopped)
            return True
        if self.early_stop:
            self.console.line(
                f"early stopping after epoch {epoch}: {recipe.monitor} did not improve for "
                f"{recipe.early_stopping} epochs (best: epoch {self.stopper.best_epoch})"
            )
            return True
        if self.on_epoch is not None and self.on_epoch(dict(row)):
            self.stopped = f"stopped after epoch {epoch} by on_epoch"
            return True
        return False

    def restore_best(self, engine, history: list[dict[str, Any]]) -> dict[str, Any]:
        """Put the best epoch's weights back (early stopping); the history row they are of."""
        stopper = self.stopper
        if stopper is None or stopper.best_weights is None:
            return history[-1] if history else {}
        state = engine.state()
        state.update(stopper.best_weights)
        engine.load_state(state)
        self.console.line(
            f"restored the weights of epoch {stopper.best_epoch} ({self.recipe.monitor} "
            f"{stopper.best:.4f})"
        )
        return history[stopper.best_epoch - 1]

    def record(self) -> dict[str, Any]:
        """metrics.json's "health", "stopped" and "early_stopping"."""
        return {
            "health": [w.message for w in self.warnings],
            "stopped": self.stopped,
            "early_stopping": self.stopper.record() if self.stopper is not None else None,
        }
