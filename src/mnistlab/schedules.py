"""Learning rate of every optimizer step, computed up front as one array per epoch.

Engines take the array instead of a schedule object so the hot loop does one indexed read per
step, and so both engines see bit-identical rates.

The notebook's ``SGD(lr=0.01, decay=1e-6)`` is Keras' legacy inverse-time decay, applied per
step with the step counter ``t`` starting at 0: ``lr_t = lr / (1 + decay * t)``. Schedules
(``step``, ``cosine``, ``onecycle``) and warm-up multiply that.

>>> from mnistlab.recipe import Recipe
>>> lrs = learning_rates(Recipe(), epoch=1, steps=1313)
>>> round(float(lrs[0]), 8) == round(0.01 / (1 + 1e-6 * 1313), 8)
True
"""

from __future__ import annotations

import math

import numpy as np

from mnistlab.recipe import Recipe


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Optimizer steps in one epoch; the last, smaller batch is a real step (as in Keras)."""
    return math.ceil(n_samples / batch_size)


def learning_rates(recipe: Recipe, epoch: int, steps: int) -> np.ndarray:
    """float64 array of the ``steps`` learning rates of epoch ``epoch`` (0-based)."""
    t = np.arange(epoch * steps, (epoch + 1) * steps, dtype=np.float64)
    total = float(recipe.epochs * steps)
    factor = np.ones_like(t)
    if recipe.schedule == "step":
        factor *= recipe.gamma ** (epoch // recipe.step_size)
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
