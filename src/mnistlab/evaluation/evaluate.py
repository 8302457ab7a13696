"""Evaluate a classifier the way the notebook's last cell asks: precision, recall and R² "if they
make sense" - with the metrics from sklearn.metrics and a plain answer on R².

Two entry points: :func:`evaluate_predictions` is pure (labels + probabilities in, a JSON-ready
dict out) and :func:`evaluate` (also ``mnistlab.evaluate(run)``) loads a run folder, predicts
a split, writes the figures and merges the result into the run's ``metrics.json``. It takes
test-set predictions from any framework too (a .npy of labels or probabilities, an ONNX model;
``evaluation.sources``): the same metrics and figures, written to ``evaluation.json`` in ``out``.

>>> import numpy as np
>>> from mnistlab.evaluation.evaluate import evaluate_predictions
>>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
>>> r = evaluate_predictions(np.array([0, 1, 1]), proba, ["cat", "dog"])
>>> round(r["accuracy"], 3), r["per_class"]["dog"]["recall"]
(0.667, 0.5)

Why not R² on the labels: class labels are nominal - a 7 is not "more" than a 3, so
``r2_score(y, y_pred)`` scores a 5 mistaken for a 4 as a smaller error than a 5 mistaken for a 0,
a distance that means nothing. The R² that does make sense compares the predicted probabilities
with the one-hot targets: 1 - Brier score / variance of the targets (summed over classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import plots
from mnistlab.errors import RunError
from mnistlab.evaluation import calibration as cal
from mnistlab.evaluation import sources
from mnistlab.evaluation.calibration import print_calibration
from mnistlab.evaluation.intervals import accuracy_interval, interval_text
from mnistlab.evaluation.splits import (  # noqa: F401  (public here too)
    SPLITS,
    check_split,
    run_dataset,
    split_data,
    training_parts,
)
from mnistlab.fsio import atomic_write_json, make_dirs
from mnistlab.paths import runs_dir
from mnistlab.rundir import Run, load_run, update_metrics

FIGURES = {"confusion_matrix": "confusion_matrix.png", "misclassified": "misclassified.png"}
RELIABILITY = {"reliability": "reliability.png"}  # evaluate draws it with the calibration

R2_LABELS_WHY = (
    "R² on class labels makes no sense: labels are nominal (7 is not 'more' than 3), "
    "so r2_score(y, y_pred) would reward predicting 4 for a 5 over predicting 0 for it."
)
R2_HOW_TO_READ = (
    "R² of the probabilities vs one-hot targets: 1 = perfect confident predictions, "
    "0 = no better than predicting the class frequencies, < 0 = worse than that."
)


def probability_r2(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float | None]:
    """Brier score and R² of ``proba`` against the one-hot targets.

    brier = mean over samples of sum over classes (p - onehot)², and
    r2 = 1 - brier / sum over classes of var(onehot column) - exactly sklearn's
    ``r2_score(onehot, proba, multioutput="variance_weighted")``. None when y_true holds a single
    class (the targets have no variance, so there is nothing to explain).

    >>> r = probability_r2(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> r["r2"], r["brier"]
    (1.0, 0.0)
    """
    proba = np.asarray(proba, dtype=np.float64)
    onehot = np.eye(proba.shape[1])[np.asarray(y_true, dtype=np.int64)]
    brier = float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))
    target_var = float(
        np.sum(onehot.var(axis=0))
    )  # = sum_k f_k (1 - f_k), f_k the class frequencies
    return {
        "brier": brier,
        "target_variance": target_var,
        "r2": 1.0 - brier / target_var if target_var > 0 else None,
    }


def most_confused(cm: np.ndarray, class_names: Sequence[str], top: int = 5) -> list[dict[str, Any]]:
    """The ``top`` largest off-diagonal cells: (true, predicted, count, share of the true class).

    Ties are broken by (true, predicted) index so the order is deterministic.

    >>> most_confused(np.array([[5, 2], [3, 4]]), ["a", "b"], top=1)[0]["true"]
    'b'
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = len(cm)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = off.ravel()
    # lexsort: last key is primary -> count descending, then row-major index ascending
    order = np.lexsort((np.arange(flat.size), -flat))
    rows = cm.sum(axis=1)
    out = []
    for k in order[:top]:
        if flat[k] == 0:
            break
        i, j = divmod(int(k), n)
        out.append(
            {
                "true": class_names[i],
                "predicted": class_names[j],
                "count": int(flat[k]),
                "share_of_true": float(flat[k] / rows[i]),
            }
        )
    return out


def _check(y_true, proba, class_names) -> tuple[np.ndarray, np.ndarray, list[str]]:
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true)
    if proba.ndim != 2 or y.ndim != 1 or len(y) != len(proba) or len(y) == 0:
        raise ValueError(
            f"expected y_true (N,) and proba (N, C) with N > 0, got {y.shape} and {proba.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class indices, got dtype {y.dtype}")
    c = proba.shape[1]
    names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for {c} probability columns")
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"y_true must lie in 0..{c - 1}, found {int(y.min())}..{int(y.max())}")
    if (
        not np.all(np.isfinite(proba))
        or proba.min() < 0
        or np.abs(proba.sum(axis=1) - 1).max() > 1e-3
    ):
        raise ValueError("proba must be finite, non-negative, and each row must sum to 1")
    # float32 softmax rows sum to 1 +- 1e-7; renormalize in float64 so sklearn's strict check holds.
    return y.astype(np.int64), proba / proba.sum(axis=1, keepdims=True), names


