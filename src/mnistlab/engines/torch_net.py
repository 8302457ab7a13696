"""The recipe's network as a torch ``nn.Module``, loaded from and saved to Keras-named weights.

Weights travel through mnistlab as a ``dict[str, np.ndarray]`` in Keras names and layouts (see
``mnistlab.engines.init``): a Dense kernel is (fan_in, fan_out), a conv kernel is HWIO, and a
CNN flattens in (h, w, c) order. This module is the only place that converts those layouts to
torch's (a Linear weight is (out, in), a conv weight OIHW, tensors NCHW), so a run trained by
any engine loads here unchanged. Imported lazily: it pulls in torch.

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
    """Optional conv blocks (conv 'same' + relu + 2x2 max-pool), then Dense layers, then logits.

    The output layer returns logits; softmax lives in the loss (stable) and in ``predict``.
    Dropout multiplies hidden layer i's output by ``self.masks[i]`` (0 or 1/(1-rate)), set by
    the engine each step from ``engines.masks.dropout_keys``: the fast engine's very masks.
    """

    def __init__(self, recipe: Recipe, n_inputs: int = 784, n_classes: int = 10):
        super().__init__()
        self.kind = recipe.kind
        self.side = int(round(n_inputs**0.5))
        self.act = ACTIVATIONS[recipe.activation]
        self.dropout = float(recipe.dropout)
        self.masks: list[torch.Tensor] = []
        self.convs = nn.ModuleList()
        c_in = 1
        for c_out in recipe.conv_channels if recipe.kind == "cnn" else []:
            k = recipe.kernel_size
            self.convs.append(nn.Conv2d(c_in, c_out, k, padding="same"))
            c_in = c_out
        from mnistlab.engines.init import flat_features

        width = flat_features(recipe, self.side) if recipe.kind == "cnn" else n_inputs
        self.dense = nn.ModuleList()
        self.bns = nn.ModuleList()
        for out in [*recipe.hidden, n_classes]:
            self.dense.append(nn.Linear(width, out))
            width = out
        if recipe.batch_norm:
            self.bns.extend(KerasBatchNorm(h) for h in recipe.hidden)

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


def _torch_layout(name: str, value: np.ndarray) -> np.ndarray:
    if name.endswith(".kernel"):
        if name.startswith("conv_"):
            return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        return value.T  # (in, out) -> (out, in)
    return value


def _keras_layout(name: str, value: np.ndarray) -> np.ndarray:
    if name.endswith(".kernel"):
        if name.startswith("conv_"):
            return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        return value.T
    return value


def _tensor_names(net: Net) -> dict[str, torch.Tensor]:
    """Keras weight name -> the module's tensor holding it."""
    out: dict[str, torch.Tensor] = {}
    for j, conv in enumerate(net.convs):
        out[f"conv_{j}.kernel"], out[f"conv_{j}.bias"] = conv.weight, conv.bias
    for i, layer in enumerate(net.dense):
        out[f"dense_{i}.kernel"], out[f"dense_{i}.bias"] = layer.weight, layer.bias
    for i, bn in enumerate(net.bns):
        out[f"bn_{i}.gamma"], out[f"bn_{i}.beta"] = bn.gamma, bn.beta
        out[f"bn_{i}.moving_mean"] = bn.moving_mean
        out[f"bn_{i}.moving_variance"] = bn.moving_variance
    return out


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
