"""Dropout masks as a pure function of (seed, epoch, step, layer): a resumed epoch replays its
masks, and the fast and torch engines drop the very same units.

>>> bool(dropout_keep(0, 0, 0, 0, 2, 3, 0.5).shape == (2, 3))
True
"""

from __future__ import annotations

import numpy as np

# ---- dropout masks ------------------------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
_DROPOUT_STREAM = 7_740_291  # keeps dropout's stream apart from init and shuffling


def mix64(z):
    """splitmix64's finalizer on uint64 (arrays in NumPy, scalars in numba: the same bits)."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


def _mix_int(z: int) -> int:
    return int(mix64(np.array([z % 2**64], np.uint64))[0])


def dropout_keys(seed: int, epoch: int, steps: int, n_hidden: int) -> np.ndarray:
    """uint64 key of each (step, hidden layer) of an epoch: (steps, n_hidden).

    A function of (seed, epoch, step, layer) only, so a resumed epoch replays its masks and the
    torch engine takes the very same ones.
    """
    base = _mix_int(_mix_int(seed + _DROPOUT_STREAM) ^ epoch)
    k = np.arange(steps, dtype=np.uint64)
    layer = np.arange(n_hidden, dtype=np.uint64)
    with np.errstate(over="ignore"):
        step_keys = mix64(np.uint64(base) ^ (k * _GOLDEN))
        return mix64(step_keys[:, None] ^ ((layer[None, :] + np.uint64(1)) * _MIX1))


def dropout_threshold(rate: float) -> int:
    """A unit is kept when the top 24 bits of its hash are >= this (P(keep) = 1 - rate)."""
    return int(round(rate * (1 << 24)))


def keep_mask(key, rows: int, width: int, rate: float) -> np.ndarray:
    """Boolean keep-mask (rows, width) of one layer and step from its key (``dropout_keys``):
    element j (row-major) is kept when ``mix64(key + (j+1)*golden) >> 40 >= threshold``."""
    j = np.arange(1, rows * width + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = mix64(np.uint64(key) + j * _GOLDEN)
    return ((h >> _S40) >= np.uint64(dropout_threshold(rate))).reshape(rows, width)


def dropout_keep(
    seed: int, epoch: int, step: int, layer: int, rows: int, width: int, rate: float
) -> np.ndarray:
    """The keep-mask of hidden layer ``layer`` at ``step`` of ``epoch`` (rows of that batch)."""
    key = dropout_keys(seed, epoch, step + 1, layer + 1)[step, layer]
    return keep_mask(key, rows, width, rate)
