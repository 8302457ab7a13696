"""The recipe's network as a torch ``nn.Module``, loaded from and saved to Keras-named weights.

The module is built from the network walk (``mnistlab.engines.arch``), and weights travel
through mnistlab as a ``dict[str, np.ndarray]`` in its Keras names and layouts: a Dense kernel
is (fan_in, fan_out), a conv kernel is HWIO, and a CNN flattens in (h, w, c) order. This module
is the only place that converts those layouts to torch's (a Linear weight is (out, in), a conv
weight OIHW, tensors NCHW), so a run trained by any engine loads here unchanged. Imported
lazily: it pulls in torch.

>>> from mnistlab.recipe import Recipe
>>> from mnistlab.engines.init import init_weights
>>> r = Recipe(kind="cnn", conv_channels=[4], hidden=[8])
>>> net = build_model(r, init_weights(r))
>>> import torch
>>> tuple(net(torch.zeros(2, 784)).shape)
(2, 10)
>>> sorted(export_weights(net)) == sorted(init_weights(r))
True
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mnistlab.engines.arch import SIDE, network
from mnistlab.engines.optim import BN_EPSILON, BN_MOMENTUM
from mnistlab.errors import RunError
from mnistlab.recipe import Recipe

ACTIVATIONS = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,  # exact erf form, as Keras' gelu(approximate=False)
}


class KerasBatchNorm(nn.Module):
    """Keras' BatchNormalization on (N, C): biased batch variance everywhere.

    torch's BatchNorm1d updates its running variance with the *unbiased* estimate, Keras with the
    biased one; the difference is visible in the moving statistics, so this small layer keeps
    Keras' arithmetic exactly.
    """

    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))
        self.beta = nn.Parameter(torch.zeros(width))
        self.register_buffer("moving_mean", torch.zeros(width))
        self.register_buffer("moving_variance", torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = x.mean(0)
            var = x.var(0, unbiased=False)
            with torch.no_grad():
                self.moving_mean.mul_(BN_MOMENTUM).add_(mean.detach(), alpha=1 - BN_MOMENTUM)
                self.moving_variance.mul_(BN_MOMENTUM).add_(var.detach(), alpha=1 - BN_MOMENTUM)
        else:
            mean, var = self.moving_mean, self.moving_variance
        return (x - mean) * torch.rsqrt(var + BN_EPSILON) * self.gamma + self.beta


class Net(nn.Module):
    """Optional conv blocks (conv 'same', 2x2 max-pool, relu), then Dense layers, then logits.

    The output layer returns logits; softmax lives in the loss (stable) and in ``predict``.
    Dropout multiplies hidden layer i's output by ``self.masks[i]`` (0 or 1/(1-rate)), set by
    the engine each step from ``engines.masks.dropout_keys``: the fast engine's very masks.
    """

    def __init__(self, recipe: Recipe, n_classes: int = 10, side: int = SIDE):
        super().__init__()
        self.arch = arch = network(recipe, n_classes, side)
        self.side = side
        self.act = ACTIVATIONS[recipe.activation]
        self.dropout = float(recipe.dropout)
        self.masks: list[torch.Tensor] = []
        self.convs = nn.ModuleList()
        for conv in arch.of("conv"):
            k, _, c_in, c_out = conv.weights[0].shape
            self.convs.append(nn.Conv2d(c_in, c_out, k, padding="same"))
        self.dense = nn.ModuleList(nn.Linear(*d.weights[0].shape) for d in arch.of("dense"))
        self.bns = nn.ModuleList(KerasBatchNorm(bn.width) for bn in arch.of("batch_norm"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.convs:
            # channels_last (NHWC) runs oneDNN's convolutions ~35 % faster on the CPU (measured,
            # batch 128, [32, 64] channels) and makes the Keras-order flatten below a view.
            x = x.view(-1, 1, self.side, self.side).contiguous(memory_format=torch.channels_last)
            for conv in self.convs:
                # relu(max_pool(z)) == max_pool(relu(z)) (relu is non-decreasing), and this
                # order runs relu and its backward on 4x fewer values: those memory-bound
                # passes were ~10 % of a small CNN's training step on 2 cores.
                x = F.relu(F.max_pool2d(conv(x), 2))
            # Keras flattens channels-last: (h, w, c) order keeps dense_0's kernel layout.
            x = x.permute(0, 2, 3, 1).flatten(1)
        last = len(self.dense) - 1
        for i, layer in enumerate(self.dense):
            x = layer(x)
            if i == last:
                break
            if self.bns:
                x = self.bns[i](x)
            x = self.act(x)
            if self.training and self.dropout > 0:
                x = x * self.masks[i]
        return x

    def l2_penalty(self) -> torch.Tensor:
        """sum(kernel**2) over Dense kernels (Keras' kernel_regularizer on the Dense layers)."""
        return torch.stack([layer.weight.square().sum() for layer in self.dense]).sum()


# Keras <-> torch kernel layouts, by the kernel's layer: conv_j or dense_i.
_TO_TORCH = {"conv": (3, 2, 0, 1), "dense": (1, 0)}  # HWIO -> OIHW; (in, out) -> (out, in)
_TO_KERAS = {"conv": (2, 3, 1, 0), "dense": (1, 0)}
_ATTRIBUTE = {"kernel": "weight"}  # Keras role -> torch attribute, where they differ


def _permute(name: str, value: np.ndarray, perms: dict[str, tuple[int, ...]]) -> np.ndarray:
    layer, role = name.split(".")
    return value.transpose(*perms[layer.rsplit("_", 1)[0]]) if role == "kernel" else value


def _torch_layout(name: str, value: np.ndarray) -> np.ndarray:
    return _permute(name, value, _TO_TORCH)


def _keras_layout(name: str, value: np.ndarray) -> np.ndarray:
    return _permute(name, value, _TO_KERAS)


def _tensor_names(net: Net) -> dict[str, torch.Tensor]:
    """Keras weight name -> the module's tensor holding it, in the network walk's order."""
    modules = {"conv": net.convs, "dense": net.dense, "batch_norm": net.bns}
    return {
        w.name: getattr(modules[layer.kind][layer.index], _ATTRIBUTE.get(w.role, w.role))
        for layer in net.arch.layers
        for w in layer.weights
    }


def load_weights(net: Net, weights: dict[str, np.ndarray]) -> None:
    """Copy Keras-named arrays into ``net``; names and shapes must match exactly."""
    tensors = _tensor_names(net)
    missing = sorted(set(tensors) - set(weights))
    extra = sorted(set(weights) - set(tensors))
    if missing or extra:
        raise RunError(
            f"weights do not fit the recipe's network: missing {missing}, unexpected {extra}"
        )
    with torch.no_grad():
        for name, tensor in tensors.items():
            value = np.asarray(_torch_layout(name, np.asarray(weights[name])), dtype=np.float32)
            if tuple(value.shape) != tuple(tensor.shape):
                raise RunError(
                    f"weight {name!r}: shape {np.asarray(weights[name]).shape} does "
                    f"not fit the recipe's network"
                )
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def export_weights(net: Net) -> dict[str, np.ndarray]:
    """The module's weights as Keras-named, Keras-layout float32 NumPy arrays."""
    return {
        name: np.ascontiguousarray(_keras_layout(name, t.detach().cpu().numpy()))
        for name, t in _tensor_names(net).items()
    }


def trainable(net: Net) -> dict[str, torch.Tensor]:
    """Keras name -> parameter, for the optimizer (moving statistics excluded)."""
    return {k: v for k, v in _tensor_names(net).items() if isinstance(v, nn.Parameter)}


def build_model(recipe: Recipe, weights: dict[str, np.ndarray], device: str = "cpu") -> Net:
    """The recipe's network on ``device`` holding ``weights``."""
    net = Net(recipe)
    load_weights(net, weights)
    net = net.to(device)
    if net.convs:
        net = net.to(memory_format=torch.channels_last)  # see Net.forward
    return net
