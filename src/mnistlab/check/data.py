"""Exercise: load the data as the tutorial shapes it, and look at it.

The learner flattens each 28x28 image to 784 values (one-hot labels or integer labels both
do), counts the images of each digit and finds the mean and variance of the training pixels.
Everything is checked against the dataset itself: the images in their order, the counts, and
the two statistics within float rounding. A mean or variance of the training part only (what
the network fits on, before the validation split) is right too; the test set's, a standard
deviation given as the variance or statistics of pixels scaled to 0..1 are named as such.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mnistlab.check.inputs import (
    TRAINING_PARTS,
    array,
    labels,
    overall,
    pixel_moments,
    reference,
)
from mnistlab.check.verdict import Off, Result, given, refused, verdict

EXERCISE = "data"
RTOL = 1e-4  # a statistic computed in float32 (or by torch) is this close to float64's


def data(
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    class_counts=None,
    mean=None,
    variance=None,
    dataset=None,
) -> Result:
    """Check the arrays as the tutorial shapes them (images (N, 784), labels one-hot or not),
    and, when given, the class counts of ``y_train`` and the mean and variance of the pixels
    of ``x_train``. ``dataset``: what they should equal (default: the MNIST of that size)."""
    todo = "load the images and labels as the tutorial does"
    for value, name in ((x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test")):
        given(value, name, todo)
    given(y_test, "y_test", todo)
    look = "count the digits and compute the pixels' mean and variance in the exercise cell"
    for value, name in ((class_counts, "class_counts"), (mean, "mean"), (variance, "variance")):
        given(value, name, look)
    try:
        x_tr, x_te = array(x_train, "x_train"), array(x_test, "x_test")
        if x_tr.ndim < 2 or x_te.ndim < 2:
            raise Off(f"x_train {x_tr.shape} and x_test {x_te.shape}: expected arrays of images")
        ds = reference(dataset, n_train=len(x_tr), n_test=len(x_te))
        problems = _arrays(ds, x_tr, y_train, x_te, y_test)
        details: dict[str, Any] = {"dataset": ds.name}
        look_problems, notes = _look(ds, class_counts, mean, variance, details)
    except Off as off:
        return refused(EXERCISE, off)
    hint = (
        _ARRAY_HINT
        if problems
        else "recompute it from y_train and x_train exactly as they are"
        if look_problems
        else None
    )
    details |= {"x_train": (x_tr.shape, str(x_tr.dtype)), "x_test": (x_te.shape, str(x_te.dtype))}
    summary = (
        f"{ds.name}, x_train {x_tr.shape} and x_test {x_te.shape} of {x_tr.dtype} pixels"
        + "".join(f", {k} {details[k]:.6g}" for k in ("mean", "variance") if k in details)
    )
    return verdict(EXERCISE, problems + look_problems, hint, details, notes, summary)


_ARRAY_HINT = (
    "keep the images and labels as loaded, in their order: the only change the network needs "
    "yet is each image as one row"
)


def _arrays(ds, x_tr, y_train, x_te, y_test) -> list[str]:
    problems = []
    for name, x, ref in (("x_train", x_tr, ds.x_train), ("x_test", x_te, ds.x_test)):
        n = len(ref)
        width = int(np.prod(ref.shape[1:]))
        if x.shape != (n, width):
            problems.append(
                f"{name} has shape {x.shape}; the tutorial's network takes ({n}, {width}): "
                "one row of pixels per image"
            )
        elif x.size and x.max() <= 1.0 < ref.max():
            problems.append(f"{name} holds values 0..1: keep the raw pixels (0..255) for now")
        elif not np.array_equal(x, ref.reshape(n, width)):
            problems.append(f"{name} differs from {ds.name}'s images (other images, or reordered)")
    for name, y, ref in (("y_train", y_train, ds.y_train), ("y_test", y_test, ds.y_test)):
        got = labels(y, name, len(ds.class_names))
        if got.shape != ref.shape or not np.array_equal(got, ref):
            problems.append(f"{name} differs from {ds.name}'s labels")
    return problems


def _look(ds, class_counts, mean, variance, details) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    notes: list[str] = []
    if class_counts is not None:
        problems += _counts(ds, class_counts, details)
    for what, value in (("mean", mean), ("variance", variance)):
        if value is not None:
            found, line = _statistic(what, array(value, what).astype(np.float64), ds, details)
            if line is not None:
                (notes if found else problems).append(line)
    return problems, notes


def _counts(ds, class_counts, details) -> list[str]:
    if isinstance(class_counts, dict):
        class_counts = [class_counts.get(k, class_counts.get(str(k), 0)) for k in range(10)]
    got = array(class_counts, "class_counts").astype(np.float64).ravel()
    want = np.bincount(ds.y_train, minlength=len(ds.class_names))
    if got.shape == want.shape and (
        np.allclose(got, want) or np.allclose(got, want / want.sum())  # or as shares
    ):
        details["class_counts"] = want.tolist()
        return []
    test = np.bincount(ds.y_test, minlength=len(ds.class_names))
    if got.shape == test.shape and np.allclose(got, test):
        return ["class_counts are the test set's; the question is about y_train"]
    return [f"class_counts {_show(got)} are not the number of images of each digit in y_train"]


def _parts(ds) -> dict[str, np.ndarray]:
    """x_train (as rows of pixels), then the training parts the tutorial's splits leave."""
    pixels = ds.x_train.reshape(len(ds.x_train), -1)
    parts = {"x_train": pixels}
    for v in TRAINING_PARTS:
        parts[f"the first {100 - round(100 * v)} % of x_train"] = pixels[
            : math.floor(len(pixels) * (1 - v))
        ]
    return parts