def evaluate_predictions(y_true, proba, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """All metrics of one split from true labels (N,) and predicted probabilities (N, C).

    Returns a JSON-ready dict: n, accuracy, loss (categorical cross-entropy), per_class
    {name: precision/recall/f1/support}, macro_avg, weighted_avg, confusion_matrix (rows = true),
    most_confused (top 5 off-diagonal pairs), r2 (probability R², Brier score and the why/how
    lines). Precision of a never-predicted class is reported as 0 (sklearn zero_division=0).
    """
    from sklearn import metrics

    y, proba, names = _check(y_true, proba, class_names)
    labels = np.arange(len(names))
    pred = proba.argmax(axis=1)
    p, r, f, s = metrics.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    cm = metrics.confusion_matrix(y, pred, labels=labels)
    avgs = {}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = metrics.precision_recall_fscore_support(
            y, pred, labels=labels, average=avg, zero_division=0
        )
        avgs[f"{avg}_avg"] = {
            "precision": float(ap),
            "recall": float(ar),
            "f1": float(af),
            "support": int(len(y)),
        }
    r2 = probability_r2(y, proba)
    return {
        "n": int(len(y)),
        "accuracy": float(metrics.accuracy_score(y, pred)),
        "accuracy_ci": accuracy_interval(int(np.sum(pred == y)), int(len(y))),
        "loss": float(metrics.log_loss(y, proba, labels=labels)),
        "per_class": {
            n: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, n in enumerate(names)
        },
        **avgs,
        "confusion_matrix": cm.tolist(),
        "most_confused": most_confused(cm, names),
        "r2": {
            "probabilities_vs_onehot": r2["r2"],
            "brier": r2["brier"],
            "how_to_read": R2_HOW_TO_READ,
            "labels": R2_LABELS_WHY,
        },
        "class_names": names,
    }


def misclassified(y_true, proba, limit: int = 32) -> np.ndarray:
    """Indices of wrong predictions, the most confident mistakes first (ties: lower index first)."""
    y = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba)
    pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    conf = proba[wrong, pred[wrong]]
    return wrong[np.lexsort((wrong, -conf))][:limit]


def figure_names(split: str | None = None) -> dict[str, str]:
    """File names of the figures; per split (``confusion_matrix_val.png``) so test and val
    coexist."""
    return {
        k: v if split is None else v.replace(".png", f"_{split}.png")
        for k, v in {**FIGURES, **RELIABILITY}.items()
    }


