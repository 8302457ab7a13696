"""Exercises: train on raw pixels and watch it fail; then try other learning rates.

A loss history (a mnistlab run, a Keras History, a list of losses) gets the diagnosis of the
training health check (``mnistlab.training.health``): diverged (the loss exploded or turned
NaN), stuck at ln 10 = 2.30 (the loss of a uniform guess over 10 classes, with chance accuracy),
or learning. A history of losses alone, with no accuracy, is stuck when its loss stays at or
above ln 10.

>>> diagnose([{"epoch": 1, "loss": float("nan")}, {"epoch": 2, "loss": 2.3026}]).kind
'diverged'
>>> d = diagnose([{"epoch": 1, "loss": 0.9, "accuracy": 0.7}, {"epoch": 2, "loss": 0.4}])
>>> d.kind, d.text
('learning', 'learning: the loss went from 0.9 to 0.4')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mnistlab.check.inputs import history_rows
from mnistlab.check.verdict import Off, Result, given, refused, verdict
from mnistlab.recipe import Recipe
from mnistlab.training import health


@dataclass(frozen=True)
class Diagnosis:
    kind: str  # "diverged", "stuck" or "learning"
    epoch: int  # where it went wrong (the last epoch for "learning")
    text: str


def diagnose(rows: list[dict[str, Any]]) -> Diagnosis:
    """The health check's verdict on a whole history, in a sentence."""
    warnings = {w.kind: w for w in health.check_history(rows, Recipe())}
    last = rows[-1]
    floor = round(health.chance_loss(), 2)
    now = health.check_epoch(last, Recipe())
    stuck_now = (now is not None and now.kind == "stuck") or (
        last.get("accuracy") is None and _finite(last["loss"]) and last["loss"] >= floor
    )
    chance = f"ln 10 = {health.chance_loss():.2f}, a uniform guess over 10 classes"
    if "diverged" in warnings:
        w = warnings["diverged"]
        row = rows[w.epoch - 1] if 0 < w.epoch <= len(rows) else last
        text = f"diverged: the loss reached {row['loss']:.3g} in epoch {w.epoch}"
        if now is not None and now.kind == "diverged" and last is not row:
            loss_bad = health.check_epoch({**last, "val_loss": None}, Recipe())
            which = "loss" if loss_bad and loss_bad.kind == "diverged" else "val_loss"
            text += f", and in epoch {last['epoch']} the {which} is still {last[which]:.3g}"
        elif stuck_now:
            text += f", then stuck at {last['loss']:.3f} ({chance})"
        return Diagnosis("diverged", w.epoch, text)
    if stuck_now:
        acc = last.get("accuracy")
        with_acc = f" with {acc:.1%} accuracy" if acc is not None else ""
        return Diagnosis(
            "stuck", int(last["epoch"]), f"stuck: loss {last['loss']:.3f}{with_acc} ({chance})"
        )
    acc = last.get("accuracy")
    text = f"learning: the loss went from {rows[0]['loss']:.3g} to {last['loss']:.3g}"
    return Diagnosis(
        "learning", int(last["epoch"]), text + (f", accuracy {acc:.1%}" if acc is not None else "")
    )


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


def _run_recipe(history) -> Recipe | None:
    recipe = getattr(history, "recipe", None)
    return recipe if isinstance(recipe, Recipe) else None


def raw_pixels(history) -> Result:
    """Check a training on raw pixels (0..255) with the tutorial's network and SGD: it should
    fail, and the diagnosis says how."""
    given(history, "raw", "train the network on raw pixels in the exercise cell")
    exercise = "raw pixels"
    try:
        rows = history_rows(history, "raw")
    except Off as off:
        return refused(exercise, off)
    d = diagnose(rows)
    problems = []
    recipe = _run_recipe(history)
    if recipe is not None and recipe.normalize != "none":
        problems.append(f"this run scaled its inputs (normalize={recipe.normalize!r})")
    if d.kind == "learning":
        problems.append(
            f"this training is {d.text}; on raw pixels with the tutorial's SGD it fails"
        )
    hint = "train on the pixels exactly as loaded (0..255), with the tutorial's network and SGD"
    details = {"diagnosis": d.kind, "epoch": d.epoch, "losses": [r["loss"] for r in rows]}
    return verdict(exercise, problems, hint, details, summary=d.text)


def learning_rates(runs) -> Result:
    """Check the learning-rate experiment: ``runs`` maps each learning rate tried to its
    history on raw pixels (or is a list of mnistlab runs, whose recipes say their rate)."""
    given(runs, "lr_runs", "train on raw pixels with other learning rates in the exercise cell")
    exercise = "learning rates"
    try:
        tried = _by_rate(runs)
        rows = {lr: history_rows(h, f"lr_runs[{lr:g}]") for lr, h in tried.items()}
    except Off as off:
        return refused(exercise, off)
    tutorial = Recipe().learning_rate
    problems, notes, details = [], [], {}
    for lr, history in tried.items():
        d = diagnose(rows[lr])
        details[lr] = {"diagnosis": d.kind, "losses": [r["loss"] for r in rows[lr]]}
        notes.append(f"lr {lr:g}: {d.text}")
        recipe = _run_recipe(history)
        if recipe is not None and recipe.normalize != "none":
            problems.append(
                f"the run at lr {lr:g} scaled its inputs: this experiment is on raw pixels"
            )
        if recipe is not None and recipe.learning_rate != lr:
            problems.append(f"the run under lr {lr:g} trained with {recipe.learning_rate:g}")
    if len(tried) < 2:
        problems.append(f"{len(tried)} learning rate tried: compare at least two")
    elif min(tried) >= tutorial:
        rates = ", ".join(f"{lr:g}" for lr in sorted(tried))
        problems.append(f"you tried {rates}: none is smaller than the tutorial's {tutorial:g}")
    hint = "the tutorial's hunch is that the gradient step is too large: what does that suggest?"
    summary = f"{len(tried)} learning rates on raw pixels"
    return verdict(exercise, problems, hint, details, notes, summary)


def _by_rate(runs) -> dict[float, Any]:
    if isinstance(runs, dict):
        try:
            return {float(lr): h for lr, h in runs.items()}
        except (TypeError, ValueError):
            raise Off("lr_runs: its keys must be the learning rates (numbers)") from None
    items = list(runs) if isinstance(runs, (list, tuple)) else None
    if items is None:
        raise Off(
            f"lr_runs: a {type(runs).__name__}",
            "give a dict {learning_rate: history}, or a list of mnistlab runs",
        )
    out = {}
    for item in items:
        recipe = _run_recipe(item)
        if recipe is None:
            raise Off(
                "lr_runs: a list holds mnistlab runs only (their recipe says the rate)",
                "give a dict {learning_rate: history} for other histories",
            )
        out[float(recipe.learning_rate)] = item
    return out
