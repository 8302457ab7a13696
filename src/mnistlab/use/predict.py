"""Use a trained run on your own handwriting: photos, scans or canvas drawings in, top-k out.

Each image is first made the way MNIST's digits were made (``mnistlab.use.imageprep``: paper and
lighting removed, cropped, 20 px box, centre of mass), then the run classifies the 28x28 batch.
A batch of files keeps going past a bad one: with ``on_error="collect"`` each unreadable or
blank file becomes a ``Failed`` entry (its one-line reason) in its place, and every good file
still gets its ``Prediction``.

How sure: the probabilities are the model's raw softmax, or with ``calibrated=True`` the ones
temperature scaling made honest (the run's calibration.json; a run without one is refused in
one line). Each answer has a ``verdict``: "not a digit I know" when the run's out-of-distribution
check finds the input unlike its training images (runs with a calibration.json), else "not
sure" below ``NOT_SURE_BELOW``, else "sure".

>>> import numpy as np
>>> paper = np.full((120, 90), 235, np.uint8)
>>> paper[20:100, 40:52] = 20                   # a dark vertical stroke: a "1"
>>> prepare(paper).shape                        # what the model will see
(28, 28)
>>> results = predict(                                                # doctest: +SKIP
...     "runs/my-run", ["my_seven.jpg", "empty.png"], on_error="collect"
... )
>>> results[0].label, round(results[0].probability, 2), results[1].error  # doctest: +SKIP
('7', 0.98, 'empty.png: the image is blank (no ink found: ...)')
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import plots
from mnistlab.errors import DataError, MnistlabError, RunError
from mnistlab.rundir import MODEL, Run, load_run
from mnistlab.rundir.calibration import find_calibration, softmax, uncalibrated
from mnistlab.use.imageprep import load_image, prepare, read_gray, style_for  # noqa: F401  (public)

ImageLike = str | os.PathLike | bytes | np.ndarray | Any  # Any: a PIL image
NOT_SURE_BELOW = 0.9  # a top probability below this is "not sure": wrong at least 1 time in 10
STORED = "stored"  # predict_prepared's default calibration: the run's calibration.json, if any


def unfamiliar(class_names) -> str:
    """The verdict for an input unlike the training images, in the words of its classes."""
    digits = [str(i) for i in range(len(class_names))] == list(class_names)
    return "not a digit I know" if digits else "not like anything it was trained on"


@dataclasses.dataclass
class Prediction:
    """One image's answer. ``top``: (class index, class name, probability), most likely first;
    the probabilities are calibrated or the raw softmax (``calibrated``). ``ood``: the
    out-of-distribution check, {"score", "threshold", "unusual"}, None where the run has none."""

    source: str
    image: np.ndarray  # the prepared (28, 28) uint8 input the model saw
    probabilities: np.ndarray  # (n_classes,) float
    top: list[tuple[int, str, float]]
    calibrated: bool = False
    ood: dict[str, Any] | None = None
    verdict: str = ""  # "sure", "not sure" or ``unfamiliar``'s words
    raw_probability: float | None = None  # with ``calibrated``: the raw softmax's, of the label
    steps: list | None = None  # the preparation's steps (imageprep.Step), when asked for
    ok = True

    @property
    def predicted(self) -> int:
        return self.top[0][0]

    @property
    def label(self) -> str:
        return self.top[0][1]

    @property
    def probability(self) -> float:
        return self.top[0][2]

    @property
    def kind(self) -> str:
        """Which probabilities these are: "calibrated" or "raw"."""
        return "calibrated" if self.calibrated else "raw"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "predicted": self.predicted,
            "label": self.label,
            "probability": self.probability,
            "probabilities_are": self.kind,
            "raw_probability": self.raw_probability,
            "verdict": self.verdict,
            "ood": self.ood,
            "top": [{"class": c, "label": n, "probability": p} for c, n, p in self.top],
        }


@dataclasses.dataclass
class Failed:
    """An image that could not be predicted, with its one-line reason (which names it)."""

    source: str
    error: str
    ok = False

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.source, "error": self.error}


def _load(run):

    return run if isinstance(run, Run) else load_run(run)


def _calibration(run, calibrated: bool, calibration=STORED):
    """The Calibration to apply (``STORED``: the run's, if it has one), RunError when
    ``calibrated`` probabilities are asked of a run without one."""

    if isinstance(calibration, str) and calibration == STORED:
        calibration = find_calibration(run)
    if calibrated and calibration is None:
        raise RunError(uncalibrated(run))
    return calibration


def predict_prepared(
    run,
    images: np.ndarray,
    sources: Sequence[str] | None = None,
    top: int = 3,
    calibrated: bool = False,
    calibration=STORED,
) -> list[Prediction]:
    """Classify already prepared (N, 28, 28) uint8 images (``prepare``'s output) with a run.

    ``calibration``: the ``rundir.calibration.Calibration`` to apply, None for none, or
    ``STORED`` (the default) for the run's calibration.json when it has one.
    """
    run = _load(run)
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"expected prepared images of shape (N, 28, 28), got {x.shape}")
    n_classes = len(run.class_names)
    if not 1 <= top <= n_classes:
        raise ValueError(f"top: expected 1..{n_classes}, got {top}")
    sources = list(sources) if sources is not None else [f"<array {i}>" for i in range(len(x))]
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8) if x.dtype != np.uint8 else x
    calibration = _calibration(run, calibrated, calibration)
    proba, raw, checks = _answers(run, x, calibration, calibrated)
    out = []
    for name, img, p, q, ood in zip(sources, x, proba, raw, checks):
        order = np.argsort(-p, kind="stable")[:top]  # stable: ties go to the lower class index
        best = float(p[order[0]])
        verdict = (
            unfamiliar(run.class_names)
            if ood is not None and ood["unusual"]
            else "not sure"
            if best < NOT_SURE_BELOW
            else "sure"
        )
        out.append(
            Prediction(
                name,
                img,
                p.astype(np.float64),
                [(int(c), run.class_names[c], float(p[c])) for c in order],
                calibrated=calibrated,
                ood=ood,
                verdict=verdict,
                raw_probability=float(q[order[0]]) if calibrated else None,
            )
        )
    return out


def _answers(run, x: np.ndarray, calibration, calibrated: bool):
    """(probabilities (N, C), the raw softmax (N, C), the OOD check per image or None each)
    for prepared images."""

    if calibration is None:
        proba = run.finite_proba(x, before="predicting")
        return proba, proba, [None] * len(x)
    logits = run.predict_logits(x)
    if not np.all(np.isfinite(logits)):
        raise RunError(
            f"{run.path}/{MODEL}: the model predicts NaN/inf (training diverged?); retrain it "
            "before predicting"
        )
    raw = softmax(logits)
    proba = calibration.probabilities(logits) if calibrated else raw
    check = calibration.ood
    scores = check.score(logits, x)
    return (
        proba,
        raw,
        [
            {"score": float(s), "threshold": check.threshold, "unusual": bool(check.unusual(s))}
            for s in scores
        ],
    )


def _is_one_image(images) -> bool:
    if isinstance(images, (str, os.PathLike, bytes)) or hasattr(images, "getbands"):
        return True
    return isinstance(images, np.ndarray) and (
        images.ndim == 2 or (images.ndim == 3 and images.shape[2] in (3, 4))
    )


def predict(
    run,
    images: Sequence[ImageLike],
    top: int = 3,
    on_error: str = "raise",
    calibrated: bool = False,
    steps: bool = False,
) -> list[Prediction | Failed]:
    """Predict every image with a run (folder or Run), in order.

    ``images``: file paths, encoded bytes, PIL images, or arrays of any size, (H, W) grayscale
    or (H, W, 3|4) colour, or a stack (N, H, W) / (N, H, W, 3|4) of them: arrays go through the
    same preparation as files, so pass what a camera or a canvas gives. ``on_error``: "raise"
    stops at the first bad image (DataError); "collect" puts a ``Failed`` in its place.
    ``calibrated``: temperature-scaled probabilities (the run's calibration.json) instead of the
    raw softmax. ``steps``: each Prediction also keeps its preparation's steps
    (``imageprep.Step``).
    """
    if on_error not in ("raise", "collect"):
        raise ValueError(f"on_error: expected 'raise' or 'collect', got {on_error!r}")
    run = _load(run)
    run.finite_proba(np.zeros((1, 28, 28), np.uint8), before="predicting")  # diverged: say so
    calibration = _calibration(run, calibrated)  # a missing or damaged one: before any image
    if _is_one_image(images):
        images = [images]  # one image; an (N, H, W) or (N, H, W, C) array is N of them
    if len(images) == 0:
        raise DataError("no images given to predict")
    n_classes = len(run.class_names)
    if not 1 <= top <= n_classes:
        raise ValueError(f"top: expected 1..{n_classes}, got {top}")
    style = style_for(run.dataset_name)
    slots: list[Prediction | Failed | None] = []
    names, prepared, stages = [], [], []
    for i, item in enumerate(images):
        if isinstance(item, (str, os.PathLike)):
            name = str(item)
        else:
            name = f"<image {i}>" if not isinstance(item, np.ndarray) else f"<array {i}>"
        try:
            if isinstance(item, (str, os.PathLike, bytes)):
                x = load_image(item, style, name=name, steps=steps)
            else:
                x = prepare(item, name, style, steps=steps)
            x, made = x if steps else (x, None)
        except MnistlabError as exc:
            if on_error == "raise":
                raise
            slots.append(Failed(name, str(exc)))
            continue
        slots.append(None)
        names.append(name)
        prepared.append(x)
        stages.append(made)
    done = iter(
        predict_prepared(run, np.stack(prepared), names, top, calibrated, calibration)
        if prepared
        else []
    )
    results = [next(done) if s is None else s for s in slots]
    for r, made in zip((r for r in results if r.ok), stages):
        r.steps = made
    return results


def print_predictions(results: Sequence[Prediction | Failed], console=None) -> None:
    """A rich table: file, predicted class, its probability, the top-k; or the file's error."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    good = [r for r in results if r.ok]
    kind = good[0].kind if good else "raw"
    t = Table(title="Predictions")
    t.add_column("file", overflow="fold")  # a long path folds onto more lines, never "..."
    t.add_column("predicted")
    t.add_column(f"probability ({kind})", justify="right")
    t.add_column("verdict")
    t.add_column(f"top {len(good[0].top)}" if good else "top")
    for r in results:
        if r.ok:
            t.add_row(
                escape(r.source),
                _class(r.predicted, r.label),
                f"{r.probability:.4f}",
                r.verdict,
                ", ".join(f"{_class(c, n)} {q:.3f}" for c, n, q in r.top),
            )
        else:
            t.add_row(escape(r.source), "[red]error[/red]", "", "", escape(r.error))
    console.print(t)
    if good and kind == "raw":
        console.print(
            "probabilities: the raw softmax, often surer than the model is right; "
            "--calibrated uses the run's calibration.json"
        )
    if good and good[0].ood is None:
        console.print(
            "not checked for inputs unlike the training images: the run is not calibrated"
        )


def show(results: Sequence[Prediction | Failed], class_names: Sequence[str], path) -> Path:
    """A PNG: per predicted image, the prepared 28x28 input beside its probabilities (its
    preparation step by step, when the predictions kept their steps)."""

    good = [r for r in results if r.ok]
    if not good:
        raise DataError(f"{path}: no image was predicted, nothing to show")
    if len(good) > plots.PREDICTIONS_SHOWN:
        warnings.warn(
            f"{path}: shows the first {plots.PREDICTIONS_SHOWN} of the {len(good)} predicted "
            "images (a figure of more would take minutes to draw)",
            stacklevel=2,
        )
    titles = [
        f"{Path(r.source).name if not r.source.startswith('<') else r.source}\n"
        f"{r.verdict} ({r.kind})"
        for r in good
    ]
    return plots.predictions(
        [r.image for r in good],
        [r.probabilities for r in good],
        titles,
        class_names,
        path,
        steps=[r.steps for r in good],
    )


def _class(index: int, name: str) -> str:
    """'7' for digits, '9 (Ankle boot)' where the name is not the index."""
    return name if name == str(index) else f"{index} ({name})"
