"""How close a float32 engine's training steps must come to spec.py's float64 ones, derived from
what each optimizer can amplify instead of one absolute number tuned on one CPU.

Two sources of difference, and nothing else, separate a correct float32 engine from spec.py:

1. Its gradients: float32 sums of products, in whatever order the CPU's BLAS kernels take
   (AVX2 and AVX-512 sum in different orders). ``test_gradients_equal_spec`` holds every
   gradient tensor to ``G_REL`` (1e-5) of that tensor's largest entry; measured errors are
   ~1e-6 of it on AMD Zen, so the bound has a 10x margin.
2. Storing each result in float32: a few ulps (2**-24 each) of the value's scale; ``F32_REL``
   (1e-6, ~16 ulps) of the tensor's largest entry, plus the same relative to the entry itself.

Source 1 is then pushed through the optimizer by spec.py itself: ``envelope`` replays the same
steps in float64 with every gradient moved by +/- ``G_REL`` of its tensor's scale, in each
combination of signs over the steps, and takes per entry the largest move of any weight or slot.
That is exactly "the update given the same gradient, up to the gradient's rounding": plain SGD
moves a weight by ``lr * G_REL * max|g|`` (~1e-8 here), while Adam-family and RMSprop divide by
``sqrt(v) + eps``, so an entry whose gradient is itself near the rounding level may move by up
to 2 ``lr`` (a flipped sign) -- which is what an Intel Xeon showed on one weight of 25,088
(2e-5 after two Adam steps), and what spec's own replay says such an entry can do. Entries with
a well-determined gradient keep a tolerance of ~1e-9, so a wrong formula (a missing bias
correction, a wrong epsilon, a wrong learning rate) still fails (``test_envelope_still_catches``).
"""

from __future__ import annotations

import itertools
import types

import numpy as np
import pytest

from mnistlab.engines import spec
from mnistlab.engines.init import init_weights
from mnistlab.engines.masks import dropout_keys, keep_mask
from mnistlab.engines.optim import BN_MOMENTUM, Hyperparameters

# Two float32 engines on one CPU (the fast one against torch) sum in different orders too, so
# the same reasoning bounds how far apart they may end. With plain SGD every entry stays within
# 1e-5 (and 1e-4 of itself). An adaptive optimizer divides each entry's step by its own running
# gradient scale: an entry whose gradient sits at the rounding level in both engines can take
# full steps of different signs in each (spec's envelope shows such entries: up to 2 lr a step).
# Those strays are rare (one in 25,088 on an Intel Xeon after two Adam steps) and a wrong
# formula moves nearly every entry, so up to STRAYS of an array's entries (at least one) may
# stray, each by at most 2 lr per step (``test_engines_agree_still_catches``).
STRAYS = 1e-3
STRICT = {"atol": 1e-5, "rtol": 1e-4}

G_REL = 1e-5  # gradients: float32 vs float64, relative to each tensor's largest entry
F32_REL = 1e-6  # storing and summing in float32: ~16 ulps of the value and of its tensor


def spec_run(r, x, y, lrs, signs=None, epoch=0):
    """spec.py's steps of ``r.batch_size`` over x in order, from init_weights(r), in float64;
    ``signs[k]`` (+1/-1/0) moves step k's gradients by that many ``G_REL`` of each tensor's
    largest entry. Returns (losses, {weights and ``opt.<slot>.<weight>``}, nadam's u_product)."""
    h = Hyperparameters.of(r)
    p = {k: v.astype(np.float64) for k, v in init_weights(r).items()}
    slots = spec.init_slots(p, h)
    bs = r.batch_size
    keys = dropout_keys(h.seed, epoch, len(lrs), len(r.hidden))
    losses = []
    for k, lr in enumerate(lrs):
        xb, yb = x[k * bs : (k + 1) * bs].astype(np.float64), y[k * bs : (k + 1) * bs]
        masks = [keep_mask(keys[k, j], len(xb), w, h.dropout) for j, w in enumerate(r.hidden)]
        loss, g, stats = spec.gradients(p, xb, yb, h, masks if h.dropout else None)
        losses.append(loss)
        for i, (mean, var) in stats.items():
            for name, batch in (("moving_mean", mean), ("moving_variance", var)):
                p[f"bn_{i}.{name}"] = BN_MOMENTUM * p[f"bn_{i}.{name}"] + (1 - BN_MOMENTUM) * batch
        if signs is not None:
            g = {n: v + signs[k] * G_REL * np.abs(v).max() for n, v in g.items()}
        spec.update(p, g, slots, k + 1, float(np.float32(lr)), h)
    flat = dict(p)
    for slot, arrays in slots.items():
        if slot != "u_product":
            flat.update({f"opt.{slot}.{n}": v for n, v in arrays.items()})
    return losses, flat, slots["u_product"]


