"""A network, read from the object whatever framework built it: a mnistlab Recipe, a PyTorch
``nn.Module`` or a Keras model, as one list of ``Step``s, with its optimizer and its loss.

PyTorch: the module is traced with ``torch.fx`` so activations written as functions in
``forward`` (``F.relu(x)``) count as much as ``nn.ReLU`` layers; a module fx cannot trace is
read from its layers in the order they were defined (said in a note). Keras: each layer's
config (``units``, ``activation``) and its built kernel's input width. A Recipe: the network
walk of ``mnistlab.engines.arch``. Nothing is read from source text.

>>> from mnistlab.recipe import Recipe
>>> [s.text for s in recipe_steps(Recipe(hidden=[64]))]
['Dense(784 → 64)', 'relu', 'Dense(64 → 10)', 'softmax']
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from mnistlab.check.verdict import Off
from mnistlab.engines.arch import network
from mnistlab.recipe import Recipe


@dataclass(frozen=True)
class Step:
    """One layer or operation: ``kind`` is dense, activation, dropout, batch_norm, flatten or
    other; a dense's ``width`` and ``fan_in`` (None: not built yet); an activation's ``fn``
    and, for a softmax, the ``axis`` it normalizes."""

    kind: str
    width: int | None = None
    fan_in: int | None = None
    fn: str = ""
    axis: int | None = None
    name: str = ""  # what it is called in its framework (for other, dropout, batch_norm)

    @property
    def text(self) -> str:
        if self.kind == "dense":
            return f"Dense({'?' if self.fan_in is None else self.fan_in} → {self.width})"
        return self.fn if self.kind == "activation" else self.name or self.kind


@dataclass(frozen=True)
class Optim:
    """An optimizer's class and the settings the tutorial names (None: it has no such one)."""

    name: str  # lower case: sgd, adam, ...
    learning_rate: float | None
    momentum: float | None = None
    nesterov: bool | None = None
    decay: float | None = None  # the old Keras lr decay; only a Recipe still has it
    weight_decay: float | None = None  # an L2 pull on the weights (torch, Keras 3)
    params: Any = None  # the parameters it updates (torch), to compare with the model's


@dataclass(frozen=True)
class Loss:
    name: str
    takes: str  # "probabilities", "logits", "log-probabilities" or "other"


def framework(net: Any) -> str:
    """ "recipe", "keras" or "torch" (a Keras model on the torch back end is a Keras model)."""

    if isinstance(net, Recipe) or isinstance(getattr(net, "recipe", None), Recipe):
        return "recipe"
    roots = {c.__module__.split(".")[0] for c in type(net).__mro__}
    if roots & {"keras", "tf_keras"}:
        return "keras"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(net, torch.nn.Module):
        return "torch"
    raise Off(
        f"a {type(net).__name__} is not a network this check reads",
        "give a mnistlab Recipe, a PyTorch nn.Module or a Keras model",
    )


# ---- mnistlab ---------------------------------------------------------------------------
def recipe_steps(recipe) -> list[Step]:

    steps = []
    for layer in network(recipe).layers:
        if layer.kind == "dense":
            fan_in = layer.weights[0].shape[0]
            steps.append(Step("dense", layer.width, fan_in))
        elif layer.kind == "activation":
            axis = -1 if layer.fn == "softmax" else None
            steps.append(Step("activation", fn=layer.fn, axis=axis))
        elif layer.kind == "dropout":
            steps.append(Step("dropout", name=f"dropout {layer.rate:g}"))
        elif layer.kind == "batch_norm":
            steps.append(Step("batch_norm", name="batch norm"))
        elif layer.kind != "flatten":
            steps.append(Step("other", name=layer.kind))
    return steps


def recipe_optim(recipe) -> Optim:
    r = recipe.resolved()
    return Optim(r.optimizer, r.learning_rate, r.momentum, r.nesterov, r.decay, r.weight_decay)


# ---- PyTorch ----------------------------------------------------------------------------
_TORCH_ACTIVATIONS = {
    "ReLU": "relu", "Softmax": "softmax", "LogSoftmax": "log_softmax", "Sigmoid": "sigmoid",
    "Tanh": "tanh", "GELU": "gelu", "LeakyReLU": "leaky_relu", "ELU": "elu", "SiLU": "silu",
}  # fmt: skip
_TORCH_FUNCTIONS = {"relu", "softmax", "log_softmax", "sigmoid", "tanh", "gelu", "leaky_relu",
                    "elu", "silu"}  # fmt: skip
_TORCH_FLATTEN = {"flatten", "view", "reshape"}


def torch_steps(net) -> tuple[list[Step], list[str]]:
    """(steps, notes) of a torch module, traced by torch.fx where it can be."""
    from torch import fx

    try:
        traced = fx.symbolic_trace(net)
    except Exception as exc:  # fx raises many types on data-dependent forward code
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        leaves = [m for m in net.modules() if not list(m.children())]
        note = (
            f"read from the layers in the order they were defined (torch.fx cannot trace its "
            f"forward: {first}); activations called as functions in forward are not seen"
        )
        return [s for m in leaves if (s := _torch_module_step(m)) is not None], [note]
    steps = []
    for node in traced.graph.nodes:
        step = None
        if node.op == "call_module":
            step = _torch_module_step(traced.get_submodule(node.target))
        elif node.op in ("call_function", "call_method"):
            step = _torch_function_step(node)
        if step is not None:
            steps.append(step)
    return steps, []


