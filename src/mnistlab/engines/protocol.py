"""The ``Engine`` protocol: what training reads from an engine, whichever runs the maths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np


# ---- the engine protocol ----------------------------------------------------------------------
@runtime_checkable
class Engine(Protocol):
    """What train.py (and bench/) read from an engine.

    ``train_epoch(x, y, order, lrs, epoch, on_progress)``: x float32 (N, 784) normalized,
    C-contiguous; y int64 (N,); order int64 (N,) this epoch's permutation; lrs float64 (steps,)
    from ``schedules.learning_rates``. Batch k is ``x[order[k*bs:(k+1)*bs]]`` (the last,
    smaller batch is a step too). Returns the mean over samples of the batch losses
    (cross-entropy + L2 penalty, as Keras reports) and the accuracy; calls
    ``on_progress(batches_done, running_loss, running_acc)`` up to ~20 times. Dropout masks
    are a function of (seed, epoch, step, layer) (``dropout_keys``): a resumed epoch replays.
    ``evaluate``/``predict_proba`` run in inference mode (no dropout, batch norm's moving
    statistics). ``weights()`` are Keras-named; ``state()`` adds ``opt.*``.
    """

    name: str  # "fast" or "reference"
    device: str  # "cpu", "cuda", ...
    backend: str  # "numba", "numpy" or "torch"
    threads: int | None
    reason: str  # why make_engine picked it
    subnormals: str  # how subnormal floats are handled while it computes (fpmode.status)

    def train_epoch(
        self,
        x: np.ndarray,
        y: np.ndarray,
        order: np.ndarray,
        lrs: np.ndarray,
        epoch: int,
        on_progress: Callable[[int, float, float], None] | None = None,
    ) -> tuple[float, float]: ...

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...

    def weights(self) -> dict[str, np.ndarray]: ...

    def state(self) -> dict[str, np.ndarray]: ...

    def load_state(self, state: dict[str, np.ndarray]) -> None: ...
