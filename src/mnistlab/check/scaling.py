"""Exercise: standardize the inputs with statistics of the training part only.

The learner hands in their standardized training and test images. From those arrays alone the
check finds which ``(x - mean) / std`` made them: it recomputes the candidates (statistics of the
training part, of the whole x_train, of the test set, of train and test together; one number
over all pixels or one per pixel, with either ddof) from the raw images and keeps the one that
reproduces the learner's numbers. That tells a standardization that leaks the test set from one
that does not, and a test set put through other numbers than training from the same ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnistlab.check.inputs import TRAINING_PARTS, array, overall, pixel_moments, reference
from mnistlab.check.verdict import Off, Result, given, refused, verdict

EXERCISE = "standardization"
MATCH = 1e-4  # largest relative gap to a candidate's numbers (float32 work stays below 1e-6)
TOLERANCE = 0.02  # |mean| and |std - 1| on the training part
ROWS = 512  # rows compared per candidate, spread over the array
_FROM_FIT = "take the mean and std from the images the network trains on, then use them everywhere"
LEAK = (
    "the test set stands for images the model has never seen, so nothing computed from it may "
    "shape the training or its inputs; with test statistics in the scaling, the test accuracy "
    "is no longer an honest estimate"
)


@dataclass(frozen=True)
class Candidate:
    """One way the learner's numbers could have been made: ``(x - mean) / std`` with the
    statistics of ``source``, whose ``kind`` is "fit" (the training part), "train" (training
    images that include validation ones), "leak" (statistics that include the test set) or
    "scale" (no statistics: raw or divided by 255)."""

    source: str
    kind: str
    per_pixel: bool
    mean: np.ndarray | float
    std: np.ndarray | float

    def apply(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    @property
    def label(self) -> str:
        if self.kind == "scale":
            return self.source
        how = "per-pixel " if self.per_pixel else ""
        return f"{how}statistics of {self.source}"


def standardization(x_train, x_test, *, validation_split: float = 0.3, dataset=None) -> Result:
    """Check standardized images: ``x_train`` (all training images, or the part the network fits
    on) and ``x_test``, (N, 784) or (N, 28, 28). The training part is the first
    ``1 - validation_split`` of x_train, as Keras' validation_split keeps it."""
    todo = "standardize x_train and x_test in the exercise cell"
    given(x_train, "x_train_std", todo)
    given(x_test, "x_test_std", todo)
    try:
        z_train, z_test = _flat(x_train, "x_train_std"), _flat(x_test, "x_test_std")
        ds = reference(dataset, n_test=len(z_test))
        raw = _raw(ds, len(z_train), validation_split)
        candidates = _candidates(ds, validation_split)
        used = {
            "train": _which(candidates, raw["train"], z_train, "x_train_std"),
            "test": _which(candidates, ds.x_test.reshape(len(ds.x_test), -1), z_test, "x_test_std"),
        }
    except Off as off:
        return refused(EXERCISE, off)
    fit = z_train[: len(raw["fit"])]
    details: dict[str, Any] = {
        "train": used["train"] and used["train"].label,
        "test": used["test"] and used["test"].label,
        "fit_mean": round(float(fit.mean(dtype=np.float64)), 6) + 0.0,  # + 0.0: no "-0.000"
        "fit_std": float(fit.std(dtype=np.float64)),
    }
    problems, notes, hint = _judge(used, fit, details)
    return verdict(EXERCISE, problems, hint, details, notes, summary=_summary(used, details))


def _flat(x, name: str) -> np.ndarray:
    a = array(x, name)
    if a.ndim < 2:
        raise Off(f"{name}: an array of shape {a.shape}; expected images (N, 784)")
    a = a.reshape(len(a), -1)
    if not np.issubdtype(a.dtype, np.floating):
        raise Off(
            f"{name} holds {a.dtype} values: standardized pixels are fractions",
            "compute in floating point",
        )
    if not np.all(np.isfinite(a)):
        raise Off(
            f"{name} holds NaN or infinite values",
            "a pixel that is 0 in every image has a standard deviation of 0: dividing by it "
            "gives NaN (one number over all pixels avoids it)",
        )
    return a


def _raw(ds, n_rows: int, validation_split: float) -> dict[str, np.ndarray]:
    """The raw images behind the learner's training array, and the training part."""
    pixels = ds.x_train.reshape(len(ds.x_train), -1)
    fit = pixels[: math.floor(len(pixels) * (1 - validation_split))]
    if n_rows == len(pixels):
        return {"train": pixels, "fit": fit}
    if n_rows == len(fit):
        return {"train": fit, "fit": fit}
    raise Off(
        f"x_train_std has {n_rows:,} rows; expected all {len(pixels):,} training images or the "
        f"first {len(fit):,} (the training part of validation_split={validation_split})"
    )


