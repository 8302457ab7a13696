"""Training engines: one object per run that owns the parameters and the optimizer state.

Two engines implement the same maths, written once in ``engines/spec.py`` (float64 NumPy, Keras
3's semantics) and tested equal to it:

* ``fast`` (engines/fast.py): NumPy (+ numba), hand-derived forward/backward, no torch
  import; every MLP recipe, and every CNN recipe where numba is installed, on the CPU.
* ``reference`` (engines/reference.py): torch autograd, every recipe (MLP and CNN), CUDA.

``make_engine`` picks one: ``engine="auto"`` takes ``fast`` when it supports the recipe and no
CUDA device is present, otherwise ``reference``; ``engine="fast"`` on a recipe it cannot run is
an error naming the reason (never a silent fallback). Nothing here imports torch: checking for
CUDA imports it only when a GPU could actually be present.

What every engine provides is the ``Engine`` protocol of ``engines/protocol.py`` (with the shared
state, workspace, constants and dropout masks); ``engines/device.py`` chooses the device.

>>> from mnistlab.recipe import Recipe
>>> from mnistlab.engines.init import init_weights
>>> r = Recipe(engine="reference")
>>> make_engine(r, init_weights(r), device="cpu").name
'reference'
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import numpy as np

from mnistlab.engines.device import cuda_present, select_device  # noqa: F401
from mnistlab.engines.protocol import Engine
from mnistlab.errors import RecipeError
from mnistlab.recipe import Recipe


def _fast_module() -> Any | None:
    """engines.fast if it is part of this installation, else None (a broken one raises)."""
    if importlib.util.find_spec("mnistlab.engines.fast") is None:
        return None
    return importlib.import_module("mnistlab.engines.fast")


def choose_engine(recipe: Recipe, device: str | None = None) -> tuple[str, str]:
    """(engine name, why) for ``recipe``; raises RecipeError when ``engine="fast"`` cannot run it.

    >>> choose_engine(Recipe(engine="reference"))
    ('reference', 'asked for in the recipe')
    """
    if recipe.engine == "reference":
        return "reference", "asked for in the recipe"
    fast = _fast_module()
    reason = "the fast engine is not installed" if fast is None else fast.unsupported(recipe)
    if reason is None and device not in (None, "cpu"):
        reason = f"it runs on the CPU only (device {device!r} was asked for)"
    if recipe.engine == "fast":
        if reason is not None:
            raise RecipeError(
                f"recipe field 'engine': 'fast' cannot train this recipe: {reason}; "
                "use engine 'reference' or 'auto'"
            )
        return "fast", "asked for in the recipe"
    if reason is not None:
        return "reference", f"auto: fast engine not used ({reason})"
    if device is None and cuda_present():
        return "reference", "auto: a CUDA device is present"
    return "fast", "auto: fast engine supports this recipe on the CPU"


def make_engine(
    recipe: Recipe, weights: dict[str, np.ndarray], device: str | None = None
) -> Engine:
    """An engine for ``recipe`` starting from ``weights``; its ``reason`` says why it was picked."""
    name, why = choose_engine(recipe, device)
    if name == "fast":
        engine = _fast_module().FastEngine(recipe, weights)
    else:
        from mnistlab.engines.reference import ReferenceEngine

        engine = ReferenceEngine(recipe, weights, device=device)
    engine.reason = why
    return engine


def predictor(recipe: Recipe, weights: dict[str, np.ndarray], logits: bool = False):
    """A function float32 (N, 784) normalized inputs -> (N, classes) float32 probabilities
    (``logits=True``: the logits the probabilities are the softmax of).

    NumPy when the fast engine covers the recipe at inference, MLP or CNN (no torch and no
    numba import: ~2 s saved), else the torch model of the reference engine.

    >>> from mnistlab.engines.init import init_weights
    >>> r = Recipe(hidden=[8])
    >>> predictor(r, init_weights(r))(np.zeros((2, 784), np.float32)).shape
    (2, 10)
    """
    fast = _fast_module()
    if fast is not None and fast.FastEngine.unsupported(recipe, inference=True) is None:
        forward = fast.predict_logits if logits else fast.predict_proba
        return lambda x: forward(recipe, weights, x)
    from mnistlab.engines.reference import ReferenceEngine

    engine = ReferenceEngine(recipe, weights)
    return engine.predict_logits if logits else engine.predict_proba
