"""The training state of a network in flat float32 vectors, and the workspace a step reuses.

State layout. A network's trainable weights live in ONE flat float32 vector ``theta``, layer
after layer: a CNN's ``conv_j.kernel`` (HWIO) and ``conv_j.bias`` first, then ``dense_i.kernel``
(fan_in, fan_out), ``dense_i.bias``, then, with batch norm on a hidden layer, ``bn_i.gamma`` and
``bn_i.beta``. Gradients and every optimizer slot use the same layout, so an optimizer update is
one flat elementwise loop per layer (or one for all conv weights), and the compiled back ends
take the offsets tables ``layout`` (Dense layers) and ``conv_layout`` (conv blocks) instead of
tuples of arrays (one compiled function for every depth). Batch norm's moving statistics
(``bn_i.moving_mean``, ``bn_i.moving_variance``) sit in a second vector ``moving``. Names, shapes
and order are the network walk's (``mnistlab.engines.arch``), so runs load unchanged.

>>> from mnistlab.recipe import Recipe
>>> s = State.for_recipe(Recipe(hidden=[4], batch_norm=True))
>>> s.names
['dense_0.kernel', 'dense_0.bias', 'bn_0.gamma', 'bn_0.beta', 'dense_1.kernel', 'dense_1.bias']
>>> s.theta.size == 784 * 4 + 4 + 4 + 4 + 4 * 10 + 10
True
>>> c = State.for_recipe(Recipe(kind="cnn", conv_channels=[8], hidden=[4]))
>>> c.names[:3], c.conv_end, c.sizes[0]
(['conv_0.kernel', 'conv_0.bias', 'dense_0.kernel'], 80, 1568)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from mnistlab.engines.arch import Network, network
from mnistlab.engines.optim import optimizer_slots
from mnistlab.errors import RunError
from mnistlab.recipe.optimizers import OPTIMIZERS


# ---- state ----------------------------------------------------------------------------------
class State:
    """Weights, optimizer slots, iteration count, nadam's product and batch norm's moving
    statistics of a network, in flat float32 vectors (see the module docstring)."""

    LAYOUT_COLUMNS = 8  # kernel, bias, gamma, beta offsets; fan_in, fan_out; mean, var offsets
    CONV_COLUMNS = 6  # kernel, bias offsets; kernel size, in and out channels, input side

    def __init__(self, net: Network, slots: list[str], fill: float, nadam: bool = False):
        dense = net.of("dense")
        blocks = [(d, net.block(d).get("batch_norm")) for d in dense]
        self.sizes = [net.flat_features, *(d.width for d in dense)]
        self.n_inputs = net.n_inputs  # pixels per image (an MLP's sizes[0])
        self.n_layers = len(dense)
        self.batch_norm = any(bn is not None for _, bn in blocks)
        self.shapes: dict[str, tuple[int, ...]] = {}
        offsets: dict[str, int] = {}
        # conv blocks first (the walk's order): kernel (k, k, in, out), bias (out,)
        self.conv_layout = np.zeros((len(net.of("conv")), self.CONV_COLUMNS), np.int64)
        pos = 0
        for j, conv in enumerate(net.of("conv")):
            for col, w in enumerate(conv.weights):
                self.shapes[w.name], offsets[w.name] = w.shape, pos
                self.conv_layout[j, col] = pos
                pos += w.size
            k, _, c_in, c_out = conv.weights[0].shape
            self.conv_layout[j, 2:] = k, c_in, c_out, conv.shape[0]
        self.conv_end = pos  # theta[:conv_end]: every conv weight, one flat optimizer update
        layout = np.zeros((self.n_layers, self.LAYOUT_COLUMNS), np.int64)
        for i, (d, bn) in enumerate(blocks):
            # columns 0-3: kernel, bias, then batch norm's gamma, beta (the walk's order)
            trained = [w for w in (*d.weights, *(bn.weights if bn else ())) if w.trainable]
            for col, w in enumerate(trained):
                self.shapes[w.name], offsets[w.name] = w.shape, pos
                layout[i, col] = pos
                pos += w.size
            layout[i, 4], layout[i, 5] = d.weights[0].shape
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
        for i, (_, bn) in enumerate(blocks):
            moving = [w for w in bn.weights if not w.trainable] if bn else []
            for col, w in zip((6, 7), moving):
                self.moving_names.append(w.name)
                mshapes[w.name] = (mpos, w.size)
                layout[i, col] = mpos
                mpos += w.size
        self.moving = np.zeros(max(mpos, 1), np.float32)
        self.moving_view = {n: self.moving[o : o + w] for n, (o, w) in mshapes.items()}
        self.layout = layout
        self.slot_names = list(slots)
        self.slots = {s: np.full(pos, fill, np.float32) for s in slots}
        self.iterations = 0
        self.nadam = nadam
        self.u_product = 1.0  # nadam: Keras' running product of the momentum schedule

    @classmethod
    def for_recipe(cls, recipe, n_classes: int = 10) -> State:
        slots, fill = optimizer_slots(recipe)
        return cls(
            network(recipe, n_classes),
            slots,
            fill,
            nadam=OPTIMIZERS[recipe.optimizer].product_state,
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
