"""The fast engine: a hand-derived MLP forward/backward in NumPy, no torch, no allocation per step.

Same maths as the reference engine (Keras' formulas, listed in ``mnistlab.engines``) and tested
equal to it; only the arithmetic's order differs (float32 rounding). Where the time goes at the
notebook's shapes (batch 32, 784-128-128-128-10) and what this file does about it:

* The 11 matrix products of a step are the floor. They go straight to OpenBLAS sgemm through
  ``np.matmul(..., out=buffer)``; transposed operands are views, never copies. The thread
  count is set deliberately (see ``default_threads``).
* ``backend="numpy"`` (engines/fast_numpy.py): everything else is per-call overhead on small
  arrays, so every activation, gradient and temporary lives in a buffer allocated once, the
  batch is gathered with ``np.take(..., out=...)``, and the optimizer works in place. Still
  ~60 NumPy calls a step: measured ~2x the numba backend per epoch.
* ``backend="numba"`` (engines/fast_numba.py): a whole chunk of steps inside one compiled
  function, the same sgemm calls (NumPy's own OpenBLAS, through ctypes) with the elementwise
  work fused into single loops; measured within ~1.2x of the products alone. The default for
  small batches when numba is installed (``default_backend``; ``self.backend`` says which
  ran); tested equal to the numpy backend.

Not supported (the reference engine runs them; ``FastEngine.unsupported`` says which): CNNs,
batch norm, dropout (its masks come from torch's generator), gelu.

>>> from mnistlab.recipe import Recipe
>>> from mnistlab.initializers import init_weights
>>> r = Recipe(hidden=[16], batch_size=4)
>>> eng = FastEngine(r, init_weights(r), backend="numpy")
>>> x = np.zeros((8, 784), np.float32); y = np.arange(8) % 10
>>> loss, acc = eng.train_epoch(x, y, np.arange(8), np.zeros(2), epoch=0)   # lr 0
>>> round(loss, 4)   # all-zero inputs and zero biases: uniform softmax, loss ln(10)
2.3026
>>> predict_proba(r, eng.weights(), x).shape
(8, 10)
"""

from __future__ import annotations

import contextlib
import importlib.util
from typing import Callable

import numpy as np

from mnistlab.engines import (ADAGRAD_INITIAL, ADAM_BETA1, ADAM_BETA2, EPSILON,  # noqa: F401
                              RMSPROP_RHO, SLOTS, optimizer_slots)
from mnistlab.errors import RecipeError, RunError

EVAL_BATCH = 10_000       # big products run near sgemm's peak; 10k x 784 float32 is 31 MB
ACTIVATIONS = ("relu", "tanh", "sigmoid")
_ZERO, _HALF, _ONE = np.float32(0), np.float32(0.5), np.float32(1)


def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


NUMBA_MAX_BATCH = 32


def default_backend(recipe) -> str:
    """``"numba"`` for batches of at most ``NUMBA_MAX_BATCH`` when numba is installed, else numpy.

    Measured on 2 cores (bench/engine_steps.py and the fast-mlp preset): at batch 32 the numpy
    backend spends ~0.5 s per MNIST epoch on per-call overhead, which numba removes, for a
    one-off ~1-1.5 s per process (importing numba and scipy's BLAS, loading the compiled code);
    at batch 128 the steps are 4x fewer and 4x larger and numba saved nothing per epoch, so
    the start-up cost would only be a loss.
    """
    if recipe.batch_size <= NUMBA_MAX_BATCH and numba_available():
        return "numba"
    return "numpy"


def default_threads() -> int:
    """BLAS threads when the recipe leaves ``threads`` unset: 1.

    Measured (bench/engine_steps.py, 2 shared cores): batch-32 products take 17-90 us each, too
    small to split; with 2 OpenBLAS threads an epoch took 3-12x longer (workers spin and wait
    for a core another process holds), with 1 thread it is steady. ``recipe.threads = 2`` is
    there for a quiet machine (the bench prints both).
    """
    return 1


def _activate(name: str, z: np.ndarray) -> None:
    """Hidden activation in place (the backward pass needs only its output)."""
    if name == "relu":
        np.maximum(z, _ZERO, out=z)
    elif name == "tanh":
        np.tanh(z, out=z)
    else:  # sigmoid as 0.5 + 0.5*tanh(z/2): same function, no exp overflow for large -z
        z *= _HALF
        np.tanh(z, out=z)
        z *= _HALF
        z += _HALF


