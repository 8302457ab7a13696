"""Training health check: the notebook's lesson about unscaled inputs, made automatic.

The notebook trains on raw pixels first: with values 0..255 (std ~78) the first layer's outputs
are ~78 times too large, SGD at learning_rate 0.01 blows the weights up, and the loss turns NaN
in the first epoch (test accuracy ~10 %). Standardizing the inputs fixes it. This module turns
that lesson into a check on each epoch's numbers:

* diverged: the loss (or val_loss) is NaN or infinite, or exploded past 1000 (a mean
  cross-entropy that large means the logits blew up; on full MNIST raw pixels give ~2e16 in
  epoch 1, then the dead network sits at 2.30);
* stuck: the loss is at or above ln(10) = 2.30, the loss of a uniform guess over 10 classes,
  while the accuracy is near chance (within 5 points of 10 %), on the training or the
  validation numbers.

Pure functions on history numbers; ``train.fit`` warns (or stops, if asked) with the message.

>>> from mnistlab.recipe import Recipe
>>> w = check_epoch({"epoch": 1, "loss": float("nan"), "accuracy": 0.099}, Recipe(normalize="none"),
...                 pixel_std=78.57)
>>> w.kind, "standardize" in w.message
('diverged', True)
>>> check_epoch({"epoch": 1, "loss": 0.25, "accuracy": 0.93}, Recipe()) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mnistlab.recipe import Recipe
from mnistlab.recipe.optimizers import OPTIMIZERS

NEAR_CHANCE_MARGIN = 0.05
EXPLODED = 1e3  # no sane mean cross-entropy gets here (a uniform guess is 2.30)
CAUSE, FIX = " Likely cause: ", " Fix: "  # how a message names its diagnosis (see ``parts``)


def suggested_lr(recipe: Recipe) -> float:
    """A tenth of the recipe's learning rate, capped at its optimizer's working rate (Keras'
    default: the top of the range in which it trains these networks; a tenth of 10 is no advice).

    >>> suggested_lr(Recipe(learning_rate=10)), suggested_lr(Recipe(learning_rate=0.05))
    (0.01, 0.005)
    """
    return min(recipe.learning_rate / 10, OPTIMIZERS[recipe.optimizer].working_lr)


@dataclass(frozen=True)
class HealthWarning:
    kind: str  # "diverged" or "stuck"
    epoch: int
    message: str


def chance_loss(n_classes: int = 10) -> float:
    """Cross-entropy of a uniform guess: ln(n_classes), 2.3026 for 10 classes."""
    return math.log(n_classes)


def _bad(value: Any) -> bool:
    return value is not None and (not math.isfinite(value) or abs(value) > EXPLODED)


def likely_cause(recipe: Recipe, pixel_std: float | None = None) -> tuple[str, str]:
    """(cause, fix) in the notebook's terms for a run that diverged or is stuck."""
    lr = recipe.learning_rate
    if recipe.normalize == "none":
        std = f"std {pixel_std:.1f}" if pixel_std is not None else "std ~78 on MNIST"
        cause = (
            f"the inputs are unscaled raw pixels (normalize='none': values 0..255, {std}), "
            f"so the first layer's outputs and gradients are that many times too large for "
            f"learning_rate {lr:g}"
        )
        fix = (
            "standardize the inputs (normalize='standardize', i.e. --normalize standardize), "
            f"or at least lower learning_rate (e.g. {suggested_lr(recipe):g})"
        )
    else:
        cause = f"learning_rate {lr:g} is too large for this recipe ({recipe.optimizer})"
        fix = f"lower learning_rate (e.g. {suggested_lr(recipe):g})"
    return cause, fix


def check_epoch(
    row: dict[str, Any], recipe: Recipe, pixel_std: float | None = None, n_classes: int = 10
) -> HealthWarning | None:
    """The warning for one history row (``epoch``, ``loss``, ``accuracy``, optional
    ``val_loss``), or None when the numbers look healthy."""
    epoch = int(row.get("epoch", 0))
    loss, acc = row.get("loss"), row.get("accuracy")
    cause, fix = likely_cause(recipe, pixel_std)
    if _bad(loss) or _bad(row.get("val_loss")):
        which = "loss" if _bad(loss) else "val_loss"
        return HealthWarning(
            "diverged",
            epoch,
            f"epoch {epoch}: the {which} is {row.get(which):.4g}: training diverged "
            f"(the weights blew up).{CAUSE}{cause}.{FIX}{fix}.",
        )
    chance = 1.0 / n_classes
    floor = round(chance_loss(n_classes), 2)  # 2.30: the level the notebook talks about
    # The val pair too: rmsprop at lr 0.01 thrashes to 17 % train accuracy but 12 % on val.
    for which, pair_loss, pair_acc in (
        ("loss", loss, acc),
        ("val_loss", row.get("val_loss"), row.get("val_accuracy")),
    ):
        if (
            pair_loss is None
            or pair_acc is None
            or pair_loss < floor
            or pair_acc > chance + NEAR_CHANCE_MARGIN
        ):
            continue
        return HealthWarning(
            "stuck",
            epoch,
            f"epoch {epoch}: the {which} is stuck at {pair_loss:.3f} (>= ln({n_classes}) "
            f"= {chance_loss(n_classes):.2f}, the loss of a uniform guess) with "
            f"{pair_acc:.1%} accuracy (chance: {chance:.0%}): the network learns "
            f"nothing.{CAUSE}{cause}.{FIX}{fix}.",
        )
    return None


def parts(message: str) -> tuple[str, str | None, str | None]:
    """(what happened, likely cause, fix) of a warning's message, as metrics.json stores it;
    a message in other words is all "what happened".

    >>> w = check_epoch({"epoch": 2, "loss": float("inf"), "accuracy": 0.1}, Recipe(lr=0.5))
    >>> parts(w.message)[1:]
    ('learning_rate 0.5 is too large for this recipe (sgd)', 'lower learning_rate (e.g. 0.01)')
    >>> parts("epoch 3: odd")
    ('epoch 3: odd', None, None)
    """
    what, cause_sep, rest = message.partition(CAUSE)
    cause, fix_sep, fix = rest.partition(FIX)
    if not cause_sep or not fix_sep:
        return message, None, None
    return what, cause.removesuffix("."), fix.removesuffix(".")


def check_history(
    history: Iterable[dict[str, Any]],
    recipe: Recipe,
    pixel_std: float | None = None,
    n_classes: int = 10,
) -> list[HealthWarning]:
    """The first warning of each kind over a whole history (what a user needs to read once)."""
    seen: dict[str, HealthWarning] = {}
    for row in history:
        w = check_epoch(row, recipe, pixel_std, n_classes)
        if w is not None and w.kind not in seen:
            seen[w.kind] = w
    return list(seen.values())
