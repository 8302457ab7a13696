"""Initial weights as NumPy arrays, Keras' defaults, deterministic from the recipe's seed.

Both engines start from these arrays, so the fast and reference engines (and Keras, which uses
the same Glorot-uniform rule) are compared from the same starting point. The names, shapes and
initial value rules are the network walk's (``mnistlab.engines.arch``): Glorot-uniform kernels,
zero biases, identity batch norm; kernels are drawn from one stream in layer order.

>>> from mnistlab.recipe import Recipe
>>> w = init_weights(Recipe(seed=0))
>>> [(k, v.shape) for k, v in w.items()][:2]
[('dense_0.kernel', (784, 128)), ('dense_0.bias', (128,))]
>>> bool((init_weights(Recipe(seed=0))["dense_3.kernel"] == w["dense_3.kernel"]).all())
True
"""

from __future__ import annotations

import numpy as np

from mnistlab.engines.arch import SIDE, Weight, network
from mnistlab.recipe import Recipe

_INIT_STREAM = 20_251_129  # keeps init's random stream apart from shuffling's (seed, epoch)
_CONSTANT = {"zeros": 0.0, "ones": 1.0}


def glorot_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int
) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def _initial(rng: np.random.Generator, w: Weight) -> np.ndarray:
    if w.init == "glorot_uniform":
        return glorot_uniform(rng, w.shape, *w.fans)
    return np.full(w.shape, _CONSTANT[w.init], np.float32)


def init_weights(recipe: Recipe, n_classes: int = 10, side: int = SIDE) -> dict[str, np.ndarray]:
    """Fresh Keras-named weights for ``recipe``: every weight of its network walk, in order."""
    rng = np.random.default_rng([recipe.seed, _INIT_STREAM])
    return {w.name: _initial(rng, w) for w in network(recipe, n_classes, side).weights}
