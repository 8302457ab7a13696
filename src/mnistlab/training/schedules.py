"""Learning rate of every optimizer step, computed up front as one array per epoch.

Engines take the array instead of a schedule object so the hot loop does one indexed read per
step, and so both engines see bit-identical rates.

The notebook's ``SGD(lr=0.01, decay=1e-6)`` is Keras' legacy inverse-time decay, applied per
step with the step counter ``t`` starting at 0: ``lr_t = lr / (1 + decay * t)``. Schedules
multiply that, and so does a linear warm-up over the first ``warmup_epochs`` (for ``onecycle``
the warm-up length is where its peak sits):

* ``constant``: 1.
* ``step``: ``gamma ** (epoch // step_size)``, a drop every ``step_size`` epochs.
* ``exponential``: ``gamma ** (t / (step_size * steps))``, the same decay applied smoothly at
  every step (Keras' ``ExponentialDecay`` with ``staircase=False``).
* ``cosine``: from 1 down to 0 over the run.
* ``onecycle``: up from 1/25 to 1 over the first 30 % (or the warm-up), then linearly to 0.
* ``plateau``: Keras' ``ReduceLROnPlateau`` replayed over the finished epochs' ``history``: the
  factor drops by ``plateau_factor`` after ``plateau_patience`` epochs in which
  ``plateau_monitor`` did not improve by ``plateau_min_delta``, then waits
  ``plateau_cooldown`` epochs; the rate never goes below ``min_lr``. The history is a pure
  input (it is in the checkpoint), so a resumed run gets the same rates.

>>> from mnistlab.recipe import Recipe
>>> lrs = learning_rates(Recipe(), epoch=1, steps=1313)
>>> round(float(lrs[0]), 8) == round(0.01 / (1 + 1e-6 * 1313), 8)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mnistlab.recipe import Recipe


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Optimizer steps in one epoch; the last, smaller batch is a real step (as in Keras)."""
    return math.ceil(n_samples / batch_size)


def learning_rates(
    recipe: Recipe, epoch: int, steps: int, history: Sequence[Mapping[str, Any]] | None = None
) -> np.ndarray:
    """float64 array of the ``steps`` learning rates of epoch ``epoch`` (0-based).

    ``history``: the rows of the epochs before ``epoch`` (as ``train.fit`` records them); only
    ``schedule="plateau"`` reads it.
    """
    t = np.arange(epoch * steps, (epoch + 1) * steps, dtype=np.float64)
    total = float(recipe.epochs * steps)
    factor = np.ones_like(t)
    if recipe.schedule == "step":
        factor *= recipe.gamma ** (epoch // recipe.step_size)
    elif recipe.schedule == "exponential":
        factor *= recipe.gamma ** (t / (recipe.step_size * steps))
    elif recipe.schedule == "plateau":
        factor *= plateau_factor(recipe, history or [], epoch)
    elif recipe.schedule == "cosine":
        factor *= 0.5 * (1.0 + np.cos(np.pi * t / total))
    elif recipe.schedule == "onecycle":
        # Triangle: from lr/25 up to lr over the first 30 % (or the warm-up), then down to ~0.
        peak = recipe.warmup_epochs * steps if recipe.warmup_epochs > 0 else 0.3 * total
        up = 1 / 25 + (1 - 1 / 25) * t / max(peak, 1.0)
        down = (total - t) / max(total - peak, 1.0)
        factor *= np.where(t < peak, up, down)
    if recipe.warmup_epochs > 0 and recipe.schedule != "onecycle":
        factor *= np.minimum(1.0, (t + 1) / (recipe.warmup_epochs * steps))
    return recipe.learning_rate * factor / (1.0 + recipe.decay * t)


def plateau_factor(recipe: Recipe, history: Sequence[Mapping[str, Any]], epoch: int) -> float:
    """The lr multiplier ``schedule="plateau"`` holds in epoch ``epoch``, from epochs before it.

    Keras' ``ReduceLROnPlateau.on_epoch_end`` step by step (mode from the monitored name:
    losses must fall, accuracies rise; a NaN never improves):

    >>> r = Recipe(schedule="plateau", plateau_patience=2, plateau_factor=0.5, decay=0.0)
    >>> rows = [{"val_loss": v} for v in (1.0, 0.9, 0.95, 0.93, 0.8)]
    >>> [plateau_factor(r, rows, e) for e in range(6)]
    [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    """
    if len(history) < epoch:
        raise ValueError(
            f"schedule 'plateau' needs the history of the {epoch} epochs before "
            f"epoch {epoch + 1}, got {len(history)}"
        )
    name = recipe.plateau_monitor
    sign = 1.0 if name.endswith("loss") else -1.0  # compare as "lower is better"
    floor = recipe.min_lr / recipe.learning_rate
    factor, best, wait, cooldown = 1.0, math.inf, 0, 0
    for row in history[:epoch]:
        value = row.get(name)
        if value is None:  # Keras skips an epoch without the number
            continue
        current = sign * float(value)
        if cooldown > 0:
            cooldown -= 1
            wait = 0
        if current < best - recipe.plateau_min_delta:
            best, wait = current, 0
        elif cooldown == 0:
            wait += 1
            if wait >= recipe.plateau_patience and factor > floor:  # else wait keeps counting
                factor = max(factor * recipe.plateau_factor, floor)
                cooldown, wait = recipe.plateau_cooldown, 0
    return factor