def write_figures(
    result: dict[str, Any],
    images: np.ndarray,
    y_true,
    proba,
    out_dir,
    title: str = "",
    split: str | None = None,
    labels_only: bool = False,
) -> dict[str, Path]:
    """The confusion matrix and the 32 most confident mistakes as PNGs in ``out_dir``
    (names from :func:`figure_names`); ``labels_only``: the predictions carry no confidence,
    so the first 32 mistakes in test-set order, without one."""

    out = Path(out_dir)
    files = figure_names(split)
    names = result["class_names"]
    idx = misclassified(y_true, proba)
    pred = np.asarray(proba).argmax(axis=1)
    prefix = f"{title}: " if title else ""
    acc = f"accuracy {result['accuracy']:.2%}, n={result['n']:,}"
    return {
        "confusion_matrix": plots.confusion_matrix(
            result["confusion_matrix"],
            names,
            out / files["confusion_matrix"],
            title=f"{prefix}confusion matrix ({acc})",
        ),
        "misclassified": plots.misclassified_grid(
            np.asarray(images)[idx],
            np.asarray(y_true)[idx],
            pred[idx],
            None if labels_only else np.asarray(proba)[idx, pred[idx]],
            names,
            out / files["misclassified"],
            title=(
                f"{prefix}{'first' if labels_only else 'most confident'} mistakes ({len(idx)} "
                f"of {int(np.sum(pred != np.asarray(y_true)))} shown)"
            ),
        ),
    }


def merge_metrics(run_dir: str | Path, split: str, result: dict[str, Any]) -> dict[str, Any]:
    """Set ``["evaluation"][split]`` in ``<run_dir>/metrics.json``; every other key - train's
    "train"/"test", other splits - is kept. Read-modify-atomic-write under the run's lock
    (:func:`mnistlab.rundir.files.update_metrics`, shared with training)."""

    return update_metrics(run_dir, {"evaluation": {split: result}})


def evaluate(
    run, split: str = "test", out: str | Path | None = None, **source: Any
) -> dict[str, Any]:
    """Evaluate a trained run (a run folder or a loaded Run) on ``split``; figures go to ``out``
    (default: the run folder) and the metrics into ``<run>/metrics.json`` under
    ``"evaluation": {split: ...}``. Returns the metrics.

    ``run`` may also be a .npy of test-set predictions or an ONNX model (``evaluate_source``;
    ``source``: its ``dataset``, ``data_dir`` and ``pixels``).

    A run is calibrated on the way (fitted on its validation part, written to its
    calibration.json, see ``mnistlab.evaluation.calibration``): ``"calibration"`` holds the
    temperature and the split's NLL and ECE before and after it.
    """

    check_split(split)
    if not isinstance(run, Run) and sources.kind_of(Path(run)) != "run":
        if split != "test":
            raise RunError(f"{run}: predictions are of the test set; --split {split} needs a run")
        return evaluate_source(run, out=out, **source)
    run = run if isinstance(run, Run) else load_run(run)
    run_path = Path(run.path)
    ds = run_dataset(run)
    x, y = split_data(run, split, ds)
    proba = run.finite_proba(x, before="evaluating")
    result = evaluate_predictions(y, proba, run.class_names)
    result["split"] = split
    result["dataset"] = run.dataset_name
    out_dir = Path(out) if out is not None else run_path
    title = f"{run_path.name} on {split}"
    figs = write_figures(result, x, y, proba, out_dir, title=title, split=split)
    _, result["calibration"], logits = cal.evaluate_calibration(run, x, y, split, ds)
    temperature = result["calibration"]["temperature"]
    figs["reliability"] = cal.reliability_figure(
        logits, y, temperature, out_dir / figure_names(split)["reliability"], title=title
    )
    result["figures"] = {k: str(p) for k, p in figs.items()}
    merge_metrics(run_path, split, result)
    return result