def _sources(ds, validation_split: float) -> list[tuple[str, str, tuple[np.ndarray, ...]]]:
    """(name, kind, images) of every set whose statistics a learner might have used."""
    pixels = ds.x_train.reshape(len(ds.x_train), -1)
    test = ds.x_test.reshape(len(ds.x_test), -1)
    out = []
    for v in dict.fromkeys((validation_split, *TRAINING_PARTS)):
        part = pixels[: math.floor(len(pixels) * (1 - v))]
        name = f"the first {100 - round(100 * v)} % of x_train"
        kind = "fit" if v == validation_split else "train"
        out.append((f"the training part ({name})" if kind == "fit" else name, kind, (part,)))
    out.append(("x_train", "train", (pixels,)))
    out.append(("the test set", "leak", (test,)))
    out.append(("train and test together", "leak", (pixels, test)))
    return out


def _candidates(ds, validation_split: float) -> list[Candidate]:
    out = [
        Candidate("raw pixels, not scaled", "scale", False, 0.0, 1.0),
        Candidate("pixels divided by 255", "scale", False, 0.0, 255.0),
    ]
    for source, kind, arrays in _sources(ds, validation_split):
        n = sum(len(a) for a in arrays)
        moments = [pixel_moments(a) for a in arrays]
        mean = sum(m * len(a) for (m, _), a in zip(moments, arrays)) / n
        var = sum((v + (m - mean) ** 2) * len(a) for (m, v), a in zip(moments, arrays)) / n
        m, v = overall(mean, var)
        for ddof in (0, 1):  # NumPy's default, and torch's and pandas'
            std = np.sqrt(var * n / (n - ddof))
            out.append(Candidate(source, kind, True, mean, np.where(std > 0, std, 1.0)))
            total = n * len(mean)
            out.append(Candidate(source, kind, False, m, math.sqrt(v * total / (total - ddof))))
    return out


def _which(candidates: list[Candidate], raw: np.ndarray, z: np.ndarray, name: str):
    """The candidate that reproduces ``z`` from ``raw`` (None when none does)."""
    rows = np.unique(np.linspace(0, len(raw) - 1, min(ROWS, len(raw))).astype(np.int64))
    x = raw[rows].astype(np.float64)
    got = z[rows].astype(np.float64)
    gaps = [
        float(np.max(np.abs(got - c.apply(x)) / (1.0 + np.abs(c.apply(x))))) for c in candidates
    ]
    best = int(np.argmin(gaps))
    return candidates[best] if gaps[best] < MATCH else None


def _judge(used, fit, details) -> tuple[list[str], list[str], str | None]:
    train, test = used["train"], used["test"]
    if train is None or train.kind == "scale":
        said = "" if train is None else f" ({train.label})"
        return (
            [
                f"x_train_std is not standardized{said}: on the training part its mean is "
                f"{details['fit_mean']:.3g} and its std {details['fit_std']:.3g}"
            ],
            [],
            "standardizing subtracts one mean and divides by one standard deviation, both "
            "measured on the images the network trains on",
        )
    if train.kind == "leak":
        return [f"x_train_std was made with {train.label}: that leaks: {LEAK}"], [], _FROM_FIT
    if test is None or (test.source, test.per_pixel) != (train.source, train.per_pixel):
        said = "numbers that match no statistics" if test is None else test.label
        leak = f"; and that leaks: {LEAK}" if test is not None and test.kind == "leak" else ""
        return (
            [
                f"x_test_std was made with {said}, not the {train.label} that made x_train_std: "
                f"the model would see the same pixel as other numbers at test time{leak}"
            ],
            [],
            "compute the mean and std once, on the training part, and apply those same numbers "
            "to every set",
        )
    problems = _moments_problems(train, fit, details)
    notes = []
    if train.kind == "train":
        notes.append(
            f"{train.source} includes validation images; the strict choice is the training part "
            "only (the difference is small here)"
        )
    return problems, notes, None if not problems else _FROM_FIT


def _moments_problems(train: Candidate, fit: np.ndarray, details) -> list[str]:
    if train.per_pixel:
        column_std = fit.std(axis=0, dtype=np.float64)
        off = np.abs(column_std[column_std > TOLERANCE] - 1).max(initial=0.0)
        ok = abs(details["fit_mean"]) < TOLERANCE and off < TOLERANCE
    else:
        ok = abs(details["fit_mean"]) < TOLERANCE and abs(details["fit_std"] - 1) < TOLERANCE
    if ok:
        return []
    return [
        f"on the training part the mean is {details['fit_mean']:.3f} and the std "
        f"{details['fit_std']:.3f}; standardized, they are 0 and 1"
    ]


def _summary(used, details) -> str:
    train = used["train"]
    if train is None:
        return ""
    return (
        f"{train.label}, applied to both sets (training part: mean {details['fit_mean']:+.3f}, "
        f"std {details['fit_std']:.3f})"
    )
