"""The fast engine: a hand-derived forward/backward on the CPU, no torch, no allocation per
step. It runs every MLP recipe (each activation and optimizer of ``recipe.optimizers``, dropout,
batch norm, L2, label smoothing and max-norm) and every CNN recipe, its conv blocks in front of
those Dense layers (engines/fast_conv.py, numba back end). The maths is ``engines/spec.py``'s;
tests hold both back ends to it.

Where the time goes at the notebook's shapes (batch 32, 784-128-128-128-10):

* The 11 matrix products of a step are the floor. They go straight to OpenBLAS sgemm; transposed
  operands are views, never copies. The thread count is set deliberately (``default_threads``).
* ``backend="numpy"`` (engines/fast_numpy.py): ~60+ NumPy calls a step on preallocated buffers;
  per-call overhead makes it ~2x the numba back end at batch 32.
* ``backend="numba"`` (engines/fast_numba.py): a chunk of steps inside one compiled function,
  the same sgemm calls, the elementwise work fused into flat loops. The default for small
  batches when numba is installed (``default_backend``; ``self.backend`` says which ran).

State (weights, optimizer slots, iterations, batch norm's moving statistics) and the workspace
are ``engines/state.py``'s; the back ends are functions of them and of a ``state.Steps`` record.

Subnormal floats are flushed to zero while it trains, evaluates and predicts (``engines/fpmode``:
FTZ+DAZ on the calling thread, restored after; ``self.subnormals`` says what was covered).
Where the CPU's mode cannot be set, both back ends flush weights, optimizer slots and moving
statistics in software after every step instead, so the state never holds a subnormal.

>>> from mnistlab.recipe import Recipe
>>> from mnistlab.engines.init import init_weights
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
from collections.abc import Callable

import numpy as np

from mnistlab.engines import fast_conv, fast_numpy, fpmode
from mnistlab.engines.masks import dropout_keys
from mnistlab.engines.optim import Hyperparameters, step_scalars
from mnistlab.engines.state import State, Steps, Workspace
from mnistlab.errors import RecipeError

EVAL_BATCH = 10_000  # big products run near sgemm's peak; 10k x 784 float32 is 31 MB
NUMBA_MAX_BATCH = 32


def numba_available() -> bool:
    return importlib.util.find_spec("numba") is not None


def default_backend(recipe) -> str:
    """``"numba"`` for batches of at most ``NUMBA_MAX_BATCH`` when numba is installed, else numpy;
    a CNN always trains with numba (its conv blocks are compiled loops).

    At small batches the NumPy back end pays per-call overhead on every step, which numba
    removes for a one-off start-up cost per process (importing numba and scipy's BLAS, loading
    the compiled code); at large batches the steps are fewer and larger, numba saves nothing
    per epoch, and its start-up would only be a loss (bench/README.md has the figures).
    """
    if (recipe.kind == "cnn" or recipe.batch_size <= NUMBA_MAX_BATCH) and numba_available():
        return "numba"
    return "numpy"


def default_threads() -> int:
    """BLAS threads when the recipe leaves ``threads`` unset: 1.

    Batch-32 products are too small to split, and two OpenBLAS threads spin waiting for a core
    another process holds, so on a shared machine one thread is the steady choice
    (bench/README.md has the figures). ``recipe.threads = 2`` is there for a quiet machine.
    """
    return 1


def unsupported(recipe, inference: bool = False) -> str | None:
    """Why the fast engine cannot run ``recipe`` (one line), or None when it can. It has the
    kernels of every optimizer and activation of ``recipe.optimizers``, so only the network
    family decides (a CNN trains on the numba back end)."""
    if recipe.kind not in ("mlp", "cnn"):
        return f"kind {recipe.kind!r} (it runs kinds 'mlp' and 'cnn')"
    if recipe.kind == "cnn" and not inference and not numba_available():
        return "kind 'cnn' trains on its numba back end, and numba is not installed"
    return None


def _logit_chunks(h: Hyperparameters, w: dict[str, np.ndarray], x: np.ndarray, batch_size: int):
    """(first row, logits) of ``x`` chunk by chunk, in inference mode (no dropout, batch norm's
    moving statistics); a CNN's conv blocks first (NumPy, chunks sized to stay in cache)."""
    conv = "conv_0.kernel" in w
    if conv:
        batch_size = min(batch_size, fast_conv.eval_batch(w))
    for s in range(0, len(x), batch_size):
        xb = np.asarray(x[s : s + batch_size], np.float32)
        yield s, fast_numpy.logits(h, w, fast_conv.features(w, xb) if conv else xb)