def _torch_module_step(m) -> Step | None:
    kind = type(m).__name__
    if kind == "Linear":
        return Step("dense", m.out_features, m.in_features)
    if kind in _TORCH_ACTIVATIONS:
        axis = getattr(m, "dim", None) if kind in ("Softmax", "LogSoftmax") else None
        return Step("activation", fn=_TORCH_ACTIVATIONS[kind], axis=axis)
    if kind in ("Flatten", "Identity", "Unflatten"):
        return None
    if kind.startswith("Dropout"):
        return Step("dropout", name=f"Dropout({m.p:g})")
    if kind.startswith("BatchNorm"):
        return Step("batch_norm", name=kind)
    return Step("other", name=kind)


def _torch_function_step(node) -> Step | None:
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if name in _TORCH_FUNCTIONS:
        axis = None
        if name in ("softmax", "log_softmax"):
            axis = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        return Step("activation", fn=name, axis=axis)
    if name == "dropout":
        return Step("dropout", name="dropout")
    if name == "linear":
        return Step("other", name="F.linear (a Dense layer written by hand)")
    return None  # flatten/view/reshape, size, arithmetic: no layer


def torch_forward(net, width: int, n_classes: int) -> str | None:
    """A problem when the module does not map a batch of ``width``-pixel rows to
    ``n_classes`` outputs (None when it does)."""
    import torch

    params = list(net.parameters())
    dtype = params[0].dtype if params else torch.float32
    x = torch.rand(2, width, generator=torch.Generator().manual_seed(0)).to(dtype)
    was = net.training
    try:
        net.eval()
        with torch.no_grad():
            out = net(x)
    except Exception as exc:  # whatever the learner's forward raises
        line = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return f"the model fails on a batch of 2 images of {width} pixels: {line}"
    finally:
        net.train(was)
    if tuple(getattr(out, "shape", ())) != (2, n_classes):
        got = tuple(getattr(out, "shape", ()))
        return f"for a batch of 2 images the model answers shape {got}, not (2, {n_classes})"
    return None


def torch_optim(optimizer) -> Optim:
    group = optimizer.param_groups[0]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    return Optim(
        type(optimizer).__name__.lower(),
        float(group["lr"]),
        float(group.get("momentum", 0.0)) if "momentum" in group else None,
        bool(group.get("nesterov", False)) if "nesterov" in group else None,
        None,
        float(group.get("weight_decay") or 0.0),
        params,
    )


def torch_loss(loss) -> Loss:
    name = type(loss).__name__
    takes = {"CrossEntropyLoss": "logits", "NLLLoss": "log-probabilities"}.get(name, "other")
    return Loss(name, takes)


# ---- Keras ------------------------------------------------------------------------------
_KERAS_SKIP = {"InputLayer", "Flatten", "Reshape"}


def keras_steps(net) -> tuple[list[Step], list[str]]:
    steps, notes = [], []
    for layer in net.layers:
        kind, config = type(layer).__name__, layer.get_config()
        if kind in _KERAS_SKIP:
            continue
        if kind == "Dense":
            built = getattr(layer, "built", False) and getattr(layer, "kernel", None) is not None
            fan_in = int(layer.kernel.shape[0]) if built else None
            if fan_in is None:
                notes.append(
                    "the model has no input size yet (no keras.Input): its first layer's "
                    "input width is not checked"
                )
            steps.append(Step("dense", int(config["units"]), fan_in))
            fn = _keras_fn(config.get("activation"))
            if fn != "linear":
                steps.append(Step("activation", fn=fn, axis=-1 if fn == "softmax" else None))
        elif kind in ("Activation", "ReLU", "Softmax"):
            fn = {"ReLU": "relu", "Softmax": "softmax"}.get(kind) or _keras_fn(config["activation"])
            steps.append(Step("activation", fn=fn, axis=config.get("axis", -1)))
        elif kind == "Dropout":
            steps.append(Step("dropout", name=f"Dropout({config['rate']:g})"))
        elif kind == "BatchNormalization":
            steps.append(Step("batch_norm", name=kind))
        else:
            steps.append(Step("other", name=kind))
    return steps, list(dict.fromkeys(notes))


def _keras_fn(activation: Any) -> str:
    if isinstance(activation, dict):  # a serialized function
        activation = activation.get("config", {}).get("name") or activation.get("class_name")
    return str(activation or "linear").lower()


def keras_optim(optimizer) -> Optim:
    config = optimizer.get_config()
    lr = config.get("learning_rate")
    return Optim(
        type(optimizer).__name__.lower(),
        float(lr) if isinstance(lr, (int, float)) else None,
        float(config["momentum"]) if "momentum" in config else None,
        bool(config["nesterov"]) if "nesterov" in config else None,
        None,
        float(config.get("weight_decay") or 0.0),
    )


def keras_loss(loss) -> Loss:
    if isinstance(loss, str):
        name, logits = loss, False
    else:
        config = loss.get_config() if hasattr(loss, "get_config") else {}
        name = config.get("name") or type(loss).__name__
        logits = bool(config.get("from_logits", False))
    cross_entropy = "categorical_crossentropy" in _snake(name)
    return Loss(name, ("logits" if logits else "probabilities") if cross_entropy else "other")


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out.replace("cross_entropy", "crossentropy")
