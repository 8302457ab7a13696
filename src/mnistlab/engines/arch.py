"""The recipe's network, walked once: each layer in order with its Keras weights and its width.

Everything that needs the network's shape reads it here: the initial weights, the fast engine's
flat state, the torch module, the memory budget, the ONNX graph, the model file's shape check,
and the parameter count and one-line architecture of the run report and the compare leaderboard.

The layers, as Keras builds them: each conv block is conv ('same') -> 2x2 max-pool -> relu;
then flatten, in Keras' channels-last (h, w, c) order; then each hidden Dense is dense ->
batch norm (optional) -> activation -> dropout (when the rate is above 0); the last dense ->
softmax. Weights keep Keras' names and layouts: a conv kernel is HWIO (kh, kw, in, out), a
Dense kernel (fan_in, fan_out), batch norm ``gamma``, ``beta`` (trained) and ``moving_mean``,
``moving_variance`` (running statistics, not parameters).

>>> from mnistlab.recipe import Recipe
>>> net = network(Recipe(hidden=[128, 128, 128]))
>>> net.trainable_count                   # 784-128-128-128-10
134794
>>> net.line
'784 → 128 relu → 128 relu → 128 relu → 10 softmax'
>>> cnn = network(Recipe(kind="cnn", conv_channels=[8], hidden=[16], batch_norm=True))
>>> [(layer.name, layer.shape) for layer in cnn.layers][:4]  # doctest: +NORMALIZE_WHITESPACE
[('conv_0', (28, 28, 8)), ('max_pool_0', (14, 14, 8)), ('relu_0', (14, 14, 8)),
 ('flatten', (1568,))]
>>> [(w.name, w.shape, w.trainable) for w in cnn.find("bn_0").weights][2:]
[('bn_0.moving_mean', (16,), False), ('bn_0.moving_variance', (16,), False)]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mnistlab.recipe import Recipe

SIDE = 28  # the images' side: MNIST and its look-alikes are 28x28 grey levels
HEADS = ("conv", "flatten", "dense")  # the layers that start a block (see Network.block)


@dataclass(frozen=True)
class Weight:
    """One Keras weight: its name ``<layer>.<role>``, shape and initial value rule."""

    name: str
    shape: tuple[int, ...]
    init: str  # Keras' default initializer: "glorot_uniform", "zeros" or "ones"
    trainable: bool = True  # False: batch norm's moving statistics

    @property
    def role(self) -> str:
        return self.name.rsplit(".", 1)[1]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def fans(self) -> tuple[int, int]:
        """(fan_in, fan_out) of a kernel, as Keras counts them: the last two axes times the
        receptive field (a conv kernel's kh * kw)."""
        receptive = math.prod(self.shape[:-2])
        return self.shape[-2] * receptive, self.shape[-1] * receptive


@dataclass(frozen=True)
class Layer:
    """One layer: ``kind`` is conv, max_pool, activation, flatten, dense, batch_norm or dropout.

    ``shape`` is its output per sample, (h, w, c) before the flatten and (width,) after it;
    ``fn`` names an activation (relu, tanh, sigmoid, gelu, softmax); ``rate`` is dropout's.
    """

    kind: str
    name: str
    shape: tuple[int, ...]
    weights: tuple[Weight, ...] = ()
    fn: str = ""
    rate: float = 0.0

    @property
    def width(self) -> int:
        """Output values per sample."""
        return math.prod(self.shape)

    @property
    def index(self) -> int:
        """j of ``conv_j``, i of ``dense_i`` and ``bn_i``."""
        return int(self.name.rsplit("_", 1)[1])


@dataclass(frozen=True)
class Network:
    """The walk of a recipe's layers (see the module docstring) and what follows from it."""

    input_shape: tuple[int, int, int]  # (side, side, 1): one grey channel
    layers: tuple[Layer, ...]

    def of(self, kind: str) -> list[Layer]:
        return [layer for layer in self.layers if layer.kind == kind]

    def find(self, name: str) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)

    def block(self, head: Layer) -> dict[str, Layer]:
        """The layers after ``head`` (a conv, the flatten or a dense) up to the next such
        layer, by kind: a dense's batch_norm, activation and dropout; a conv's max_pool and
        activation."""
        k = self.layers.index(head) + 1
        out: dict[str, Layer] = {}
        while k < len(self.layers) and self.layers[k].kind not in HEADS:
            out[self.layers[k].kind] = self.layers[k]
            k += 1
        return out

    @property
    def weights(self) -> list[Weight]:
        """Every Keras weight in layer order (the order initial values are drawn in)."""
        return [w for layer in self.layers for w in layer.weights]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {w.name: w.shape for w in self.weights}

    @property
    def trainable_count(self) -> int:
        """Trainable parameters: batch norm's moving statistics are running state, not counted."""
        return sum(w.size for w in self.weights if w.trainable)

    @property
    def moving_count(self) -> int:
        return sum(w.size for w in self.weights if not w.trainable)

    @property
    def n_inputs(self) -> int:
        return math.prod(self.input_shape)

    @property
    def flat_features(self) -> int:
        """Width of the vector the first Dense layer sees."""
        return self.find("flatten").width

    @property
    def n_classes(self) -> int:
        return self.of("dense")[-1].width

    @property
    def line(self) -> str:
        """The network in one line, e.g. '784 → 128 relu + BN → 10 softmax'."""
        convs = self.of("conv")
        side, _, _ = self.input_shape
        parts = [f"{side}\u00d7{side}" if convs else str(self.n_inputs)]
        for conv in convs:
            kh, kw, _, c = conv.weights[0].shape
            parts.append(f"conv {kh}\u00d7{kw}, {c} channels + pool")
        for dense in self.of("dense"):
            after = self.block(dense)
            parts.append(
                f"{dense.width} {after['activation'].fn}"
                + (" + BN" if "batch_norm" in after else "")
                + (f" + dropout {after['dropout'].rate:g}" if "dropout" in after else "")
            )
        return " \u2192 ".join(parts)


