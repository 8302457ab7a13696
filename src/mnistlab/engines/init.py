"""Initial weights as NumPy arrays, Keras' defaults, deterministic from the recipe's seed.

Both engines start from these arrays, so the fast and reference engines (and Keras, which uses
the same Glorot-uniform rule) are compared from the same starting point.

Names and layouts follow Keras: a Dense kernel is (fan_in, fan_out); a conv kernel is HWIO
(kh, kw, in, out). A CNN's flatten is in Keras' (h, w, c) order. With batch_norm, each hidden
Dense is followed by ``bn_{i}`` (gamma, beta, moving_mean, moving_variance) before its activation.

>>> from mnistlab.recipe import Recipe
>>> w = init_weights(Recipe(seed=0))
>>> [(k, v.shape) for k, v in w.items()][:2]
[('dense_0.kernel', (784, 128)), ('dense_0.bias', (128,))]
>>> bool((init_weights(Recipe(seed=0))["dense_3.kernel"] == w["dense_3.kernel"]).all())
True
"""

from __future__ import annotations

import numpy as np

from mnistlab.recipe import Recipe

_INIT_STREAM = 20_251_129  # keeps init's random stream apart from shuffling's (seed, epoch)


def glorot_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int
) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def flat_features(recipe: Recipe, image_side: int = 28) -> int:
    """Width of the vector the first Dense layer sees."""
    if recipe.kind == "mlp":
        return image_side * image_side
    side = image_side
    for _ in recipe.conv_channels:  # 'same' conv keeps the side, 2x2 max-pool halves it
        side //= 2
    return side * side * recipe.conv_channels[-1]


def init_weights(recipe: Recipe, n_inputs: int = 784, n_classes: int = 10) -> dict[str, np.ndarray]:
    """Fresh weights for ``recipe``: Glorot-uniform kernels, zero biases, identity batch norm."""
    rng = np.random.default_rng([recipe.seed, _INIT_STREAM])
    weights: dict[str, np.ndarray] = {}
    if recipe.kind == "cnn":
        k, c_in = recipe.kernel_size, 1
        for j, c_out in enumerate(recipe.conv_channels):
            weights[f"conv_{j}.kernel"] = glorot_uniform(
                rng, (k, k, c_in, c_out), k * k * c_in, k * k * c_out
            )
            weights[f"conv_{j}.bias"] = np.zeros(c_out, np.float32)
            c_in = c_out
        width = flat_features(recipe, int(round(np.sqrt(n_inputs))))
    else:
        width = n_inputs
    sizes = [*recipe.hidden, n_classes]
    for i, out in enumerate(sizes):
        weights[f"dense_{i}.kernel"] = glorot_uniform(rng, (width, out), width, out)
        weights[f"dense_{i}.bias"] = np.zeros(out, np.float32)
        if recipe.batch_norm and i < len(recipe.hidden):
            weights[f"bn_{i}.gamma"] = np.ones(out, np.float32)
            weights[f"bn_{i}.beta"] = np.zeros(out, np.float32)
            weights[f"bn_{i}.moving_mean"] = np.zeros(out, np.float32)
            weights[f"bn_{i}.moving_variance"] = np.ones(out, np.float32)
        width = out
    return weights
