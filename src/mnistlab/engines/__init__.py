"""Training engines: one object per run that owns the parameters and the optimizer state.

Two engines implement the same maths (Keras' semantics, below) and are tested equal:

* ``fast`` (engines/fast.py): NumPy, hand-derived MLP forward/backward, no torch import; the
  CPU default for the recipes it supports.
* ``reference`` (engines/reference.py): torch autograd, every recipe (MLP with dropout, batch
  norm, L2; CNN), CUDA when present.

``make_engine`` picks one: ``engine="auto"`` takes ``fast`` when it supports the recipe and no
CUDA device is present, otherwise ``reference``; ``engine="fast"`` on a recipe it cannot run is
an error naming the reason (never a silent fallback). Nothing here imports torch: checking for
CUDA imports it only when a GPU could actually be present.

The protocol every engine follows::

    class Engine:
        name: str                          # "fast" or "reference"
        device: str                        # "cpu", "cuda", ...
        def __init__(self, recipe, weights: dict[str, np.ndarray], device: str | None = None)
        def train_epoch(self, x, y, order, lrs, epoch, on_progress=None) -> (loss, accuracy)
            # x float32 (N, 784) normalized, C-contiguous; y int64 (N,); order int64 (N,) this
            # epoch's permutation; lrs float64 (steps,) from schedules.learning_rates. Batch k is
            # x[order[k*bs:(k+1)*bs]] (the last, smaller batch is a step too). Returns the mean
            # over samples of the batch losses (cross-entropy + L2 penalty, as Keras reports) and
            # the accuracy. on_progress(batches_done, running_loss, running_acc) <= ~20 times.
            # Dropout masks derive from (recipe.seed, epoch) only: a resumed epoch replays.
        def evaluate(self, x, y) -> (loss, accuracy)   # inference mode, large batches
        def predict_proba(self, x) -> np.ndarray      # (N, 10) float32 softmax
        def weights(self) -> dict[str, np.ndarray]    # Keras names/layouts (initializers.py)
        def state(self) -> dict[str, np.ndarray]      # weights + "opt.<slot>.<weight name>"
                                                      # + "opt.iterations" (int64, shape ())
        def load_state(self, state) -> None

Keras semantics (both engines; float32; ``lr`` is this step's entry of ``lrs``; ``t`` =
opt.iterations + 1 after the increment; every trainable weight incl. biases and BN gamma/beta):

* loss: categorical cross-entropy of softmax(logits), computed from logits; label smoothing
  ``y*(1-ls) + ls/10``; plus ``l2 * sum(kernel**2)`` for every Dense kernel (also in evaluate).
* sgd (slot ``momentum``): ``v = momentum*v - lr*g``; nesterov: ``w += momentum*v - lr*g``,
  else ``w += v``.
* adam (slots ``m``, ``v``; beta1 0.9, beta2 0.999, eps 1e-7): ``m += (g-m)*(1-b1)``,
  ``v += (g*g-v)*(1-b2)``, ``w -= lr*sqrt(1-b2**t)/(1-b1**t) * m / (sqrt(v)+eps)``.
* adamw: first ``w -= w * weight_decay * lr``, then adam.
* rmsprop (slot ``velocity``, plus ``momentum`` when momentum > 0; rho 0.9, eps 1e-7):
  ``vel = rho*vel + (1-rho)*g*g``; ``inc = lr*g/sqrt(vel+eps)``; momentum > 0:
  ``mom = momentum*mom + inc; w -= mom``, else ``w -= inc``.
* adagrad (slot ``accumulator``, starts at 0.1; eps 1e-7): ``acc += g*g``;
  ``w -= lr*g/sqrt(acc+eps)``.
* batch norm (Keras defaults): biased batch variance, eps 1e-3,
  ``moving = 0.99*moving + 0.01*batch_stat``.

>>> from mnistlab.recipe import Recipe
>>> from mnistlab.initializers import init_weights
>>> r = Recipe(engine="reference")
>>> make_engine(r, init_weights(r), device="cpu").name
'reference'
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import RecipeError
from mnistlab.recipe import Recipe

ENGINE_NAMES = ("fast", "reference")

# Keras' optimizer constants, and the optimizer-state slots both engines keep under the same
# names (so a run's state moves between them): one definition for both.
ADAM_BETA1, ADAM_BETA2, EPSILON = 0.9, 0.999, 1e-7
RMSPROP_RHO, ADAGRAD_INITIAL = 0.9, 0.1
SLOTS = {"sgd": ("momentum",), "adam": ("m", "v"), "adamw": ("m", "v"),
         "rmsprop": ("velocity", "momentum"), "adagrad": ("accumulator",)}


def optimizer_slots(recipe: Recipe) -> tuple[list[str], float]:
    """(slot names, initial value) of the recipe's optimizer state.

    >>> optimizer_slots(Recipe(optimizer="rmsprop", momentum=0.0))
    (['velocity'], 0.0)
    """
    recipe = recipe.resolved()
    names = [s for s in SLOTS[recipe.optimizer]   # rmsprop keeps momentum only when > 0
             if not (recipe.optimizer == "rmsprop" and s == "momentum" and recipe.momentum == 0)]
    return names, (ADAGRAD_INITIAL if recipe.optimizer == "adagrad" else 0.0)


def cuda_present() -> bool:
    """True when torch would find a CUDA device; imports torch only if one could exist.

    A CPU-only torch build (version ``+cpu``) or a machine without NVIDIA device nodes cannot
    have one, and answering that without ``import torch`` keeps the fast path ~2 s quicker.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if "torch" not in sys.modules:
        try:
            version = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            return False
        if "+cpu" in version:
            return False
        if not (Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()):
            return False
    import torch

    return bool(torch.cuda.is_available())