def _probabilities(chunks, n: int, n_out: int, softmax: bool = True) -> np.ndarray:
    """Softmax rows (n, n_out) of the (first row, logits) ``chunks`` (the logits themselves
    without ``softmax``)."""
    out = np.empty((n, n_out), np.float32)
    for s, z in chunks:
        if softmax:
            z -= z.max(axis=1, keepdims=True)  # stable: the largest exponent is 0
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
        out[s : s + len(z)] = z
    return out


def predict_proba(
    recipe, weights: dict[str, np.ndarray], x: np.ndarray, batch_size: int = EVAL_BATCH
) -> np.ndarray:
    """Softmax probabilities (N, n_classes) float32 of a recipe's weights; torch- and numba-free.

    >>> from mnistlab.recipe import Recipe
    >>> from mnistlab.engines.init import init_weights
    >>> r = Recipe(hidden=[8], batch_norm=True)
    >>> p = predict_proba(r, init_weights(r), np.ones((3, 784), np.float32))
    >>> p.shape, bool(np.allclose(p.sum(1), 1))
    ((3, 10), True)
    """
    reason = unsupported(recipe, inference=True)
    if reason is not None:
        raise RecipeError(f"fast predict_proba cannot run this recipe: {reason}")
    w = {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}
    x = np.asarray(x).reshape(len(x), -1)
    n_out = w[f"dense_{len(recipe.hidden)}.bias"].shape[0]
    with fpmode.flushing():
        return _probabilities(
            _logit_chunks(Hyperparameters.of(recipe), w, x, batch_size), len(x), n_out
        )


def predict_logits(
    recipe, weights: dict[str, np.ndarray], x: np.ndarray, batch_size: int = EVAL_BATCH
) -> np.ndarray:
    """The logits (N, n_classes) float32 that ``predict_proba`` takes the softmax of."""
    reason = unsupported(recipe, inference=True)
    if reason is not None:
        raise RecipeError(f"fast predict_logits cannot run this recipe: {reason}")
    w = {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}
    x = np.asarray(x).reshape(len(x), -1)
    n_out = w[f"dense_{len(recipe.hidden)}.bias"].shape[0]
    with fpmode.flushing():
        chunks = _logit_chunks(Hyperparameters.of(recipe), w, x, batch_size)
        return _probabilities(chunks, len(x), n_out, softmax=False)


