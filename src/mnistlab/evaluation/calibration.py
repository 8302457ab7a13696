"""How sure a run's model should be: calibration measured, fitted, and drawn.

* ``ece``: the expected calibration error, top-label, over 15 equal-width confidence bins
  (Guo et al., 2017): in each bin, the gap between how sure the model said it was (the mean
  top probability) and how often it was right, weighted by the bin's share of predictions.
  0 is honest; 0.03 means "sure" is off by 3 points on average.
* ``nll``: the negative log-likelihood of the true class (the cross-entropy loss), which
  punishes confident mistakes hardest; it is what temperature scaling minimises.
* ``fit_temperature``: one scalar T, fitted on the run's validation part (never the test set)
  by minimising the NLL of softmax(logits / T) over log T (scipy's bounded Brent search).
  Dividing all logits by one T never changes which class wins, so accuracy stays the same.
* ``calibrate(run)`` fits T and the out-of-distribution check (``fit_ood``: a probabilistic
  PCA of the training part, quantile tables and a threshold from the validation part; the check
  itself is :mod:`mnistlab.rundir.calibration`'s) and writes the run's calibration.json.
  ``mnistlab evaluate`` and the end of ``mnistlab train`` call it; a run without a validation
  part cannot be calibrated, and says so in one line.

>>> conf = np.array([0.9, 0.9, 0.6, 0.6])
>>> round(ece(conf, np.array([True, True, True, False])), 3)   # |1-0.9|/2 + |0.5-0.6|/2
0.1
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mnistlab.errors import RunError
from mnistlab.evaluation.splits import training_parts
from mnistlab.plots import _figure, _save
from mnistlab.rundir import Run, load_run
from mnistlab.rundir.calibration import (
    LEVELS,
    Calibration,
    OodCheck,
    PixelModel,
    energy,
    model_digest,
    rounded,
    softmax,
    uncalibrated,
    write_calibration,
)

BINS = 15
T_RANGE = (0.05, 20.0)  # the temperatures searched; a fit at either end says something broke
FALSE_ALARM = 0.05  # share of validation digits the OOD threshold flags
PIXEL_COMPONENTS = 20  # principal components of the pixel model
PIXEL_IMAGES = 12_000  # training images it is fitted on at most (evenly spaced): ample for 20


# ---- measuring ----------------------------------------------------------------------------
def reliability(confidence, correct, bins: int = BINS) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin (lower, upper]: ``count``, mean ``confidence`` and
    ``accuracy`` (NaN in an empty bin), and the bin ``edges``."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    hit_sum = np.bincount(idx, weights=hit, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "edges": edges,
            "count": count,
            "confidence": np.where(count > 0, conf_sum / count, np.nan),
            "accuracy": np.where(count > 0, hit_sum / count, np.nan),
        }


def ece(confidence, correct, bins: int = BINS) -> float:
    """Expected calibration error: sum over bins of (share of predictions) x |accuracy -
    mean confidence|."""
    conf = np.asarray(confidence, dtype=np.float64)
    if conf.size == 0:
        raise ValueError("ece: no predictions")
    r = reliability(conf, correct, bins)
    gaps = np.nan_to_num(r["accuracy"] - r["confidence"])
    return float(np.sum(r["count"] * np.abs(gaps)) / conf.size)


def nll(logits, y, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes ``y`` under softmax(logits / T)."""
    from scipy.special import logsumexp

    z = np.asarray(logits, dtype=np.float64) / temperature
    y = np.asarray(y, dtype=np.int64)
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def fit_temperature(logits, y) -> float:
    """The T in ``T_RANGE`` minimising ``nll(logits, y, T)``, to ``rounded``'s digits.

    The NLL is convex in 1/T, so a bounded Brent search over log T finds the one minimum.
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    found = minimize_scalar(
        lambda t: nll(z, y, math.exp(t)),
        bounds=tuple(math.log(t) for t in T_RANGE),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(rounded(math.exp(found.x)))


def before_after(logits, y, temperature: float | None, split: str) -> dict[str, Any]:
    """NLL and ECE of ``logits`` on labels ``y`` raw and (with a temperature) calibrated."""
    z = np.asarray(logits, dtype=np.float64)
    raw = softmax(z)
    correct = raw.argmax(axis=1) == np.asarray(y)  # the same with any temperature
    out = {
        "split": split,
        "n": int(len(z)),
        "nll_before": nll(z, y),
        "ece_before": ece(raw.max(axis=1), correct),
        "nll_after": None,
        "ece_after": None,
    }
    if temperature is not None:
        out["nll_after"] = nll(z, y, temperature)
        out["ece_after"] = ece(softmax(z, temperature).max(axis=1), correct)
    return out


# ---- fitting ------------------------------------------------------------------------------
def fit_pixels(images: np.ndarray, components: int = PIXEL_COMPONENTS) -> PixelModel:
    """The probabilistic PCA of uint8 training images (sklearn's PCA, exact eigensolver),
    stored rounded; at most ``PIXEL_IMAGES`` of them, evenly spaced."""
    from sklearn.decomposition import PCA

    step = max(1, math.ceil(len(images) / PIXEL_IMAGES))
    x = np.asarray(images[::step], dtype=np.float64).reshape(-(-len(images) // step), -1) / 255.0
    pca = PCA(components, svd_solver="covariance_eigh").fit(x)
    return PixelModel(
        rounded(pca.mean_),
        rounded(pca.components_),
        rounded(pca.explained_variance_),
        float(rounded(pca.noise_variance_)),
    )


def fit_ood(
    logits: np.ndarray, images: np.ndarray, pixels: PixelModel, false_alarm: float = FALSE_ALARM
) -> OodCheck:
    """The OOD check from the validation digits' logits and images: their energy and pixel-NLL
    quantile tables, and the threshold above which ``false_alarm`` of them score."""
    if not 0 < false_alarm < 1:
        raise ValueError(f"false_alarm: expected a share in (0, 1), got {false_alarm!r}")
    tables = [rounded(np.quantile(v, LEVELS)) for v in (energy(logits), pixels.nll(images))]
    check = OodCheck(pixels, *tables, threshold=1.0, false_alarm=false_alarm)
    score = check.score(logits, images)
    threshold = float(rounded(np.quantile(score, 1.0 - false_alarm)))
    return OodCheck(pixels, *tables, threshold=threshold, false_alarm=false_alarm)


def _validation(run, ds=None):
    """(training part images, validation images, labels, logits) of a loaded run; RunError in
    one line when it has no validation part or its model answers NaN/inf there."""

    if not run.recipe.validation_split:
        raise RunError(uncalibrated(run))
    x_fit, _, x_val, y_val = training_parts(run, ds)
    logits = run.predict_logits(x_val)
    if not np.all(np.isfinite(logits)):
        raise RunError(
            f"{run.path}: the model's outputs are NaN/inf on its validation part (training "
            "diverged?); retrain it before calibrating"
        )
    return x_fit, x_val, y_val, logits


def fit_run_temperature(run, ds=None) -> tuple[float, dict[str, Any]]:
    """(T, NLL and ECE on the validation part before and after): the temperature alone, as
    ``fit`` finds it, for a page that shows it without storing it."""
    _, _, y_val, logits = _validation(run, ds)
    temperature = fit_temperature(logits, y_val)
    return temperature, before_after(logits, y_val, temperature, "validation")


def fit(run, false_alarm: float = FALSE_ALARM, ds=None) -> Calibration:
    """The calibration of a loaded run, fitted on its validation part (``ds``: its dataset,
    if already loaded); RunError in one line when it cannot be calibrated."""
    x_fit, x_val, y_val, logits = _validation(run, ds)
    temperature = fit_temperature(logits, y_val)
    ood = fit_ood(logits, x_val, fit_pixels(x_fit), false_alarm)
    return Calibration(
        temperature, ood, model_digest(run), before_after(logits, y_val, temperature, "validation")
    )


def calibrate(run, false_alarm: float = FALSE_ALARM, ds=None) -> Calibration:
    """Fit a run's calibration (a folder or a loaded Run) and write its calibration.json."""

    run = run if isinstance(run, Run) else load_run(run)
    calibration = fit(run, false_alarm, ds)
    write_calibration(run.path, calibration)
    return calibration


def evaluate_calibration(run, x, y, split: str, ds=None):
    """(the Calibration or None, its record for metrics.json, the logits of ``x``): calibrate
    ``run`` (fitted on its validation part, written to calibration.json) and measure ``x``
    raw and calibrated; a run that cannot be calibrated gets its reason in ``why_not``."""
    try:
        calibration, why = calibrate(run, ds=ds), None
    except RunError as exc:
        calibration, why = None, str(exc)
    logits = run.predict_logits(x)
    temperature = calibration.temperature if calibration is not None else None
    record = {"temperature": temperature, "why_not": why}
    return calibration, {**record, **before_after(logits, y, temperature, split)}, logits


def summary_line(calibration: Calibration) -> str:
    """'calibrated: T = 1.43; on 3,000 validation images ECE 3.10 % -> 0.81 %, NLL ...'."""
    f = calibration.fitted_on
    return (
        f"calibrated: temperature {calibration.temperature:.3g}; on {f['n']:,} validation "
        f"images ECE {100 * f['ece_before']:.2f} % -> {100 * f['ece_after']:.2f} %, "
        f"NLL {f['nll_before']:.4f} -> {f['nll_after']:.4f}"
    )


def print_calibration(record: dict[str, Any] | None, console) -> None:
    """evaluate's calibration table: the temperature, NLL and ECE raw and calibrated."""
    from rich.table import Table

    if not record:
        return
    if record.get("temperature") is None:
        console.print(f"calibration: {record.get('why_not')}")
        console.print(
            f"raw: ECE {100 * record['ece_before']:.2f} %, NLL {record['nll_before']:.4f} "
            f"on {record['n']:,} {record['split']} images"
        )
        return
    where = " (the images it was fitted on)" if record["split"] == "val" else ""
    t = Table(title=f"Calibration on {record['split']}{where}: how sure it should be")
    for col in ("", "raw softmax", f"calibrated (T = {record['temperature']:.3g})"):
        t.add_column(col, justify="right" if col else "left")
    t.add_row(
        "ECE (15 bins)", f"{100 * record['ece_before']:.2f} %", f"{100 * record['ece_after']:.2f} %"
    )
    t.add_row("NLL", f"{record['nll_before']:.4f}", f"{record['nll_after']:.4f}")
    console.print(t)
    console.print(
        "ECE: the mean gap between how sure the model says it is and how often it is right. "
        "The temperature T was fitted on the validation part and stored in calibration.json: "
        "`predict --calibrated`, `export --calibrated` and `serve` use it."
    )


# ---- drawing ------------------------------------------------------------------------------
def reliability_figure(logits, y, temperature: float | None, path, title: str = ""):
    """The reliability diagram: accuracy against confidence per bin, raw and (with a
    temperature) calibrated side by side, and below each the share of predictions per bin.
    ``path``: a file name or a binary file object."""

    z = np.asarray(logits, dtype=np.float64)
    temps = [("raw softmax", 1.0)] + ([] if temperature is None else [("calibrated", temperature)])
    fig = _figure(4.2 * len(temps) + 0.4, 5.1)
    grid = fig.add_gridspec(2, len(temps), height_ratios=(3, 1))
    correct = z.argmax(axis=1) == np.asarray(y)
    for col, (label, t) in enumerate(temps):
        conf = softmax(z, t).max(axis=1)
        _reliability_panel(fig, grid, col, conf, correct, f"{label}, T = {t:.3g}" if col else label)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _reliability_panel(fig, grid, col: int, conf, correct, label: str) -> None:
    r = reliability(conf, correct)
    edges, width = r["edges"][:-1], 1.0 / BINS
    ax = fig.add_subplot(grid[0, col])
    acc = np.nan_to_num(r["accuracy"])  # an empty bin draws nothing
    mean_conf = np.where(r["count"] > 0, r["confidence"], acc)
    ax.bar(
        edges, acc, width=width, align="edge", color="#4477aa", edgecolor="white", label="accuracy"
    )
    ax.bar(
        edges,
        mean_conf - acc,
        bottom=acc,
        width=width,
        align="edge",
        color="none",
        edgecolor="#cc3311",
        hatch="//",
        lw=0.6,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=0.8, label="honest")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy in the bin")
    ax.set_title(f"{label}\nECE {100 * ece(conf, correct):.2f} %", fontsize=9)
    share = fig.add_subplot(grid[1, col], sharex=ax)
    share.bar(edges, r["count"] / max(len(conf), 1), width=width, align="edge", color="#999999")
    share.set_yscale("log")
    share.set(xlabel="confidence (top probability)", ylabel="share")