def _activation_grad(name: str, d: np.ndarray, a: np.ndarray, tmp: np.ndarray) -> None:
    """d *= activation'(z), written with the activation's output ``a``."""
    if name == "relu":     # zero where a <= 0, as torch's relu backward (keeps it NaN-exact)
        np.copyto(d, _ZERO, where=a <= _ZERO)
    elif name == "tanh":   # 1 - a^2
        np.multiply(a, a, out=tmp)
        np.subtract(_ONE, tmp, out=tmp)
        d *= tmp
    else:                  # a (1 - a)
        np.subtract(_ONE, a, out=tmp)
        tmp *= a
        d *= tmp


def _forward(activation: str, kernels, biases, x: np.ndarray) -> np.ndarray:
    """Logits of ``x`` (allocating; for evaluation and prediction)."""
    h = x
    for i, (w, b) in enumerate(zip(kernels, biases)):
        h = np.matmul(h, w)
        h += b
        if i < len(kernels) - 1:
            _activate(activation, h)
    return h


def _log_softmax_(z: np.ndarray) -> np.ndarray:
    """Stable log-softmax of logits, in place; returns z."""
    z -= z.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


def _cross_entropy_sum(logp: np.ndarray, y: np.ndarray, label_smoothing: float) -> float:
    """Sum over samples of the (label-smoothed) cross-entropy, from log-probabilities."""
    picked = np.take_along_axis(logp, y[:, None], axis=1)[:, 0]
    total = -float(picked.sum(dtype=np.float64))
    if label_smoothing:
        spread = -float(logp.sum(dtype=np.float64)) / logp.shape[1]
        total = (1 - label_smoothing) * total + label_smoothing * spread
    return total


def _split(weights: dict[str, np.ndarray], n_layers: int):
    def get(name: str) -> list[np.ndarray]:
        return [np.ascontiguousarray(weights[f"dense_{i}.{name}"], np.float32)
                for i in range(n_layers)]

    kernels, biases = get("kernel"), get("bias")
    return kernels, biases


def _probabilities(activation: str, kernels, biases, x: np.ndarray, batch_size: int) -> np.ndarray:
    out = np.empty((len(x), kernels[-1].shape[1]), np.float32)
    for s in range(0, len(x), batch_size):
        z = _forward(activation, kernels, biases, np.asarray(x[s:s + batch_size], np.float32))
        z -= z.max(axis=1, keepdims=True)      # stable: the largest exponent is 0
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        out[s:s + len(z)] = z
    return out


