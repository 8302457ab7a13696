"""Will a recipe fit in this machine? An estimate of peak memory, checked before anything is made.

A recipe such as ``hidden = [100000000]`` or ``batch_size = 10000000`` would otherwise die in a
NumPy MemoryError after the run folder was created. ``check`` estimates the peak from the recipe
and the data sizes alone (nothing is allocated; widths and counts from the network walk,
``mnistlab.engines.arch``) and refuses, in one line saying how much it would
need and how much is available, what cannot fit. The estimate counts, in float32:

* trainable parameters x (weights + gradients + optimizer slots + the checkpoint's serialized
  copy), and batch norm's moving statistics (values + the checkpoint's copy);
* activations of one training step, for ``min(batch_size, n_train)`` rows (the engines never
  need more rows than there are samples), and of one evaluation batch;
* the data: the uint8 images and their float32 standardized copies (train part, validation, test).

It is an upper-bound-leaning estimate, not a promise: the check only refuses what would need more
than is available right now.

>>> from mnistlab.recipe import Recipe
>>> est = estimate(Recipe(), n_train=42000, n_val=18000, n_test=10000)
>>> est.parameters, 100 < est.total / 2**20 < 600   # 784-128-128-128-10, in MiB
(134794, True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mnistlab.engines.arch import network
from mnistlab.engines.optim import optimizer_slots
from mnistlab.errors import RecipeError
from mnistlab.recipe import Recipe
from mnistlab.training import augment

FLOAT = 4  # bytes of a float32
EVAL_ROWS = 10_000  # the largest evaluation batch of the engines (fast: 10,000, reference: 8,192)


@dataclass(frozen=True)
class Estimate:
    parameters: int  # trainable parameters (count)
    weights: int  # bytes: weights, gradients, optimizer slots, moving statistics, checkpoint copy
    activations: int  # bytes: one training step plus one evaluation batch
    data: int  # bytes: uint8 images plus their float32 copies

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.data


def estimate(
    recipe: Recipe, n_train: int, n_val: int, n_test: int, n_classes: int = 10
) -> Estimate:
    """Peak bytes a run of ``recipe`` on data of these sizes would need (see the module doc)."""

    net = network(recipe, n_classes)
    slots = len(optimizer_slots(recipe)[0])
    # trainable: weights, gradients, slots, then the checkpoint's copy of weights and slots;
    # batch norm's moving statistics: their values and the checkpoint's copy
    weights = (net.trainable_count * (2 + slots + 1 + slots) + net.moving_count * 2) * FLOAT
    # A step keeps each conv, pool and dense output's pre-activation, activation and gradient
    # (3x), dropout masks aside.
    widths = [layer.width for layer in net.layers if layer.kind in ("conv", "max_pool", "dense")]
    rows = max(1, min(recipe.batch_size, n_train))
    train_step = rows * (net.n_inputs + 3 * sum(widths)) * FLOAT
    eval_rows = max(1, min(EVAL_ROWS, max(n_val, n_test)))
    eval_step = eval_rows * (net.n_inputs + 2 * max(widths)) * FLOAT
    n_all = n_train + n_val + n_test
    data = n_all * net.n_inputs * (1 + FLOAT)  # uint8 images, float32 copies
    if augment.active(recipe):  # each epoch's redrawn training images are one more copy
        data += n_train * net.n_inputs * FLOAT
    return Estimate(net.trainable_count, weights, train_step + eval_step, data)


def available() -> int | None:
    """Bytes of memory this process can still get: the smaller of what the machine has
    available and what its cgroup (container) limit leaves; None when neither is known."""
    found: list[int] = []
    try:
        import psutil

        found.append(int(psutil.virtual_memory().available))
    except ImportError:
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
        except (OSError, ValueError, IndexError):
            pass
    try:  # cgroup v2: a container's limit is often far below the machine's memory
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            pass
    return min(found) if found else None


def size(n: float) -> str:
    """Bytes in binary units: ``size(3 * 2**30)`` -> '3.0 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def check(
    recipe: Recipe,
    n_train: int,
    n_val: int,
    n_test: int,
    n_classes: int = 10,
    *,
    new_run: bool = True,
    free: int | None = None,
) -> Estimate:
    """Raise RecipeError when the run cannot fit (memory) or would oversubscribe the CPUs.

    ``free``: bytes available (default: ``available()``). The thread count is held to
    ``os.cpu_count()`` only for a new run: a resumed one continues as recorded.
    """
    cpus = os.cpu_count() or 1
    if new_run and recipe.threads is not None and recipe.threads > cpus:
        raise RecipeError(
            f"recipe field 'threads': {recipe.threads} threads but this machine has "
            f"{cpus} CPUs; more threads than CPUs only wait for each other, use at "
            f"most {cpus} (or leave it unset)"
        )
    est = estimate(recipe, n_train, n_val, n_test, n_classes)
    free = available() if free is None else free
    if free is not None and est.total > free:
        layers = "'hidden'" + (" or 'conv_channels'" if recipe.kind == "cnn" else "")
        parts = {
            f"the weights and optimizer state (reduce {layers})": est.weights,
            f"the activations (reduce {layers} or 'batch_size')": est.activations,
            "the data (use a smaller dataset)": est.data,
        }
        biggest = max(parts, key=parts.get)
        raise RecipeError(
            f"recipe {recipe.name!r} needs about {size(est.total)} of memory "
            f"({est.parameters:,} trainable parameters; most of it for {biggest}), but "
            f"{size(free)} is available"
        )
    return est
