"""Exercise: build the tutorial's network and its optimizer, in mnistlab, PyTorch or Keras.

The target is the notebook's recipe itself, ``Recipe()``: its network walk (784 → 3 x Dense(128,
relu) → Dense(10, softmax)) and its SGD settings, so the check and the trainer cannot disagree
on what "the tutorial's network" is. The learner's object is read as layers (see
``check.frameworks``) and compared block by block: each Dense with the activation after it.

A softmax belongs at the end, unless the loss applies it: a PyTorch network that ends on its
Linear layer is right when trained with ``nn.CrossEntropyLoss`` (pass ``loss=``), and a softmax
followed by that loss is a softmax applied twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mnistlab.check import frameworks as fw
from mnistlab.check.frameworks import Loss, Optim, Step
from mnistlab.check.verdict import Off, Result, given, refused, verdict
from mnistlab.engines.arch import network
from mnistlab.recipe import Recipe

EXERCISE = "model"
NET_HINT = "compare your layers, one by one, with the network described above the exercise"
OPT_HINT = "the tutorial's retraining cell spells out every parameter of its SGD"
# Recipe fields that change training besides the layers and the optimizer's own settings.
RECIPE_EXTRAS = ("l2", "max_norm", "weight_decay", "schedule", "warmup_epochs", "label_smoothing")


@dataclass
class Block:
    """A Dense layer with the activation after it and anything else before the next Dense."""

    dense: Step
    fn: str = "linear"
    axis: int | None = None
    extras: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return f"{self.dense.width} {self.fn}" + "".join(f" + {e}" for e in self.extras)


def model(net, optimizer=None, *, loss=None) -> Result:
    """Check the learner's network: a mnistlab ``Recipe`` (its optimizer is in it), a PyTorch
    ``nn.Module`` with its ``optimizer`` (and ``loss``, e.g. ``nn.CrossEntropyLoss()``), or a
    Keras model (compiled: its optimizer and loss are read from it)."""
    given(net, "model", "build the network in the exercise cell")
    given(optimizer, "optimizer", "create the optimizer in the exercise cell (None for a Recipe)")
    try:
        kind = fw.framework(net)
        steps, opt, used_loss, notes, problems = _read(kind, net, optimizer, loss)
    except Off as off:
        return refused(EXERCISE, off)
    target = Recipe().resolved()
    blocks, expected = _blocks(steps), _blocks(fw.recipe_steps(target))
    problems = problems + _net_problems(blocks, expected, kind)
    problems += _output_problems(blocks, used_loss, kind, notes)
    opt_problems = _optim_problems(opt, fw.recipe_optim(target), kind, net, notes)
    hint = "; ".join([NET_HINT] * bool(problems) + [OPT_HINT] * bool(opt_problems)) or None
    line = " → ".join([str(blocks[0].dense.fan_in if blocks else "?")] + [b.text for b in blocks])
    settings = opt and {k: v for k, v in vars(opt).items() if k != "params"}
    details = {"framework": kind, "network": line, "optimizer": settings}
    summary = f"{line}, {_optim_text(opt)}" if opt else line
    return verdict(EXERCISE, problems + opt_problems, hint, details, notes, summary)


def _read(kind: str, net, optimizer, loss):
    """(steps, optimizer, loss, notes, problems) of the learner's objects."""
    if kind == "recipe":
        recipe = net if isinstance(net, Recipe) else net.recipe
        notes = []
        if optimizer is not None:
            notes.append("a Recipe names its own optimizer: the optimizer argument is ignored")
        problems = [
            f"recipe field {name} = {getattr(recipe.resolved(), name)!r} is not the tutorial's"
            for name in RECIPE_EXTRAS
            if getattr(recipe.resolved(), name) != getattr(Recipe().resolved(), name)
        ]
        return fw.recipe_steps(recipe), fw.recipe_optim(recipe), None, notes, problems
    if kind == "torch":
        tutorial = network(Recipe())
        steps, notes = fw.torch_steps(net)
        failed = fw.torch_forward(net, tutorial.n_inputs, tutorial.n_classes)
        opt = fw.torch_optim(optimizer) if optimizer is not None else None
        used = fw.torch_loss(loss) if loss is not None else None
        return steps, opt, used, notes, [failed] if failed else []
    steps, notes = fw.keras_steps(net)
    optimizer = optimizer if optimizer is not None else getattr(net, "optimizer", None)
    loss = loss if loss is not None else getattr(net, "loss", None)
    opt = fw.keras_optim(optimizer) if optimizer is not None else None
    return steps, opt, fw.keras_loss(loss) if loss is not None else None, notes, []


def _blocks(steps: list[Step]) -> list[Block]:
    blocks: list[Block] = []
    extras_before: list[str] = []
    for step in steps:
        if step.kind == "dense":
            blocks.append(Block(step))
        elif not blocks:
            extras_before.append(step.text)
        elif step.kind == "activation" and blocks[-1].fn == "linear":
            blocks[-1].fn, blocks[-1].axis = step.fn, step.axis
        else:
            blocks[-1].extras.append(step.text)
    if blocks and extras_before:
        blocks[0].extras = [f"{e} before it" for e in extras_before] + blocks[0].extras
    return blocks


