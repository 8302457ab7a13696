"""Which recipe fields a recipe reads: a conv field on an MLP, a plateau field without the
plateau schedule or an augmentation setting with augmentation off is kept in the recipe but
changes nothing.

Declared once, as data: field -> the condition under which training reads it, in words and as
a test. Fields not listed are read by every recipe. The run page shows only the fields that
apply, and anything else that lists a recipe can ask the same question.

>>> from mnistlab.recipe import Recipe
>>> applies(Recipe(), "kernel_size"), applies(Recipe(kind="cnn"), "kernel_size")
(False, True)
>>> not_applying(Recipe())[:4]
['conv_channels', 'kernel_size', 'weight_decay', 'step_size']
>>> WHEN["weight_decay"].words
'optimizer = adamw'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mnistlab.recipe.optimizers import OPTIMIZERS

AUGMENTATIONS = ("augment_shift", "augment_rotate", "augment_scale", "augment_elastic")


@dataclasses.dataclass(frozen=True)
class When:
    """A field's condition: ``words`` as a recipe.toml would say it, ``test`` on a recipe."""

    words: str
    test: Callable[[Any], bool]


def _optimizer_reads(field: str) -> When:
    users = [o.name for o in OPTIMIZERS.values() if field in o.reads]
    return When(
        f"optimizer = {' or '.join(users)}", lambda r: field in OPTIMIZERS[r.optimizer].reads
    )


def _schedule(*names: str) -> When:
    return When(f"schedule = {' or '.join(names)}", lambda r: r.schedule in names)


def augmenting(recipe) -> bool:
    """Whether any augmentation is on (a strength above 0)."""
    return any(getattr(recipe, name) > 0 for name in AUGMENTATIONS)


_CNN = When("kind = cnn", lambda r: r.kind == "cnn")
_PLATEAU = _schedule("plateau")
_STEPPED = _schedule("step", "exponential")
_EARLY = When("early_stopping > 0", lambda r: r.early_stopping > 0)
_AUGMENT = When("an augmentation is on (" + ", ".join(AUGMENTATIONS) + " above 0)", augmenting)

WHEN: dict[str, When] = {
    "conv_channels": _CNN,
    "kernel_size": _CNN,
    "momentum": _optimizer_reads("momentum"),
    "nesterov": _optimizer_reads("nesterov"),
    "weight_decay": _optimizer_reads("weight_decay"),
    "step_size": _STEPPED,
    "gamma": _STEPPED,
    "plateau_monitor": _PLATEAU,
    "plateau_factor": _PLATEAU,
    "plateau_patience": _PLATEAU,
    "plateau_min_delta": _PLATEAU,
    "plateau_cooldown": _PLATEAU,
    "min_lr": _PLATEAU,
    "monitor": _EARLY,
    "restore_best": _EARLY,
    **{name: _AUGMENT for name in AUGMENTATIONS},
    "augment_elastic_sigma": When("augment_elastic > 0", lambda r: r.augment_elastic > 0),
}


def applies(recipe, name: str) -> bool:
    """Whether training with ``recipe`` reads its field ``name``."""
    when = WHEN.get(name)
    return when is None or bool(when.test(recipe))


def not_applying(recipe) -> list[str]:
    """The fields ``recipe`` holds but training does not read, in declaration order."""
    return [f.name for f in dataclasses.fields(recipe) if not applies(recipe, f.name)]
