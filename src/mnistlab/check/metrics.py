"""Exercise: precision, recall and R² "if they make sense".

The learner's precision and recall are compared with scikit-learn's on the same predictions, per
class or averaged (macro or weighted, whichever they match). A single number equal to the
accuracy is the micro average, which for one label per image IS the accuracy: it is named as
such. R² is answered with its reason (``evaluation.evaluate``'s): on the labels it means
nothing; on the predicted probabilities against the one-hot targets it is 1 - Brier score /
variance of the targets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnistlab.check.inputs import array, labels
from mnistlab.check.verdict import Off, Result, given, refused, verdict
from mnistlab.evaluation.evaluate import R2_LABELS_WHY, probability_r2

EXERCISE = "metrics"
ATOL = 1e-6
AVERAGES = ("per class", "macro", "weighted")
HINT = (
    "precision answers 'when the model says k, how often is it k?', recall 'of all the k, how "
    "many did it find?': one question per digit (average them with equal weights if you want "
    "one number)"
)


def metrics(y_true, y_pred, *, precision, recall, r2=None, proba=None) -> Result:
    """Check the learner's ``precision`` and ``recall`` of predictions ``y_pred`` (labels, or
    one row of scores per image) against the true ``y_true`` (labels or one-hot), and their
    ``r2`` (None if they judged it makes no sense) given the probabilities ``proba``."""
    todo = "compute them in the exercise cell"
    for value, name in ((y_pred, "y_pred"), (precision, "precision"), (recall, "recall")):
        given(value, name, todo)
    given(r2, "r2", "set r2 to your R² (or None if it makes no sense)")
    try:
        y = labels(y_true, "y_true")
        pred = labels(y_pred, "y_pred")
        if len(pred) != len(y):
            raise Off(f"y_pred has {len(pred):,} labels for {len(y):,} images")
        reference = _reference(y, pred)
        problems = _compare("precision", array(precision, "precision"), reference, "recall")
        problems += _compare("recall", array(recall, "recall"), reference, "precision")
        r2_problem, r2_note = _r2(r2, y, pred, proba if proba is not None else y_pred)
    except Off as off:
        return refused(EXERCISE, off)
    details: dict[str, Any] = {
        k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in reference.items()
    }
    hint = HINT if problems else "R² compares quantities; is a digit's label a quantity?"
    macro = (
        f"macro precision {reference['precision macro']:.4f}, "
        f"recall {reference['recall macro']:.4f}"
    )
    return verdict(EXERCISE, problems + r2_problem, hint, details, [r2_note], summary=macro)


def _reference(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, precision_score, recall_score

    out: dict[str, Any] = {"accuracy": float(accuracy_score(y, pred))}
    n = max(int(y.max()), int(pred.max())) + 1
    for name, fn in (("precision", precision_score), ("recall", recall_score)):
        kw = {"labels": list(range(n)), "zero_division": 0}
        out[f"{name} per class"] = fn(y, pred, average=None, **kw)
        for avg in ("macro", "weighted", "micro"):
            out[f"{name} {avg}"] = float(fn(y, pred, average=avg, **kw))
    return out


def _compare(what: str, got: np.ndarray, ref: dict[str, Any], other: str) -> list[str]:
    got = got.astype(np.float64).ravel()
    for avg in AVERAGES:
        want = np.atleast_1d(ref[f"{what} {avg}"])
        if got.shape == want.shape and np.allclose(got, want, atol=ATOL, rtol=0):
            return []
    if got.size == 1 and abs(got[0] - ref["accuracy"]) <= ATOL:
        return [
            f"your {what} is the accuracy ({ref['accuracy']:.4f}): averaged over all images at "
            f"once (micro), precision and recall both equal it and tell nothing new"
        ]
    for avg in AVERAGES:
        want = np.atleast_1d(ref[f"{other} {avg}"])
        if got.shape == want.shape and np.allclose(got, want, atol=ATOL, rtol=0):
            return [f"your {what} is the {other} ({avg}): the two are swapped"]
    shown = np.array2string(got, precision=4, threshold=12) if got.size > 1 else f"{got[0]:.4f}"
    return [f"your {what} {shown} matches neither scikit-learn's per class, macro nor weighted"]


def _r2(r2, y: np.ndarray, pred: np.ndarray, proba) -> tuple[list[str], str]:
    """(problems, the R² answer with its reason) for the learner's ``r2``."""
    from sklearn.metrics import r2_score

    scores = array(proba, "proba").astype(np.float64)
    has_proba = scores.ndim == 2 and np.allclose(scores.sum(axis=1), 1, atol=1e-3)
    brier = probability_r2(y, scores) if has_proba else None
    here = f" (= {brier['r2']:.4f} here)" if brier and brier["r2"] is not None else ""
    sense = (
        "On the probabilities against the one-hot targets R² does make sense: 1 - Brier score "
        f"/ variance of the targets{here}."
    )
    if r2 is None:
        return [], f"R²: {R2_LABELS_WHY} {sense}"
    value = float(array(r2, "r2"))
    if abs(value - float(r2_score(y, pred))) <= ATOL:
        return [f"your R² {value:.4f} is computed on the labels: {R2_LABELS_WHY}"], sense
    if brier is not None:
        onehot = np.eye(scores.shape[1])[y]
        candidates = (brier["r2"], r2_score(onehot, scores))
        if any(c is not None and abs(value - c) <= ATOL for c in candidates):
            return [], (
                f"R² {value:.4f} is on the probabilities against the one-hot targets: 1 - Brier "
                "score / variance of the targets, the R² that makes sense here (on the labels it "
                "would not: they are names, not quantities)"
            )
    return [f"your R² {value:.4f} is neither on the labels nor on the probabilities"], (
        f"R²: {R2_LABELS_WHY} {sense}"
    )