def _net_problems(blocks: list[Block], expected: list[Block], kind: str) -> list[str]:
    if not blocks:
        layer = "Linear" if kind == "torch" else "Dense"
        return [f"no {layer} layer found: the tutorial's network is a stack of them"]
    problems = []
    hidden, want = blocks[:-1], expected[:-1]
    if len(hidden) != len(want):
        problems.append(f"{len(hidden)} hidden layers (the layers before the output layer)")
    first = blocks[0].dense.fan_in
    if first is not None and first != expected[0].dense.fan_in:
        problems.append(f"the first layer takes {first} values per image, not one per pixel")
    for i, (got, ref) in enumerate(zip(hidden, want), 1):
        if got.dense.width != ref.dense.width:
            problems.append(f"hidden layer {i} has {got.dense.width} units")
        if got.fn != ref.fn:
            said = "no activation" if got.fn == "linear" else f"the activation {got.fn}"
            problems.append(f"hidden layer {i} has {said}")
    extras: dict[str, list[int]] = {}
    for i, b in enumerate(blocks, 1):
        for extra in b.extras:
            extras.setdefault(extra, []).append(i)
    for extra, where in extras.items():
        problems.append(
            f"{extra} after {_layers_text(where, len(blocks))}: not in the tutorial's network "
            "(keep such ideas for 'try to beat this')"
        )
    out = blocks[-1].dense.width
    if out != expected[-1].dense.width:
        problems.append(f"the output layer has {out} units: one per class is needed")
    return problems


def _layers_text(numbers: list[int], n_blocks: int) -> str:
    """'hidden layers 1, 2 and 3', 'hidden layer 2 and the output layer', ..."""
    hidden = [str(i) for i in numbers if i < n_blocks]
    parts = []
    if hidden:
        listed = hidden[0] if len(hidden) == 1 else f"{', '.join(hidden[:-1])} and {hidden[-1]}"
        parts.append(f"hidden layer{'s' * (len(hidden) > 1)} {listed}")
    if n_blocks in numbers:
        parts.append("the output layer")
    return " and ".join(parts)


def _output_problems(blocks: list[Block], loss: Loss | None, kind: str, notes) -> list[str]:
    if not blocks:
        return []
    fn, axis = blocks[-1].fn, blocks[-1].axis
    if loss is not None and loss.takes == "other":
        return [f"the loss {loss.name} is not a cross-entropy over the classes"]
    if fn == "softmax":
        if axis is not None and axis not in (1, -1):
            return [f"the softmax runs over dimension {axis}: across the batch, not the classes"]
        if loss is not None and loss.takes == "logits":
            return [f"a softmax ends the network and {loss.name} applies one again: twice"]
        if kind == "torch" and loss is None:
            notes.append(
                "train it with a loss that takes probabilities (nn.NLLLoss on their log); "
                "nn.CrossEntropyLoss would apply a second softmax"
            )
        return []
    if fn == "log_softmax" and kind == "torch":
        return []
    if fn == "linear" and loss is not None and loss.takes == "logits":
        notes.append(f"the softmax is inside the loss ({loss.name}), as it should be then")
        return []
    said = "no softmax" if fn == "linear" else f"{fn}, not a softmax"
    problem = f"the output layer has {said}: its outputs are not probabilities that sum to one" + (
        " (trained with nn.CrossEntropyLoss? then pass loss=... to this check)"
    ) * (kind == "torch" and fn == "linear")
    return [problem]


def _optim_problems(opt: Optim | None, want: Optim, kind: str, net, notes) -> list[str]:
    if opt is None:
        how = "compile the model with it" if kind == "keras" else "pass it: check.model(model, opt)"
        return [f"no optimizer to check: {how}"]
    if opt.name != want.name:
        return [f"the optimizer is {opt.name}, not the tutorial's"]
    problems = [
        f"{label} is {value}"
        for label, value, ref in (
            ("the learning rate", opt.learning_rate, want.learning_rate),
            ("momentum", opt.momentum, want.momentum),
            ("nesterov", opt.nesterov, want.nesterov),
        )
        if value is not None and not _same(value, ref)
    ]
    if opt.decay is not None and not _same(opt.decay, want.decay):
        problems.append(f"decay is {opt.decay:g}")
    if opt.decay is None and not problems:
        notes.append(
            f"SGD in {kind} has no decay argument; the tutorial's decay={want.decay:g} "
            "(lr / (1 + decay × steps)) changes the step by under 1 % over 5 epochs"
        )
    if kind != "recipe" and opt.weight_decay:
        problems.append(
            f"weight_decay is {opt.weight_decay:g}: that is an L2 pull on the weights, not the "
            "tutorial's decay (which shrinks the learning rate)"
        )
    if kind == "torch" and opt.params is not None:
        mine = {id(p) for p in net.parameters()}
        if {id(p) for p in opt.params} != mine:
            problems.append("the optimizer does not update this model's parameters")
    return problems


def _same(value: Any, ref: Any) -> bool:
    if isinstance(ref, bool) or isinstance(value, bool):
        return bool(value) == bool(ref)
    return math.isclose(float(value), float(ref), rel_tol=1e-6)


def _optim_text(opt: Optim) -> str:
    parts = [f"lr {opt.learning_rate:.3g}"]
    if opt.momentum is not None:
        parts.append(f"momentum {opt.momentum:.3g}")
    if opt.nesterov:
        parts.append("nesterov")
    if opt.decay is not None:
        parts.append(f"decay {opt.decay:g}")
    return f"{opt.name.upper()}({', '.join(parts)})"
