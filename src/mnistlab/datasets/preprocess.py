"""The validation split and input scaling: the statistics a run learns from its training
part, and how images use them.

The notebook's lesson is that raw pixels (0..255) stall training while standardized ones train;
a run stores ``(mean, std)`` in pixel units in its model file, so every later step (evaluate,
predict, resume) scales its inputs exactly as training did.

>>> import numpy as np
>>> x = np.array([[[0, 255]]], dtype=np.uint8)
>>> normalization_stats(x, "standardize")
(127.5, 127.5)
>>> preprocess(x, 127.5, 127.5).tolist()
[[-1.0, 1.0]]
"""

from __future__ import annotations

import math

import numpy as np

from mnistlab.errors import RecipeError
from mnistlab.recipe import NORMALIZE as MODES


def normalization_stats(x_train: np.ndarray, mode: str) -> tuple[float, float]:
    """(mean, std) in pixel units so that ``(x - mean) / std`` is the recipe's scaling.

    standardize: one global mean/std of the training part (a 256-bin histogram: exact and
    without a float copy of the images); scale: 0, 255; none: 0, 1.
    """
    if mode == "scale":
        return 0.0, 255.0
    if mode == "none":
        return 0.0, 1.0
    if mode != "standardize":
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    # bincount widens its input to int64: in 1 MiB chunks that is 8 MiB at a time, not 376 MiB
    # for full MNIST (and faster, as the chunks stay in cache).
    flat = np.asarray(x_train, dtype=np.uint8).reshape(-1)
    chunk = 1 << 20
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, flat.size, chunk):
        counts += np.bincount(flat[start : start + chunk], minlength=256)
    values = np.arange(256, dtype=np.float64)
    n = counts.sum()
    mean = float(counts @ values / n)
    std = float(np.sqrt(counts @ (values - mean) ** 2 / n))
    return mean, std


def preprocess(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 images (N, 28, 28) -> float32 (N, 784), C-contiguous, ``(x - mean) / std``."""
    x = np.asarray(x)
    # explicit width: reshape(n, -1) is ambiguous for an empty array (no validation part)
    out = x.reshape(len(x), int(np.prod(x.shape[1:], dtype=np.int64))).astype(np.float32)
    out -= np.float32(mean)
    out /= np.float32(std)
    return out


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float):
    """(x_train, y_train, x_val, y_val): the LAST ``fraction`` is validation, as in Keras.

    >>> xt, yt, xv, yv = split_validation(np.arange(10), np.arange(10), 0.3)
    >>> xv.tolist()
    [7, 8, 9]
    """
    if fraction <= 0:
        return x, y, x[:0], y[:0]
    split_at = int(math.floor(len(x) * (1.0 - fraction)))  # Keras' own rounding (2 and 3)
    if split_at == 0:
        raise RecipeError(
            f"recipe field 'validation_split': {fraction} of {len(x)} training "
            "images leaves none to train on; use a smaller split or more data"
        )
    return x[:split_at], y[:split_at], x[split_at:], y[split_at:]