def envelope(r, x, y, lrs) -> tuple[list, dict, float, dict]:
    """(spec's losses, spec's state, u_product, per-entry tolerance of every state array)."""
    losses, base, u_product = spec_run(r, x, y, lrs)
    moved = {k: np.zeros_like(v) for k, v in base.items()}
    for signs in itertools.product((-1, 1), repeat=len(lrs)):
        _, other, _ = spec_run(r, x, y, lrs, signs)
        for k in moved:
            moved[k] = np.maximum(moved[k], np.abs(other[k] - base[k]))
    tol = {k: moved[k] + F32_REL * (np.abs(v) + np.abs(v).max()) for k, v in base.items()}
    return losses, base, u_product, tol


def assert_within(got: dict, want: dict, tol: dict) -> None:
    """Every array of ``want`` in ``got``, entry by entry within ``tol``; names the worst entry."""
    for k, v in want.items():
        diff = np.abs(np.asarray(got[k], np.float64) - v)
        excess = diff - tol[k]
        if (excess > 0).any():
            i = np.unravel_index(np.argmax(excess), v.shape)
            pytest.fail(
                f"{k}{list(i)}: {float(np.asarray(got[k])[i])!r} vs spec {v[i]!r} "
                f"(diff {diff[i]:.3g} > derived tolerance {tol[k][i]:.3g}); "
                f"{int((excess > 0).sum())} of {v.size} entries outside"
            )


def engines_agree(got: dict, want: dict, recipe, lrs) -> None:
    """Two engines' states (weights, slots, moving statistics) after the steps run at ``lrs``:
    within STRICT entry by entry, but for adaptive optimizers' rare strays (see above)."""
    assert got.keys() == want.keys()
    reach = 2 * float(np.sum(lrs))  # the most steps of 2 lr each can move an entry
    for k, v in want.items():
        a, b = np.asarray(got[k], np.float64), np.asarray(v, np.float64)
        diff = np.abs(a - b)
        off = diff > STRICT["atol"] + STRICT["rtol"] * np.abs(b)
        trained = recipe.optimizer != "sgd" and ".moving_" not in k  # moving stats: no optimizer
        allowed = max(1, int(STRAYS * b.size)) if trained else 0
        if off.sum() > allowed or (diff[off] > reach).any():
            i = np.unravel_index(np.argmax(diff), b.shape)
            pytest.fail(
                f"{k}{list(i)}: {a[i]!r} vs {b[i]!r}; {int(off.sum())} of {b.size} entries "
                f"beyond atol {STRICT['atol']} / rtol {STRICT['rtol']} (at most {allowed} may "
                f"stray, by at most {reach:.3g})"
            )


@pytest.fixture
def tolerance():
    """``.envelope(recipe, x, y, lrs)``, ``.assert_within(got, want, tol)``, ``.spec_run``,
    ``.engines_agree(got, want, recipe, lrs)``, ``.G_REL`` (see the module)."""
    return types.SimpleNamespace(
        envelope=envelope,
        assert_within=assert_within,
        spec_run=spec_run,
        engines_agree=engines_agree,
        G_REL=G_REL,
    )