def _conv_block(j: int, k: int, shape: tuple[int, int, int], c_out: int) -> list[Layer]:
    side, _, c_in = shape
    name, pooled = f"conv_{j}", (side // 2, side // 2, c_out)
    kernel = Weight(f"{name}.kernel", (k, k, c_in, c_out), "glorot_uniform")
    bias = Weight(f"{name}.bias", (c_out,), "zeros")
    return [
        Layer("conv", name, (side, side, c_out), (kernel, bias)),
        Layer("max_pool", f"max_pool_{j}", pooled),
        Layer("activation", f"relu_{j}", pooled, fn="relu"),
    ]


def _dense_block(i: int, fan_in: int, out: int, recipe: Recipe, last: bool) -> list[Layer]:
    name, shape = f"dense_{i}", (out,)
    kernel = Weight(f"{name}.kernel", (fan_in, out), "glorot_uniform")
    layers = [Layer("dense", name, shape, (kernel, Weight(f"{name}.bias", shape, "zeros")))]
    if last:
        return layers + [Layer("activation", "softmax", shape, fn="softmax")]
    if recipe.batch_norm:
        stats = (("gamma", "ones", True), ("beta", "zeros", True))
        stats += (("moving_mean", "zeros", False), ("moving_variance", "ones", False))
        bn = tuple(Weight(f"bn_{i}.{role}", shape, init, t) for role, init, t in stats)
        layers.append(Layer("batch_norm", f"bn_{i}", shape, bn))
    layers.append(Layer("activation", f"activation_{i}", shape, fn=recipe.activation))
    if recipe.dropout > 0:
        layers.append(Layer("dropout", f"dropout_{i}", shape, rate=float(recipe.dropout)))
    return layers


def network(recipe: Recipe, n_classes: int = 10, side: int = SIDE) -> Network:
    """The walk of ``recipe``'s layers for ``side`` x ``side`` grey images and ``n_classes``."""
    shape: tuple[int, int, int] = (side, side, 1)
    layers: list[Layer] = []
    if recipe.kind == "cnn":
        for j, c_out in enumerate(recipe.conv_channels):
            layers += _conv_block(j, recipe.kernel_size, shape, c_out)
            shape = layers[-1].shape  # type: ignore[assignment]
    width = math.prod(shape)
    layers.append(Layer("flatten", "flatten", (width,)))
    sizes = [*recipe.hidden, n_classes]
    for i, out in enumerate(sizes):
        layers += _dense_block(i, width, out, recipe, last=i == len(sizes) - 1)
        width = out
    return Network((side, side, 1), tuple(layers))
