"""Exercise: try to beat the notebook's baseline, and tell a real gain from luck.

The learner's models (mnistlab runs, or test-set predictions from any framework) over two or
more seeds are compared with the baseline's runs on the very same test images, as ``mnistlab
compare`` does (``experiments.leaderboard``): per seed pair, the images one model gets right and
the other wrong; pooled over the pairs, an exact McNemar test. A gain passes when that test
says so (p < alpha) AND every seed pair shows it: a gain carried by one lucky seed is not a
gain of the idea. Nothing is random here: the same runs get the same verdict.

When the test cannot tell, the check says how many seeds it would take, as a power estimate:
the number of paired images for 80 % power at alpha (Connor's sample size for McNemar's test,
from the observed share of discordant images and the observed difference), in seed pairs of
this test set.

>>> seeds_needed(baseline_only=100, variant_only=110, pairs=2, n_images=2000)
33
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnistlab.check.inputs import PREDICTION_FORMS, as_list, predicted, scored_on, source
from mnistlab.check.verdict import Off, Result, given, refused, verdict
from mnistlab.experiments.leaderboard import ALPHA, mcnemar

EXERCISE = "beat this"
POWER = 0.8
MIN_SEEDS = 2


@dataclass(frozen=True)
class Pair:
    """One seed pair on the same test images."""

    label: str  # "seed 0" or "pair 1"
    mine: float  # test accuracy
    base: float
    baseline_only: int  # images only the baseline got right
    variant_only: int  # images only the learner's model got right
    n_images: int

    @property
    def diff(self) -> float:
        return self.mine - self.base

    @property
    def text(self) -> str:
        return (
            f"{self.label}: {self.mine:.2%} vs {self.base:.2%} ({self.diff:+.2%}); right only "
            f"for yours {self.variant_only}, only for the baseline {self.baseline_only}, "
            f"p = {mcnemar(self.baseline_only, self.variant_only):.3g}"
        )


def seeds_needed(
    baseline_only: int, variant_only: int, pairs: int, n_images: int, power: float = POWER
) -> int | float:
    """Seed pairs of ``n_images`` test images for McNemar's test to show the observed difference
    with probability ``power`` at ``ALPHA`` (inf when there is no difference)."""
    from scipy.stats import norm

    n = pairs * n_images
    discordant = (baseline_only + variant_only) / n
    delta = (variant_only - baseline_only) / n
    if delta == 0:
        return math.inf
    z_a, z_b = norm.ppf(1 - ALPHA / 2), norm.ppf(power)
    images = (z_a * math.sqrt(discordant) + z_b * math.sqrt(discordant - delta**2)) ** 2
    return math.ceil(images / delta**2 / n_images)


def beat_this(mine, baseline, *, dataset=None) -> Result:
    """Test the learner's models ``mine`` against the notebook's ``baseline`` runs, one seed
    pair at a time (by seed when both are mnistlab runs, else in the order given)."""
    given(mine, "my_runs", "train your idea with two or more seeds in the exercise cell")
    given(baseline, "baselines", "run the cell that trains the baseline's seeds")
    mine, baseline = as_list(mine), as_list(baseline)
    try:
        pairs = _pairs(mine, baseline, dataset)
    except Off as off:
        return refused(EXERCISE, off)
    b = sum(p.baseline_only for p in pairs)
    c = sum(p.variant_only for p in pairs)
    p_value = mcnemar(b, c)
    diff = float(np.mean([p.diff for p in pairs]))
    details: dict[str, Any] = {
        "pairs": [vars(p) | {"diff": p.diff} for p in pairs],
        "baseline_only": b,
        "variant_only": c,
        "p_value": p_value,
        "diff": diff,
        "test": "exact McNemar on the discordant test images, pooled over the seed pairs",
    }
    problems, hint, summary = _judge(pairs, b, c, p_value, diff, details)
    notes = [p.text for p in pairs]
    if len(mine) > len(pairs):
        notes.append(
            f"{len(mine) - len(pairs)} of your models had no baseline to pair with: train the "
            "baseline with as many seeds"
        )
    return verdict(EXERCISE, problems, hint, details, notes, summary)


def _pairs(mine: list[Any], baseline: list[Any], dataset) -> list[Pair]:
    if not mine or not baseline:
        raise Off(f"{'my_runs' if not mine else 'baselines'} is empty", f"give {PREDICTION_FORMS}")
    ours = [source(m, f"my_runs[{i}]") for i, m in enumerate(mine)]
    theirs = [source(b, f"baselines[{i}]") for i, b in enumerate(baseline)]
    test = scored_on(theirs + ours, dataset)
    if all(s.seed is not None for s in ours + theirs):
        base = {s.seed: s for s in theirs}
        missing = [str(s.seed) for s in ours if s.seed not in base]
        if missing:
            raise Off(
                f"no baseline run for seed {', '.join(missing)}: the test pairs runs of the "
                "same seed",
                "train the baseline with the same seeds as your runs",
            )
        matched = [(f"seed {s.seed}", s, base[s.seed]) for s in ours]
    else:
        matched = [(f"pair {i + 1}", a, b) for i, (a, b) in enumerate(zip(ours, theirs))]
    out = []
    for label, a, b in matched:
        hit_a, hit_b = predicted(a, test) == test.y, predicted(b, test) == test.y
        out.append(
            Pair(
                label,
                float(hit_a.mean()),
                float(hit_b.mean()),
                int(np.sum(hit_b & ~hit_a)),
                int(np.sum(hit_a & ~hit_b)),
                len(test.y),
            )
        )
    return out


def _judge(pairs, b, c, p_value, diff, details) -> tuple[list[str], str | None, str]:
    k = len(pairs)
    if k < MIN_SEEDS:
        return (
            [f"{k} seed: one training shows that seed's luck as much as the idea's worth"],
            f"train your idea with {MIN_SEEDS} or more seeds (and the baseline with the same)",
            "",
        )
    shown = f"{diff:+.2%} over {k} seeds (p = {p_value:.3g})"
    if p_value < ALPHA and c > b and all(p.diff > 0 for p in pairs):
        return [], None, f"better, and not luck: {shown}"
    if p_value < ALPHA and c < b:
        return [f"worse: {shown}"], "that idea costs accuracy here: try another one", ""
    if p_value < ALPHA:
        against = ", ".join(f"{p.label} {p.diff:+.2%}" for p in pairs if p.diff <= 0)
        return (
            [
                f"not shown: {shown} pooled, but not on every seed ({against}): a gain that "
                "depends on the seed is luck, not the idea"
            ],  # fmt: skip
            _LARGER,
            "",
        )
    n_images = pairs[0].n_images
    needed = seeds_needed(b, c, k, n_images)
    details["seeds_needed"] = needed
    problem = f"not shown: {diff:+.2%} is within the noise of {k} seeds (p = {p_value:.3g})"
    if not (math.isfinite(needed) and diff > 0):
        return [problem], _LARGER, ""
    problem += (
        f"; the test would need about {needed:.0f} seeds to tell (a power estimate: "
        f"{POWER:.0%} power at alpha {ALPHA}, if the true gain is the observed one, with "
        f"{(b + c) / k / n_images:.1%} of the images discordant per seed pair)"
    )
    return [problem], f"{_LARGER}, or give it the seeds the power estimate asks for", ""


_LARGER = "look for an idea with a larger effect (the tutorial lists four)"