def evaluate_source(
    path, dataset=None, data_dir=None, pixels: str = "raw", out: str | Path | None = None
) -> dict[str, Any]:
    """The metrics and figures of test-set predictions from any framework (a .npy of labels
    (N,) or probabilities (N, classes), or an ONNX model; see ``evaluation.sources``) on
    ``dataset``'s test set, written with ``evaluation.json`` to ``out`` (default:
    runs/evaluate-<file name>). Labels alone have no loss, Brier score or R²: those are None."""

    path = Path(path)
    test, (found,) = sources.load([path], dataset, data_dir, pixels)
    names = test.class_names
    proba = found.proba
    if proba is None:  # labels only: scored as certain answers, with nothing to say of confidence
        proba = np.eye(len(names))[found.labels]
    result = evaluate_predictions(test.y, proba, names)
    if found.proba is None:
        result["loss"] = None
        result["r2"].update(probabilities_vs_onehot=None, brier=None)
    result.update(split="test", dataset=test.name, source=str(path))
    if found.note:
        result["note"] = found.note
    out_dir = make_dirs(Path(out) if out is not None else runs_dir() / f"evaluate-{path.stem}")
    figs = write_figures(
        result, test.x, test.y, proba, out_dir, path.name, "test", labels_only=found.proba is None
    )
    result["figures"] = {k: str(p) for k, p in figs.items()}
    atomic_write_json(out_dir / "evaluation.json", result)
    return result


def print_evaluation(result: dict[str, Any], console=None) -> None:
    """Rich tables: headline numbers, per-class report with averages, most-confused pairs, R²."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    where = f" ({result['dataset']}, {result['split']})" if "split" in result else ""
    head = Table(title=f"Evaluation{where}", show_header=False)
    head.add_row("samples", f"{result['n']:,}")
    ci = result.get("accuracy_ci")
    interval = f" ({interval_text(ci['low'], ci['high'], ci['level'])})" if ci else ""
    head.add_row("accuracy", f"{result['accuracy']:.4f}{interval}")
    r2 = result["r2"]
    labels_only = result["loss"] is None  # predictions given as labels: no probabilities
    if labels_only:
        head.add_row("loss, R², Brier score", "none: labels only, no probabilities")
    else:
        head.add_row("loss (cross-entropy)", f"{result['loss']:.4f}")
        head.add_row(
            "R² (probabilities vs one-hot)",
            "undefined (one class)"
            if r2["probabilities_vs_onehot"] is None
            else f"{r2['probabilities_vs_onehot']:.4f}",
        )
        head.add_row("Brier score", f"{r2['brier']:.4f}")
    console.print(head)

    t = Table(title="Per-class report")
    for col in ("class", "precision", "recall", "f1", "support"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for name, m in result["per_class"].items():
        t.add_row(
            name,
            f"{m['precision']:.4f}",
            f"{m['recall']:.4f}",
            f"{m['f1']:.4f}",
            f"{m['support']:,}",
        )
    for key in ("macro_avg", "weighted_avg"):
        m = result[key]
        t.add_row(
            key.replace("_", " "),
            f"{m['precision']:.4f}",
            f"{m['recall']:.4f}",
            f"{m['f1']:.4f}",
            f"{m['support']:,}",
            style="bold",
        )
    console.print(t)

    if result["most_confused"]:
        c = Table(title="Most confused pairs")
        for col in ("true", "predicted as", "count", "% of true class"):
            c.add_column(col, justify="right" if col in ("count", "% of true class") else "left")
        for m in result["most_confused"]:
            c.add_row(m["true"], m["predicted"], str(m["count"]), f"{100 * m['share_of_true']:.2f}")
        console.print(c)
    console.print(r2["labels"])
    console.print(r2["how_to_read"])
    if result.get("note"):
        console.print(f"note: {result['note']}")

    print_calibration(result.get("calibration"), console)
    for name, path in result.get("figures", {}).items():
        console.print(f"{name}: {path}")