def predict_proba(recipe, weights: dict[str, np.ndarray], x: np.ndarray,
                  batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Softmax probabilities (N, n_classes) float32 of an MLP recipe's weights; torch-free.

    >>> from mnistlab.recipe import Recipe
    >>> from mnistlab.initializers import init_weights
    >>> r = Recipe(hidden=[8])
    >>> p = predict_proba(r, init_weights(r), np.ones((3, 784), np.float32))
    >>> p.shape, bool(np.allclose(p.sum(1), 1))
    ((3, 10), True)
    """
    reason = FastEngine.unsupported(recipe, inference=True)
    if reason is not None:
        raise RecipeError(f"fast predict_proba cannot run this recipe: {reason}")
    kernels, biases = _split(weights, len(recipe.hidden) + 1)
    x = np.asarray(x).reshape(len(x), -1)
    return _probabilities(recipe.activation, kernels, biases, x, batch_size)


class FastEngine:
    """NumPy(+numba) MLP engine; see the module docstring and ``mnistlab.engines``."""

    name = "fast"
    device = "cpu"

    @staticmethod
    def unsupported(recipe, inference: bool = False) -> str | None:
        """Why this engine cannot run ``recipe`` (one line), or None when it can."""
        if recipe.kind != "mlp":
            return f"kind {recipe.kind!r} (it runs kind 'mlp' only)"
        if recipe.batch_norm:
            return "batch_norm (it has no batch-norm layers)"
        if recipe.activation not in ACTIVATIONS:
            return (f"activation {recipe.activation!r} (it runs " + ", ".join(ACTIVATIONS) + ")")
        if inference:
            return None   # dropout and the optimizer do not matter for prediction
        if recipe.dropout > 0:
            return ("dropout > 0 (the reference engine draws dropout masks from torch's "
                    "generator; the fast engine could not match them)")
        if recipe.optimizer not in SLOTS:
            return f"optimizer {recipe.optimizer!r} (it runs " + ", ".join(SLOTS) + ")"
        return None

    def __init__(self, recipe, weights: dict[str, np.ndarray], device: str | None = None,
                 backend: str | None = None, numpy_blas: bool = True):
        reason = self.unsupported(recipe)
        if reason is not None:
            raise RecipeError(f"the fast engine cannot train this recipe: {reason}")
        if device not in (None, "cpu"):
            raise RecipeError(f"the fast engine runs on the CPU only, not {device!r}")
        if backend is None:   # both are tested equal to the reference; self.backend records it
            backend = default_backend(recipe)
        if backend not in ("numpy", "numba"):
            raise ValueError(f"backend {backend!r}: expected 'numpy' or 'numba'")
        if backend == "numba" and not numba_available():
            raise RecipeError("the fast engine's numba backend needs numba installed")
        self.backend = backend
        if backend == "numba":   # loads numba and its BLAS now, outside any thread limit
            from mnistlab.engines import fast_numba  # noqa: F401
        # numba backend: products through NumPy's OpenBLAS (fast_numba.NUMPY_SGEMM) when found
        self.numpy_blas = numpy_blas
        self.recipe = recipe = recipe.resolved()  # per-optimizer defaults filled in
        self.threads = recipe.threads if recipe.threads is not None else default_threads()
        self.n_layers = len(recipe.hidden) + 1
        self.names = [f"dense_{i}.{p}" for i in range(self.n_layers) for p in ("kernel", "bias")]
        self.params = [np.zeros(1, np.float32)] * len(self.names)
        self._load_params(weights)
        slots, fill = optimizer_slots(recipe)
        self.slots = {s: [np.full_like(p, fill) for p in self.params] for s in slots}
        self.iterations = 0
        self._buffers: dict | None = None

    # ---- parameters and state ----------------------------------------------------------
    def _load_params(self, weights: dict[str, np.ndarray]) -> None:
        sizes = [784, *self.recipe.hidden, 10]
        expected = {f"dense_{i}.kernel": (sizes[i], sizes[i + 1]) for i in range(self.n_layers)}
        expected.update({f"dense_{i}.bias": (sizes[i + 1],) for i in range(self.n_layers)})
        names = {k for k in weights if not k.startswith("opt.")}
        if names != set(expected):
            raise RunError(f"weights do not fit the recipe's network: missing "
                           f"{sorted(set(expected) - names)}, "
                           f"unexpected {sorted(names - set(expected))}")
        for j, name in enumerate(self.names):
            value = np.asarray(weights[name])
            if value.shape != expected[name]:
                raise RunError(f"weight {name!r}: shape {value.shape}, expected {expected[name]}")
            # own C-contiguous float32 copies: updated in place, never aliasing the caller's
            self.params[j] = np.array(value, dtype=np.float32, order="C", copy=True)

    @property
    def kernels(self) -> list[np.ndarray]:
        return self.params[0::2]

    @property
    def biases(self) -> list[np.ndarray]:
        return self.params[1::2]

    def weights(self) -> dict[str, np.ndarray]:
        return {n: p.copy() for n, p in zip(self.names, self.params)}

    def state(self) -> dict[str, np.ndarray]:
        out = self.weights()
        for slot, arrays in self.slots.items():
            out.update({f"opt.{slot}.{n}": a.copy() for n, a in zip(self.names, arrays)})
        out["opt.iterations"] = np.array(self.iterations, dtype=np.int64)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for slot, arrays in self.slots.items():
            for name, a in zip(self.names, arrays):
                key = f"opt.{slot}.{name}"
                if key not in state:
                    raise RunError(f"optimizer state {key!r} is missing (was the run trained "
                                   f"with another optimizer?)")
                if np.shape(state[key]) != a.shape:
                    raise RunError(f"optimizer state {key!r} has shape {np.shape(state[key])}, "
                                   f"expected {a.shape}")
        if "opt.iterations" not in state:
            raise RunError("optimizer state 'opt.iterations' is missing")
        self._load_params(state)
        for slot, arrays in self.slots.items():
            for name, a in zip(self.names, arrays):
                a[...] = state[f"opt.{slot}.{name}"]
        self.iterations = int(state["opt.iterations"])

    # ---- training ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _thread_limit(self):
        """The chosen BLAS thread count; overflow to inf/NaN stays silent (as in the numba
        backend): a diverging run shows in its loss, which train.py's health check reads."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.threads, user_api="blas"), \
                np.errstate(over="ignore", invalid="ignore"):
            yield

    def train_epoch(self, x: np.ndarray, y: np.ndarray, order: np.ndarray, lrs: np.ndarray,
                    epoch: int, on_progress: Callable[[int, float, float], None] | None = None
                    ) -> tuple[float, float]:
        """One epoch of steps over ``x[order]``; returns (mean loss, accuracy) as Keras reports."""
        x = np.ascontiguousarray(x, dtype=np.float32)   # no copy when already so (the contract)
        y = np.ascontiguousarray(y, dtype=np.int64)
        order = np.ascontiguousarray(order, dtype=np.int64)
        n, bs = len(order), self.recipe.batch_size
        steps = -(-n // bs)
        if len(lrs) != steps:
            raise ValueError(f"{len(lrs)} learning rates for {steps} steps")
        # The compiled backend does not bounds-check: out-of-range indices must stop here.
        if x.ndim != 2 or x.shape[1] != self.kernels[0].shape[0] or len(y) != len(x):
            raise ValueError(f"x {x.shape} / y {y.shape}: expected (N, "
                             f"{self.kernels[0].shape[0]}) and (N,)")
        if n and (order.min() < 0 or order.max() >= len(x)):
            raise ValueError(f"order holds indices outside [0, {len(x)})")
        if len(y) and (y.min() < 0 or y.max() >= self.kernels[-1].shape[1]):
            raise ValueError(f"labels outside [0, {self.kernels[-1].shape[1]})")
        # lr as float32, as the reference engine uses it
        lrs32 = np.asarray(lrs, dtype=np.float32)
        # per-step loss (incl. L2) and correct count, filled by the backend
        losses, correct = np.zeros(steps, np.float64), np.zeros(steps, np.int64)
        every = max(1, steps // 20)
        with self._thread_limit():
            for k0 in range(0, steps, every):
                k1 = min(steps, k0 + every)
                self._run_steps(x, y, order, lrs32, k0, k1, losses, correct)
                if on_progress is not None:
                    seen = min(k1 * bs, n)
                    on_progress(k1, self._weighted(losses, k1, n) * n / seen,
                                int(correct[:k1].sum()) / seen)
        return self._weighted(losses, steps, n), int(correct.sum()) / n

    def _weighted(self, losses: np.ndarray, k: int, n: int) -> float:
        """Mean over samples of batch losses (Keras weighs each batch by its size)."""
        bs = self.recipe.batch_size
        sizes = np.full(k, bs, np.float64)
        sizes[-1] = min(bs, n - (k - 1) * bs)
        return float(losses[:k] @ sizes) / n

    def _run_steps(self, x, y, order, lrs32, k0, k1, losses, correct) -> None:
        if self.backend == "numba":
            from mnistlab.engines import fast_numba

            fast_numba.run_steps(self, x, y, order, lrs32, k0, k1, losses, correct)
        else:
            from mnistlab.engines import fast_numpy

            fast_numpy.run_steps(self, x, y, order, lrs32, k0, k1, losses, correct)

    def l2_penalty(self) -> float:
        """sum(kernel**2) over the Dense kernels, in float32 as the reference computes it."""
        return float(sum(np.dot(w.ravel(), w.ravel()) for w in self.kernels))

    # ---- inference ---------------------------------------------------------------------
    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Loss (cross-entropy + L2 penalty, as Keras' val_loss) and accuracy, in big batches."""
        y = np.asarray(y, dtype=np.int64)
        total, correct = 0.0, 0
        with self._thread_limit():
            for s in range(0, len(x), EVAL_BATCH):
                z = _forward(self.recipe.activation, self.kernels, self.biases,
                             np.asarray(x[s:s + EVAL_BATCH], np.float32))
                yb = y[s:s + len(z)]
                correct += int((z.argmax(axis=1) == yb).sum())
                total += _cross_entropy_sum(_log_softmax_(z), yb, self.recipe.label_smoothing)
        loss = total / len(x)
        if self.recipe.l2 > 0:
            loss += self.recipe.l2 * self.l2_penalty()
        return loss, correct / len(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        with self._thread_limit():
            return _probabilities(self.recipe.activation, self.kernels, self.biases, x, EVAL_BATCH)