class FastEngine:
    """NumPy(+numba) MLP and CNN engine; see the module docstring and ``protocol.Engine``."""

    name = "fast"
    device = "cpu"
    reason = ""
    unsupported = staticmethod(unsupported)

    def __init__(
        self,
        recipe,
        weights: dict[str, np.ndarray],
        device: str | None = None,
        backend: str | None = None,
        numpy_blas: bool = True,
    ):
        reason = unsupported(recipe)
        if reason is not None:
            raise RecipeError(f"the fast engine cannot train this recipe: {reason}")
        if device not in (None, "cpu"):
            raise RecipeError(f"the fast engine runs on the CPU only, not {device!r}")
        if backend is None:  # both are tested equal to the spec; self.backend records it
            backend = default_backend(recipe)
        if backend not in ("numpy", "numba"):
            raise ValueError(f"backend {backend!r}: expected 'numpy' or 'numba'")
        if backend == "numba" and not numba_available():
            raise RecipeError("the fast engine's numba backend needs numba installed")
        if backend == "numpy" and recipe.kind == "cnn":
            raise RecipeError("the fast engine trains a CNN on its numba back end only")
        self.backend = backend
        self._numba = None
        if backend == "numba":  # loads numba and its BLAS now, outside any thread limit
            from mnistlab.engines import fast_numba

            self._numba = fast_numba
        # numba backend: products through NumPy's OpenBLAS (fast_numba.NUMPY_SGEMM) when found
        self.numpy_blas = numpy_blas
        self.recipe = recipe = recipe.resolved()  # per-optimizer defaults filled in
        self.hyper = Hyperparameters.of(recipe)
        self.threads = recipe.threads if recipe.threads is not None else default_threads()
        last = f"dense_{len(recipe.hidden)}.bias"
        n_out = len(weights[last]) if last in weights else 10  # load_weights names a gap
        self.st = State.for_recipe(recipe, n_classes=n_out)
        self.st.load_weights(weights)
        self.n_layers = self.st.n_layers
        self._ws: Workspace | None = None
        # a CNN's parts each flush their own thread and call one-thread BLAS: all covered
        blas_threads = 1 if recipe.kind == "cnn" else self.threads
        self.subnormals = fpmode.status(blas_threads, "BLAS")
        if fpmode.control() is None:
            self.subnormals += "; the update kernels flush the state's subnormals in software"
        self._conv: fast_conv.ConvBuffers | None = None

    # ---- parameters and state ----------------------------------------------------------
    @property
    def kernels(self) -> list[np.ndarray]:
        return [self.st.kernel(i) for i in range(self.n_layers)]

    @property
    def iterations(self) -> int:
        return self.st.iterations

    def weights(self) -> dict[str, np.ndarray]:
        return self.st.weights()

    def state(self) -> dict[str, np.ndarray]:
        return self.st.state()

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.st.load_state(state)

    def _workspace(self, n: int) -> Workspace:
        rows = max(1, min(self.recipe.batch_size, n))
        if self._ws is None or self._ws.rows < rows:
            self._ws = Workspace(self.st.sizes, rows, self.st.theta.size, self.hyper.dropout > 0)
            if len(self.st.conv_layout):
                self._conv = fast_conv.ConvBuffers(self.st, rows, max(1, self.threads))
        return self._ws

    # ---- training ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _thread_limit(self, blas: int | None = None):
        """``blas`` BLAS threads (default: the chosen thread count) and subnormals flushed
        (yields whether the hardware does it); overflow to inf/NaN stays silent (as in the
        numba backend): a diverging run shows in its loss, which the health check reads."""
        from threadpoolctl import threadpool_limits

        with (
            threadpool_limits(limits=blas or self.threads, user_api="blas"),
            np.errstate(over="ignore", invalid="ignore"),
            fpmode.flushing() as flushed,
        ):
            yield flushed

    def train_epoch(
        self,
        x: np.ndarray,
        y: np.ndarray,
        order: np.ndarray,
        lrs: np.ndarray,
        epoch: int,
        on_progress: Callable[[int, float, float], None] | None = None,
    ) -> tuple[float, float]:
        """One epoch of steps over ``x[order]``; returns (mean loss, accuracy) as Keras reports."""
        x = np.ascontiguousarray(x, dtype=np.float32)  # no copy when already so (the contract)
        y = np.ascontiguousarray(y, dtype=np.int64)
        order = np.ascontiguousarray(order, dtype=np.int64)
        n, bs = len(order), self.recipe.batch_size
        steps = -(-n // bs)
        if len(lrs) != steps:
            raise ValueError(f"{len(lrs)} learning rates for {steps} steps")
        # The compiled backend does not bounds-check: out-of-range indices must stop here.
        n_in, n_out = self.st.n_inputs, self.st.sizes[-1]
        if x.ndim != 2 or x.shape[1] != n_in or len(y) != len(x):
            raise ValueError(f"x {x.shape} / y {y.shape}: expected (N, {n_in}) and (N,)")
        if n and (order.min() < 0 or order.max() >= len(x)):
            raise ValueError(f"order holds indices outside [0, {len(x)})")
        if len(y) and (y.min() < 0 or y.max() >= n_out):
            raise ValueError(f"labels outside [0, {n_out})")
        st, h = self.st, self.hyper
        scalars, prods = step_scalars(h, np.asarray(lrs, np.float32), st.iterations, st.u_product)
        keys = (
            dropout_keys(h.seed, epoch, steps, st.n_layers - 1)
            if h.dropout > 0
            else np.zeros((steps, 0), np.uint64)
        )
        s = Steps(
            x=x,
            y=y,
            order=order,
            batch_size=bs,
            scalars=scalars,
            keys=keys,
            losses=np.zeros(steps, np.float64),
            correct=np.zeros(steps, np.int64),
        )
        ws = self._workspace(n)
        every = max(1, steps // 20)
        # a CNN splits each batch over its own threads, each calling one-thread BLAS
        with self._thread_limit(1 if self._conv is not None else None) as flushed:
            for k0 in range(0, steps, every):
                k1 = min(steps, k0 + every)
                if self._conv is not None:
                    fast_conv.run_steps(
                        st, ws, h, s, k0, k1, self._conv, self.numpy_blas, not flushed
                    )
                elif self._numba is not None:
                    self._numba.run_steps(st, ws, h, s, k0, k1, self.numpy_blas, not flushed)
                else:
                    fast_numpy.run_steps(st, ws, h, s, k0, k1, not flushed)
                st.iterations += k1 - k0
                st.u_product = float(prods[k1 - 1])
                if on_progress is not None:
                    seen = min(k1 * bs, n)
                    on_progress(
                        k1,
                        self._weighted(s.losses, k1, n) * n / seen,
                        int(s.correct[:k1].sum()) / seen,
                    )
        return self._weighted(s.losses, steps, n), int(s.correct.sum()) / n

    def _weighted(self, losses: np.ndarray, k: int, n: int) -> float:
        """Mean over samples of batch losses (Keras weighs each batch by its size)."""
        bs = self.recipe.batch_size
        sizes = np.full(k, bs, np.float64)
        sizes[-1] = min(bs, n - (k - 1) * bs)
        return float(losses[:k] @ sizes) / n

    def l2_penalty(self) -> float:
        """sum(kernel**2) over the Dense kernels, in float32 as the reference computes it."""
        return float(sum(np.dot(w.ravel(), w.ravel()) for w in self.kernels))

    # ---- inference ---------------------------------------------------------------------
    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Loss (cross-entropy + L2 penalty, as Keras' val_loss) and accuracy, in big batches;
        inference mode (no dropout, batch norm's moving statistics)."""
        y = np.asarray(y, dtype=np.int64)
        ls = self.hyper.label_smoothing
        total, correct = 0.0, 0
        with self._thread_limit(1 if len(self.st.conv_layout) else None):
            for s, z in self._logit_chunks(np.asarray(x).reshape(len(x), -1)):
                yb = y[s : s + len(z)]
                correct += int((z.argmax(axis=1) == yb).sum())
                z -= z.max(axis=1, keepdims=True)
                z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
                picked = -float(np.take_along_axis(z, yb[:, None], axis=1).sum(dtype=np.float64))
                if ls:
                    spread = -float(z.sum(dtype=np.float64)) / z.shape[1]
                    picked = (1 - ls) * picked + ls * spread
                total += picked
        loss = total / len(x)
        if self.hyper.l2 > 0:
            loss += self.hyper.l2 * self.l2_penalty()
        return loss, correct / len(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        with self._thread_limit(1 if len(self.st.conv_layout) else None):
            chunks = self._logit_chunks(np.asarray(x).reshape(len(x), -1))
            return _probabilities(chunks, len(x), self.st.sizes[-1])

    def _logit_chunks(self, x: np.ndarray):
        """(first row, logits) of ``x`` in inference mode; a CNN's conv blocks run on the
        training kernels (numba is loaded already), a batch at a time on its threads."""
        w = {**self.st.view, **self.st.moving_view}
        if not len(self.st.conv_layout):
            yield from _logit_chunks(self.hyper, w, x, EVAL_BATCH)
            return
        ws = self._workspace(self.recipe.batch_size)
        h0 = ws.h_flat[ws.offsets[0, 0] : ws.offsets[0, 0] + ws.rows * self.st.sizes[0]]
        feats = fast_conv.compiled_features(self.st, self._conv, h0, x, self.numpy_blas)
        for s, f in feats:
            yield s, fast_numpy.logits(self.hyper, w, f)
