"""The metrics a compare can rank on, each with the paired test that suits it.

A compare trains every variant with the same seeds on the same images, so two variants are
compared image by image: seed s of the variant against seed s of the baseline, on the same
test images, pooled over the seed pairs. Each ``Metric`` says what to keep per test image
(``measure``), the metric from that (``value``), and its paired test (``paired``: a p-value
and its details, from one or more (baseline, variant) pairs of per-image records):

* ``accuracy``: the exact McNemar test on the discordant images (``scipy.stats.binomtest``),
  discordant counts pooled over seed pairs.
* ``ece``: expected calibration error of the raw softmax (how honest each recipe's own
  probabilities are; lower is better), tested by a paired permutation test: under "no
  difference" the two models' answers on an image are exchangeable, so each image's pair is
  swapped with chance 1/2 (independently per seed pair) and the mean ECE difference over seed
  pairs recomputed ``PERMUTATIONS`` times; p = (1 + as extreme) / (1 + PERMUTATIONS). ECE is a
  sum over bins, not a mean over images, so a bootstrap of it would be biased; the permutation
  test needs no such assumption.
* ``robust_accuracy``: accuracy on the images under MNIST-C-style corruptions (12 corruptions
  at 3 severities, ``evaluation.robustness``; a seeded subset of at most 2,000 images, the same
  corrupted images for every run), kept per image as the share of its 36 corrupted versions
  classified right. The 36 versions of one image are not independent, so the unit of the test
  is the image: a paired sign-flip permutation test of the mean per-image difference, each
  image's difference flipped with chance 1/2 under "no difference" (per seed pair, pooled as
  for ECE).

Adding a metric is one more entry in ``METRICS``.

>>> round(mcnemar(0, 6), 4)          # 6 discordant pairs, all one way: 2 * 0.5**6
0.0312
>>> sorted(METRICS)
['accuracy', 'ece', 'robust_accuracy']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from mnistlab.errors import MnistlabError
from mnistlab.evaluation import robustness
from mnistlab.evaluation.calibration import BINS, ece

PERMUTATIONS = 2000
_CHUNK = 200  # permutations drawn at once: 200 x 10,000 images is 16 MB per array


def mcnemar(baseline_only: int, variant_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts (1.0 when there are none).

    ``baseline_only``: images the baseline got right and the variant wrong; ``variant_only``:
    the reverse. Under "no difference" each discordant image goes either way with chance 1/2.
    """
    n = baseline_only + variant_only
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(variant_only, n, 0.5, alternative="two-sided").pvalue)


def _correct(run, x, y) -> dict[str, np.ndarray]:
    return {"correct": run.predict_proba(x).argmax(axis=1) == np.asarray(y)}


def _accuracy_paired(pairs) -> tuple[float, dict[str, Any]]:
    b_only = sum(int(np.sum(b["correct"] & ~v["correct"])) for b, v in pairs)
    v_only = sum(int(np.sum(v["correct"] & ~b["correct"])) for b, v in pairs)
    return mcnemar(b_only, v_only), {"baseline_only": b_only, "variant_only": v_only}


def _confidence(run, x, y) -> dict[str, np.ndarray]:
    proba = run.predict_proba(x)
    return {
        "confidence": proba.max(axis=1).astype(np.float32),
        "correct": proba.argmax(axis=1) == np.asarray(y),
    }


def _ece(record: dict[str, np.ndarray]) -> float:
    return ece(record["confidence"], record["correct"])


def _bins(confidence: np.ndarray) -> np.ndarray:
    edges = np.linspace(0.0, 1.0, BINS + 1)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, BINS - 1)


def _swapped_ece_diffs(b, v, rng: np.random.Generator, k: int) -> np.ndarray:
    """ECE(variant) - ECE(baseline) for ``k`` random swaps of the two models' per-image
    answers: ECE is sum over bins |sum of (correct - confidence)| / n, binned by confidence."""
    n = len(b["confidence"])
    gap = [
        np.asarray(r["correct"], np.float64) - np.asarray(r["confidence"], np.float64)
        for r in (b, v)
    ]
    bins = [_bins(np.asarray(r["confidence"], np.float64)) for r in (b, v)]
    swap = rng.random((k, n)) < 0.5
    offset = (np.arange(k) * BINS)[:, None]
    out = []
    for first, second in ((1, 0), (0, 1)):  # the variant's side, then the baseline's
        idx = np.where(swap, bins[second], bins[first]) + offset
        d = np.where(swap, gap[second], gap[first])
        sums = np.bincount(idx.ravel(), weights=d.ravel(), minlength=k * BINS)
        out.append(np.abs(sums.reshape(k, BINS)).sum(axis=1) / n)
    return out[0] - out[1]


