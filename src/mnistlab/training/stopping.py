"""Early stopping on a validation metric, with the best epoch's weights kept (Keras'
``EarlyStopping(monitor, patience, restore_best_weights=True)``).

The decision is a pure function of the history: after every epoch the monitored value either
improves on the best so far (strictly: lower val_loss, higher val_accuracy; NaN never does)
or counts one epoch of patience. A resumed run replays its history to the very same state;
only the best weights themselves travel in the checkpoint (as ``best.<weight name>``).

Unlike Keras, whose best weights come back only when it stops early, a run that uses up its
epochs without stopping also ends on its best epoch: the model file then always holds the
epoch the metrics name.

>>> s = EarlyStopping(patience=2, monitor="val_loss")
>>> [s.update({"epoch": e, "val_loss": v}) for e, v in enumerate([0.5, 0.4, 0.45, 0.41], 1)]
[False, False, False, True]
>>> s.best_epoch, s.stopped_epoch
(2, 4)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PREFIX = "best."


class EarlyStopping:
    def __init__(self, patience: int, monitor: str = "val_loss", restore_best: bool = True):
        self.patience, self.monitor, self.restore_best = patience, monitor, restore_best
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, np.ndarray] | None = None

    @classmethod
    def for_recipe(cls, recipe) -> EarlyStopping | None:
        """The recipe's early stopping, or None when it is off."""
        if not recipe.early_stopping:
            return None
        return cls(recipe.early_stopping, recipe.monitor, recipe.restore_best)

    def improved(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.monitor == "val_accuracy" else value < self.best

    def update(self, row: dict[str, Any]) -> bool:
        """Take one finished epoch's history row; True when training should stop now."""
        value = row.get(self.monitor)
        if self.improved(value):
            self.best, self.best_epoch, self.wait = float(value), int(row["epoch"]), 0
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = int(row["epoch"])
        return self.stopped_epoch is not None

    def replay(self, history: list[dict[str, Any]]) -> bool:
        """Bring a fresh instance to where a resumed run left off; True if it had stopped."""
        for row in history:
            if self.update(row):
                break
        return self.stopped_epoch is not None

    # ---- the best weights, in and out of a checkpoint ------------------------------------
    def keep(self, weights: dict[str, np.ndarray]) -> None:
        """Remember the weights of the epoch ``update`` just found best."""
        if self.restore_best:
            self.best_weights = {k: np.array(v, copy=True) for k, v in weights.items()}

    def tensors(self) -> dict[str, np.ndarray]:
        """``best.<name>`` tensors for the checkpoint (empty when there is nothing to keep)."""
        return {PREFIX + k: v for k, v in (self.best_weights or {}).items()}

    def load(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Take the ``best.`` tensors out of a checkpoint's state; return the rest."""
        best = {k[len(PREFIX) :]: v for k, v in state.items() if k.startswith(PREFIX)}
        self.best_weights = best or None
        return {k: v for k, v in state.items() if not k.startswith(PREFIX)}

    def record(self) -> dict[str, Any]:
        """What metrics.json says about it."""
        restored = self.best_epoch if self.restore_best and self.best_weights is not None else None
        return {
            "monitor": self.monitor,
            "patience": self.patience,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "restored_epoch": restored,
        }
