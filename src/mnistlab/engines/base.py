"""What every engine shares: Keras' constants, the training state, the workspace, dropout masks,
the per-step optimizer scalars, and the ``Engine`` protocol train.py relies on.

A leaf module (NumPy only): spec.py, the fast back ends and the torch engine import it, and it
imports none of them, so no engine module imports another in a circle.

State layout. An MLP's trainable weights live in ONE flat float32 vector ``theta``, layer after
layer: ``dense_i.kernel`` (fan_in, fan_out), ``dense_i.bias``, then, with batch norm on a hidden
layer, ``bn_i.gamma`` and ``bn_i.beta``. Gradients and every optimizer slot use the same layout,
so an optimizer update is one flat elementwise loop per layer, and the compiled back end takes
the offsets table ``layout`` instead of tuples of arrays (one compiled function for every depth).
Batch norm's moving statistics (``bn_i.moving_mean``, ``bn_i.moving_variance``) sit in a second
vector ``moving``. Names are Keras' (``mnistlab.engines.init``), so runs load unchanged.

>>> from mnistlab.recipe import Recipe
>>> s = State.for_recipe(Recipe(hidden=[4], batch_norm=True))
>>> s.names
['dense_0.kernel', 'dense_0.bias', 'bn_0.gamma', 'bn_0.beta', 'dense_1.kernel', 'dense_1.bias']
>>> s.theta.size == 784 * 4 + 4 + 4 + 4 + 4 * 10 + 10
True
>>> bool(dropout_keep(0, 0, 0, 0, 2, 3, 0.5).shape == (2, 3))
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from mnistlab.errors import RunError

# ---- Keras' constants (Keras 3 defaults) ------------------------------------------------------
ADAM_BETA1, ADAM_BETA2, EPSILON = 0.9, 0.999, 1e-7  # adam, adamw, nadam; EPSILON for all
NADAM_DECAY = 0.96  # Nadam's momentum-cache schedule
RMSPROP_RHO, ADAGRAD_INITIAL, ADADELTA_RHO = 0.9, 0.1, 0.95
BN_MOMENTUM, BN_EPSILON = 0.99, 1e-3  # BatchNormalization
MAXNORM_EPSILON = 1e-7  # keras.constraints.MaxNorm (backend.epsilon)

# Optimizer-state slots, named as Keras names them; both engines keep the same names, so a run's
# state moves between engines.
SLOTS = {
    "sgd": ("momentum",),
    "adam": ("m", "v"),
    "adamw": ("m", "v"),
    "nadam": ("m", "v"),
    "rmsprop": ("velocity", "momentum"),
    "adagrad": ("accumulator",),
    "adadelta": ("accumulated_grad", "accumulated_delta_var"),
}
OPTIMIZER_CODES = {
    "sgd": 0,
    "adam": 1,
    "adamw": 1,
    "nadam": 2,
    "rmsprop": 3,
    "adagrad": 4,
    "adadelta": 5,
}
ACTIVATION_CODES = {"relu": 0, "tanh": 1, "sigmoid": 2, "gelu": 3}


@dataclasses.dataclass(frozen=True)
class Hyper:
    """The recipe's numbers an engine's maths reads (per-optimizer defaults resolved)."""

    optimizer: str = "sgd"
    activation: str = "relu"
    l2: float = 0.0
    label_smoothing: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    dropout: float = 0.0
    batch_norm: bool = False
    max_norm: float = 0.0
    seed: int = 0

    @classmethod
    def of(cls, recipe) -> Hyper:
        r = recipe.resolved()
        return cls(
            optimizer=r.optimizer,
            activation=r.activation,
            l2=float(r.l2),
            label_smoothing=float(r.label_smoothing),
            momentum=float(r.momentum),
            nesterov=bool(r.nesterov),
            weight_decay=float(r.weight_decay) if r.optimizer == "adamw" else 0.0,
            dropout=float(r.dropout),
            batch_norm=bool(r.batch_norm),
            max_norm=float(r.max_norm),
            seed=int(r.seed),
        )


def optimizer_slots(recipe) -> tuple[list[str], float]:
    """(slot names, initial value) of the recipe's optimizer state.

    >>> from mnistlab.recipe import Recipe
    >>> optimizer_slots(Recipe(optimizer="rmsprop", momentum=0.0))
    (['velocity'], 0.0)
    """
    recipe = recipe.resolved()
    names = [
        s
        for s in SLOTS[recipe.optimizer]  # rmsprop keeps momentum only when > 0
        if not (recipe.optimizer == "rmsprop" and s == "momentum" and recipe.momentum == 0)
    ]
    return names, (ADAGRAD_INITIAL if recipe.optimizer == "adagrad" else 0.0)


def slots_of(h: Hyper) -> list[str]:
    return [
        s
        for s in SLOTS[h.optimizer]
        if not (h.optimizer == "rmsprop" and s == "momentum" and h.momentum == 0)
    ]


# ---- per-step optimizer scalars -----------------------------------------------------------------
N_SCALARS = 4


def step_scalars(
    h: Hyper, lrs32: np.ndarray, iterations: int, u_product: float
) -> tuple[np.ndarray, np.ndarray]:
    """(scalars (steps, 4) float64, nadam's u_product after each step) for the next steps.

    Everything of an update that is the same for every weight, computed once per step in
    float64 from this step's float32 learning rate, so every engine and back end applies the
    very same numbers (their elementwise loops stay branch-free). Columns per optimizer:

    * sgd: lr, momentum, a, c with ``w += a*v - c*lr*g`` (nesterov: a = momentum, c = 1;
      else a = 1, c = 0, i.e. ``w += v``);
    * adam/adamw: alpha = lr*sqrt(1-b2^t)/(1-b1^t), shrink = 1 - float32(wd*lr) (1 for adam);
    * nadam: lr, u_{t+1}/(1-prod_{t+1}), (1-u_t)/(1-prod_t), 1/(1-b2^t);
    * rmsprop: lr, momentum; adagrad, adadelta: lr.
    """
    steps = len(lrs32)
    out = np.zeros((steps, N_SCALARS), np.float64)
    prods = np.empty(steps, np.float64)
    lr = np.asarray(lrs32, np.float32).astype(np.float64)
    t = iterations + 1 + np.arange(steps, dtype=np.float64)
    opt = h.optimizer
    if opt == "sgd":
        out[:, 0], out[:, 1] = lr, h.momentum
        out[:, 2], out[:, 3] = (h.momentum, 1.0) if h.nesterov else (1.0, 0.0)
    elif opt in ("adam", "adamw"):
        out[:, 0] = lr * np.sqrt(1 - ADAM_BETA2**t) / (1 - ADAM_BETA1**t)
        shrink = (
            1.0
            - (np.float32(h.weight_decay) * np.asarray(lrs32, np.float32))
            .astype(np.float32)
            .astype(np.float64)
            if h.weight_decay > 0
            else 1.0
        )
        out[:, 1] = shrink
    elif opt == "nadam":
        u = ADAM_BETA1 * (1.0 - 0.5 * NADAM_DECAY**t)
        u_next = ADAM_BETA1 * (1.0 - 0.5 * NADAM_DECAY ** (t + 1))
        p = u_product
        for k in range(steps):  # Keras keeps the running product as state: so do we
            p *= u[k]
            prods[k] = p
        out[:, 0] = lr
        out[:, 1] = u_next / (1.0 - prods * u_next)
        out[:, 2] = (1.0 - u) / (1.0 - prods)
        out[:, 3] = 1.0 / (1.0 - ADAM_BETA2**t)
    elif opt == "rmsprop":
        out[:, 0], out[:, 1] = lr, h.momentum
    else:  # adagrad, adadelta
        out[:, 0] = lr
    if opt != "nadam":
        prods[:] = u_product
    return out, prods


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


# ---- state ----------------------------------------------------------------------------------
class State:
    """Weights, optimizer slots, iteration count, nadam's product and batch norm's moving
    statistics of an MLP, in flat float32 vectors (see the module docstring)."""

    LAYOUT_COLUMNS = 8  # kernel, bias, gamma, beta offsets; fan_in, fan_out; mean, var offsets

    def __init__(
        self, sizes: list[int], batch_norm: bool, slots: list[str], fill: float, nadam: bool = False
    ):
        self.sizes = list(sizes)
        self.n_layers = len(sizes) - 1
        self.batch_norm = batch_norm
        self.shapes: dict[str, tuple[int, ...]] = {}
        offsets: dict[str, int] = {}
        layout = np.zeros((self.n_layers, self.LAYOUT_COLUMNS), np.int64)
        pos = 0
        for i in range(self.n_layers):
            fi, fo = sizes[i], sizes[i + 1]
            entries = [(f"dense_{i}.kernel", (fi, fo)), (f"dense_{i}.bias", (fo,))]
            if batch_norm and i < self.n_layers - 1:
                entries += [(f"bn_{i}.gamma", (fo,)), (f"bn_{i}.beta", (fo,))]
            for col, (name, shape) in enumerate(entries):
                self.shapes[name], offsets[name] = shape, pos
                layout[i, col] = pos
                pos += math.prod(shape)
            layout[i, 4], layout[i, 5] = fi, fo
        self.ends = [
            int(layout[i + 1, 0]) if i + 1 < self.n_layers else pos for i in range(self.n_layers)
        ]
        self.names = list(self.shapes)
        self.theta = np.zeros(pos, np.float32)
        self.view = {
            n: self.theta[o : o + math.prod(self.shapes[n])].reshape(self.shapes[n])
            for n, o in offsets.items()
        }
        self.offsets = offsets
        # moving statistics: mean then variance of each hidden layer with batch norm
        self.moving_names: list[str] = []
        mpos = 0
        mshapes = {}
        if batch_norm:
            for i in range(self.n_layers - 1):
                fo = sizes[i + 1]
                for col, stat in ((6, "moving_mean"), (7, "moving_variance")):
                    name = f"bn_{i}.{stat}"
                    self.moving_names.append(name)
                    mshapes[name] = (mpos, fo)
                    layout[i, col] = mpos
                    mpos += fo
        self.moving = np.zeros(max(mpos, 1), np.float32)
        self.moving_view = {n: self.moving[o : o + w] for n, (o, w) in mshapes.items()}
        self.layout = layout
        self.slot_names = list(slots)
        self.slots = {s: np.full(pos, fill, np.float32) for s in slots}
        self.iterations = 0
        self.nadam = nadam
        self.u_product = 1.0  # nadam: Keras' running product of the momentum schedule

    @classmethod
    def for_recipe(cls, recipe, n_inputs: int = 784, n_classes: int = 10) -> State:
        slots, fill = optimizer_slots(recipe)
        return cls(
            [n_inputs, *recipe.hidden, n_classes],
            bool(recipe.batch_norm),
            slots,
            fill,
            nadam=recipe.optimizer == "nadam",
        )

    def kernel(self, i: int) -> np.ndarray:
        return self.view[f"dense_{i}.kernel"]

    def all_names(self) -> list[str]:
        return self.names + self.moving_names

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Copy Keras-named weights in (names and shapes must fit exactly)."""
        names = {k for k in weights if not k.startswith("opt.")}
        expected = set(self.all_names())
        if names != expected:
            raise RunError(
                f"weights do not fit the recipe's network: missing "
                f"{sorted(expected - names)}, unexpected {sorted(names - expected)}"
            )
        for name in self.all_names():
            target = self.view.get(name)
            if target is None:
                target = self.moving_view[name]
            value = np.asarray(weights[name])
            if value.shape != target.shape:
                raise RunError(f"weight {name!r}: shape {value.shape}, expected {target.shape}")
            target[...] = value

    def weights(self) -> dict[str, np.ndarray]:
        """Keras-named copies: trainable weights, then batch norm's moving statistics."""
        out = {n: self.view[n].copy() for n in self.names}
        out.update({n: self.moving_view[n].copy() for n in self.moving_names})
        return out

    def state(self) -> dict[str, np.ndarray]:
        """weights + ``opt.<slot>.<name>`` + ``opt.iterations`` (+ ``opt.u_product``, nadam)."""
        out = self.weights()
        for slot, flat in self.slots.items():
            for n in self.names:
                o = self.offsets[n]
                out[f"opt.{slot}.{n}"] = (
                    flat[o : o + self.view[n].size].reshape(self.shapes[n]).copy()
                )
        out["opt.iterations"] = np.array(self.iterations, dtype=np.int64)
        if self.nadam:
            out["opt.u_product"] = np.array(self.u_product, dtype=np.float64)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        for slot in self.slots:
            for n in self.names:
                key = f"opt.{slot}.{n}"
                if key not in state:
                    raise RunError(
                        f"optimizer state {key!r} is missing (was the run trained "
                        f"with another optimizer?)"
                    )
                if np.shape(state[key]) != self.shapes[n]:
                    raise RunError(
                        f"optimizer state {key!r} has shape {np.shape(state[key])}, "
                        f"expected {self.shapes[n]}"
                    )
        for key in ("opt.iterations",) + (("opt.u_product",) if self.nadam else ()):
            if key not in state:
                raise RunError(f"optimizer state {key!r} is missing")
        self.load_weights({k: v for k, v in state.items() if not k.startswith("opt.")})
        for slot, flat in self.slots.items():
            for n in self.names:
                o = self.offsets[n]
                flat[o : o + self.view[n].size] = np.asarray(state[f"opt.{slot}.{n}"]).reshape(-1)
        self.iterations = int(state["opt.iterations"])
        self.u_product = float(state.get("opt.u_product", 1.0))


# ---- workspace ------------------------------------------------------------------------------
class Workspace:
    """Every buffer a training step touches, allocated once for ``rows`` rows.

    ``rows`` is min(batch size, training samples): a batch size larger than the data set
    allocates for the data set. Flat float32 vectors with per-layer (rows, width) views, so
    the compiled back end takes offsets and the NumPy one takes views. Per layer i (0 = input):
    ``h[i]`` what layer i's product reads (the batch, or a hidden output after dropout);
    ``z[i]``, ``a[i]``, ``mask[i]`` the hidden layer i's pre-activation (x-hat under batch
    norm), activation output and dropout scale (0 or 1/(1-rate)); ``d[i]`` the gradient
    with respect to ``h[i]`` (``d[n]`` the logits' gradient); ``stats[i]`` batch norm's
    batch mean, variance and 1/sqrt(var+eps).
    """

    def __init__(self, sizes: list[int], rows: int, n_params: int, dropout: bool):
        self.rows = rows
        self.sizes = list(sizes)
        n = len(sizes) - 1
        width_sum = sum(sizes)
        hidden = sizes[1:-1]
        self.h_flat = np.zeros(rows * width_sum, np.float32)
        self.d_flat = np.zeros(rows * width_sum, np.float32)
        self.z_flat = np.zeros(max(rows * sum(hidden), 1), np.float32)
        self.pre_flat = np.zeros(max(rows * sum(hidden), 1), np.float32)  # gelu's input
        self.a_flat = np.zeros(max(rows * sum(hidden), 1), np.float32) if dropout else self.h_flat
        self.mask_flat = np.zeros(max(rows * sum(hidden), 1) if dropout else 1, np.float32)
        self.stats = np.zeros(max(3 * sum(hidden), 1), np.float32)
        self.tmp_flat = np.zeros(max(rows * max(sizes), 1), np.float32)  # NumPy back end
        self.col = np.zeros(max(sizes), np.float32)  # max-norm's norms
        self.grad = np.zeros(n_params, np.float32)
        self.scratch = np.zeros(n_params, np.float32)
        # offsets table: h, d, z, a, mask, stats (per layer; hidden-only entries 0 for the last)
        off = np.zeros((n + 1, 6), np.int64)
        ph = ph_hidden = ps = 0
        for i, w in enumerate(sizes):
            off[i, 0] = off[i, 1] = ph
            if 1 <= i <= n - 1:
                off[i - 1, 2] = off[i - 1, 4] = ph_hidden
                # a_flat aliases h_flat without dropout: a[i-1] IS h[i]
                off[i - 1, 3] = ph_hidden if dropout else ph
                off[i - 1, 5] = ps
                ph_hidden += rows * w
                ps += 3 * w
            ph += rows * w
        self.offsets = off

    def _v(self, flat: np.ndarray, off: int, b: int, w: int) -> np.ndarray:
        return flat[off : off + b * w].reshape(b, w)

    def h(self, i: int, b: int) -> np.ndarray:
        return self._v(self.h_flat, int(self.offsets[i, 0]), b, self.sizes[i])

    def d(self, i: int, b: int) -> np.ndarray:
        return self._v(self.d_flat, int(self.offsets[i, 1]), b, self.sizes[i])

    def z(self, i: int, b: int) -> np.ndarray:
        return self._v(self.z_flat, int(self.offsets[i, 2]), b, self.sizes[i + 1])

    def pre(self, i: int, b: int) -> np.ndarray:
        """The activation's input of hidden layer i (kept for gelu's derivative)."""
        return self._v(self.pre_flat, int(self.offsets[i, 2]), b, self.sizes[i + 1])

    def a(self, i: int, b: int) -> np.ndarray:
        return self._v(self.a_flat, int(self.offsets[i, 3]), b, self.sizes[i + 1])

    def mask(self, i: int, b: int) -> np.ndarray:
        return self._v(self.mask_flat, int(self.offsets[i, 4]), b, self.sizes[i + 1])

    def tmp(self, b: int, w: int) -> np.ndarray:
        return self._v(self.tmp_flat, 0, b, w)

    def stat(self, i: int) -> np.ndarray:
        """(3, width): batch mean, biased variance, 1/sqrt(var + eps) of hidden layer i."""
        w = self.sizes[i + 1]
        o = int(self.offsets[i, 5])
        return self.stats[o : o + 3 * w].reshape(3, w)


@dataclasses.dataclass(frozen=True)
class Steps:
    """What a back end needs for a run of steps of one epoch (arrays are the engine's own).

    ``scalars`` (steps, 4) float64 from ``step_scalars``; ``keys`` (steps, n_hidden) uint64 from
    ``dropout_keys`` (empty without dropout); ``losses``/``correct`` (steps,) are written: each
    step's loss (incl. L2) and number of correct predictions.
    """

    x: np.ndarray
    y: np.ndarray
    order: np.ndarray
    batch_size: int
    scalars: np.ndarray
    keys: np.ndarray
    losses: np.ndarray
    correct: np.ndarray


# ---- the engine protocol ----------------------------------------------------------------------
@runtime_checkable
class Engine(Protocol):
    """What train.py (and bench/) read from an engine.

    ``train_epoch(x, y, order, lrs, epoch, on_progress)``: x float32 (N, 784) normalized,
    C-contiguous; y int64 (N,); order int64 (N,) this epoch's permutation; lrs float64 (steps,)
    from ``schedules.learning_rates``. Batch k is ``x[order[k*bs:(k+1)*bs]]`` (the last,
    smaller batch is a step too). Returns the mean over samples of the batch losses
    (cross-entropy + L2 penalty, as Keras reports) and the accuracy; calls
    ``on_progress(batches_done, running_loss, running_acc)`` up to ~20 times. Dropout masks
    are a function of (seed, epoch, step, layer) (``dropout_keys``): a resumed epoch replays.
    ``evaluate``/``predict_proba`` run in inference mode (no dropout, batch norm's moving
    statistics). ``weights()`` are Keras-named; ``state()`` adds ``opt.*``.
    """

    name: str  # "fast" or "reference"
    device: str  # "cpu", "cuda", ...
    backend: str  # "numba", "numpy" or "torch"
    threads: int | None
    reason: str  # why make_engine picked it

    def train_epoch(
        self,
        x: np.ndarray,
        y: np.ndarray,
        order: np.ndarray,
        lrs: np.ndarray,
        epoch: int,
        on_progress: Callable[[int, float, float], None] | None = None,
    ) -> tuple[float, float]: ...

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...

    def weights(self) -> dict[str, np.ndarray]: ...

    def state(self) -> dict[str, np.ndarray]: ...

    def load_state(self, state: dict[str, np.ndarray]) -> None: ...