def _stat(what: str, x: np.ndarray, per_pixel: bool):
    """The mean or variance of images ``x``: per pixel, or one number over all pixels."""
    mean, var = pixel_moments(x)
    if per_pixel:
        return mean if what == "mean" else var
    return overall(mean, var)[0 if what == "mean" else 1]


def _statistic(what: str, got: np.ndarray, ds, details) -> tuple[bool, str | None]:
    """(matched, a note when it did or a problem when it did not) for a mean or variance."""
    width = int(np.prod(ds.x_train.shape[1:]))
    per_pixel = got.size > 1
    if per_pixel and got.size != width:
        return False, f"{what} has {got.size} values: give one number over all pixels"
    for name, part in _parts(ds).items():
        want = _stat(what, part, per_pixel)
        if _close(got, want):
            details[what] = float(np.mean(want))
            if name == "x_train" and not per_pixel:
                return True, None
            where = " per pixel" if per_pixel else ""
            tail = "" if name == "x_train" else " (the part the network fits on)"
            return True, f"{what}{where} of {name}{tail}"
    pixels = ds.x_train.reshape(len(ds.x_train), -1)
    full = _stat(what, pixels, per_pixel)  # not put in details: that would be the answer
    if what == "variance" and _close(got, np.sqrt(full)):
        return False, "variance: that is the standard deviation (the variance is its square)"
    if _close(got, np.asarray(full) / (255.0 if what == "mean" else 255.0**2)):
        return False, f"{what}: that is of pixels scaled to 0..1; the question is about raw x_train"
    if _close(got, _stat(what, ds.x_test.reshape(len(ds.x_test), -1), per_pixel)):
        return False, f"{what}: that is the test set's; the question is about x_train"
    return False, f"{what} {_show(got)} does not match the pixels of x_train"


def _close(got: np.ndarray, want) -> bool:
    want = np.atleast_1d(np.asarray(want, dtype=np.float64))
    got = got.ravel()
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=RTOL, atol=1e-9))


def _show(a) -> str:
    a = np.asarray(a)
    if a.size == 1:
        return f"{float(a.ravel()[0]):.6g}"
    return np.array2string(a, precision=4, threshold=12)