def _ece_paired(pairs, permutations: int = PERMUTATIONS, seed: int = 0) -> tuple[float, dict]:
    """The stratified paired permutation test of the mean ECE difference over seed pairs."""
    observed = float(np.mean([_ece(v) - _ece(b) for b, v in pairs]))
    return _permutation_p(pairs, observed, _swapped_ece_diffs, permutations, seed)


def _permutation_p(pairs, observed: float, draw, permutations: int, seed: int):
    """(p, details) of a stratified paired permutation test: ``observed`` is a mean over seed
    pairs, and each of ``permutations`` relabellings is the mean over pairs of
    ``draw(baseline, variant, rng, k)`` (k relabellings at once, in chunks); two-sided."""
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, permutations, _CHUNK):
        k = min(_CHUNK, permutations - start)
        stats = sum(draw(b, v, rng, k) for b, v in pairs) / len(pairs)
        extreme += int(np.sum(np.abs(stats) >= abs(observed) - 1e-12))
    p = (1 + extreme) / (1 + permutations)
    return p, {"diff": observed, "permutations": permutations}


def _robust(run, x, y) -> dict[str, np.ndarray]:
    idx = robustness.subset(len(y), robustness.IMAGES)
    # float32, as a study stores a record: the same numbers in one process and through one
    score = robustness.robust_scores(run, x[idx], np.asarray(y)[idx])
    return {"score": score.astype(np.float32)}


def _flipped_mean_diffs(b, v, rng: np.random.Generator, k: int) -> np.ndarray:
    """The mean per-image score difference (variant - baseline) for ``k`` random sign flips."""
    d = np.asarray(v["score"], np.float64) - np.asarray(b["score"], np.float64)
    return np.where(rng.random((k, len(d))) < 0.5, -d, d).mean(axis=1)


def _robust_paired(pairs, permutations: int = PERMUTATIONS, seed: int = 0) -> tuple[float, dict]:
    """The stratified paired sign-flip test of the mean per-image robust score difference."""
    observed = float(
        np.mean([np.mean(np.float64(v["score"]) - np.float64(b["score"])) for b, v in pairs])
    )
    return _permutation_p(pairs, observed, _flipped_mean_diffs, permutations, seed)


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric a compare ranks on (validation) and tests (paired, on the test images)."""

    name: str
    title: str
    higher_is_better: bool
    test: str  # the paired test, in words
    measure: Callable[[Any, np.ndarray, np.ndarray], dict[str, np.ndarray]]  # (run, x, y)
    value: Callable[[dict[str, np.ndarray]], float]
    paired: Callable[[list[tuple[dict, dict]]], tuple[float, dict[str, Any]]]
    per_seed: str = "paired"  # the per-run key of the seed pair's test in leaderboard.json
    pooled: str = "paired"  # the variant's key of the pooled test's details

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b


METRICS = {
    "accuracy": Metric(
        "accuracy",
        "accuracy",
        True,
        "exact McNemar (scipy.stats.binomtest) on discordant test images, per seed pair and "
        "pooled over seeds; Holm over variants",
        _correct,
        lambda r: float(np.mean(r["correct"])),
        _accuracy_paired,
        per_seed="mcnemar",
        pooled="discordant",
    ),
    "ece": Metric(
        "ece",
        "expected calibration error (raw softmax, 15 bins)",
        False,
        f"paired permutation test ({PERMUTATIONS} swaps of the two models' answers per test "
        "image, stratified by seed pair) of the mean ECE difference; Holm over variants",
        _confidence,
        _ece,
        _ece_paired,
    ),
    "robust_accuracy": Metric(
        "robust_accuracy",
        "accuracy under 12 corruptions x 3 severities (2,000 images at most)",
        True,
        f"paired sign-flip permutation test ({PERMUTATIONS} flips of each test image's "
        "difference in the share of its corrupted versions classified right, stratified by seed "
        "pair) of the mean difference; Holm over variants",
        _robust,
        lambda r: float(np.mean(r["score"])),
        _robust_paired,
    ),
}


def metric(name: str) -> Metric:
    """The metric called ``name``; one MnistlabError line naming the choices otherwise."""
    if name not in METRICS:
        raise MnistlabError(f"--metric: expected one of {', '.join(METRICS)}, got {name!r}")
    return METRICS[name]