def select_device(device: str | None = None) -> str:
    """The torch device a run uses, chosen once: ``device`` if given, else cuda if present."""
    if device is None:
        return "cuda" if cuda_present() else "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise RecipeError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    if device.startswith("cuda") and not cuda_present():
        raise RecipeError(f"device {device!r} was asked for but torch finds no CUDA device")
    return device


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
    reason = "the fast engine is not installed" if fast is None else fast.FastEngine.unsupported(recipe)
    if reason is None and device not in (None, "cpu"):
        reason = f"it runs on the CPU only (device {device!r} was asked for)"
    if recipe.engine == "fast":
        if reason is not None:
            raise RecipeError(f"recipe field 'engine': 'fast' cannot train this recipe: {reason}; "
                              "use engine 'reference' or 'auto'")
        return "fast", "asked for in the recipe"
    if reason is not None:
        return "reference", f"auto: fast engine not used ({reason})"
    if device is None and cuda_present():
        return "reference", "auto: a CUDA device is present"
    return "fast", "auto: fast engine supports this recipe on the CPU"


def make_engine(recipe: Recipe, weights: dict[str, np.ndarray], device: str | None = None):
    """An engine for ``recipe`` starting from ``weights``; its ``reason`` says why it was picked."""
    name, why = choose_engine(recipe, device)
    if name == "fast":
        engine = _fast_module().FastEngine(recipe, weights)
    else:
        from mnistlab.engines.reference import ReferenceEngine

        engine = ReferenceEngine(recipe, weights, device=device)
    engine.reason = why
    return engine


def predictor(recipe: Recipe, weights: dict[str, np.ndarray]):
    """A function float32 (N, 784) normalized inputs -> (N, classes) float32 probabilities.

    NumPy when the fast engine covers the recipe at inference (no torch import, ~2 s saved),
    else the torch model of the reference engine.

    >>> from mnistlab.initializers import init_weights
    >>> r = Recipe(hidden=[8])
    >>> predictor(r, init_weights(r))(np.zeros((2, 784), np.float32)).shape
    (2, 10)
    """
    fast = _fast_module()
    if fast is not None and fast.FastEngine.unsupported(recipe, inference=True) is None:
        return lambda x: fast.predict_proba(recipe, weights, x)
    from mnistlab.engines.reference import ReferenceEngine

    return ReferenceEngine(recipe, weights).predict_proba
