"""Reading what a learner hands a check, whatever made it: NumPy arrays, PyTorch tensors, lists,
.npy files, Keras histories and mnistlab runs, each turned into plain NumPy or plain rows.

It also finds the dataset the learner's arrays come from, to check them against: the one
named, else the MNIST the tutorial uses whose size matches (the bundled sample or the full set).

>>> array([[1, 2], [3, 4]], "x").shape
(2, 2)
>>> labels(np.eye(3)[[2, 0]], "y", n_classes=3).tolist()
[2, 0]
>>> [r["loss"] for r in history_rows([2.3, 0.5], "raw")]
[2.3, 0.5]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import datasets
from mnistlab.check.verdict import Off
from mnistlab.datasets import registry
from mnistlab.errors import MnistlabError
from mnistlab.evaluation import sources
from mnistlab.recipe import Recipe
from mnistlab.rundir import RECIPE, load_run

TUTORIAL_DATASETS = ("mnist-sample", "mnist")  # what the notebook loads, sample first
TRAINING_PARTS = (0.3, 0.2)  # the tutorial's validation splits: the retraining's, the first fit's
HISTORY_FORMS = (
    "a mnistlab run, a Keras History (what model.fit returns), a list of per-epoch losses, "
    "or a list of rows with 'loss' (and 'accuracy')"
)


def array(value: Any, name: str) -> np.ndarray:
    """``value`` as a NumPy array (a tensor is detached and moved to the CPU first)."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # TF / Keras tensor
        value = value.numpy()
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise Off(f"{name}: cannot be read as an array ({exc})") from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise Off(f"{name}: expected numbers, got {type(value).__name__} of dtype {a.dtype}")
    return a


def labels(value: Any, name: str, n_classes: int = 10) -> np.ndarray:
    """Class indices (N,) from labels, one-hot rows or probabilities (N, n_classes)."""
    a = array(value, name)
    if a.ndim == 2 and a.shape[1] == n_classes:
        return a.argmax(axis=1).astype(np.int64)
    if a.ndim != 1:
        raise Off(
            f"{name}: an array of shape {a.shape}; expected labels (N,) or one row of "
            f"{n_classes} scores per image (N, {n_classes})"
        )
    if a.size and (not np.all(np.isfinite(a)) or np.any(a != np.round(a))):
        raise Off(f"{name}: labels must be whole numbers 0..{n_classes - 1}")
    return a.astype(np.int64)


@functools.lru_cache(maxsize=4)
def _load(name: str):

    return datasets.load(name, quiet=True)


def reference(dataset=None, n_train: int | None = None, n_test: int | None = None):
    """The Dataset to check against: ``dataset`` (a Dataset or a name), else the tutorial's
    MNIST whose train or test size matches the learner's arrays."""

    if dataset is not None and not isinstance(dataset, str):
        return dataset
    names = [dataset] if dataset is not None else list(TUTORIAL_DATASETS)
    for name in names:
        spec = registry.get(name)
        if dataset is not None or n_train == spec.n_train or n_test == spec.n_test:
            try:
                return _load(name)
            except MnistlabError as exc:
                raise Off(f"cannot load {name} to check against: {exc}") from None
    sizes = ", ".join(
        f"{n} ({registry.get(n).n_train:,} train / {registry.get(n).n_test:,} test)"
        for n in TUTORIAL_DATASETS
    )
    got = n_train if n_train is not None else n_test
    raise Off(
        f"{got:,} images match neither {sizes}",
        "pass dataset=... (a name or the Dataset you loaded) when you work on another set",
    )


def pixel_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) of each column of images (N, pixels), in float64, a few thousand rows
    at a time (a float copy of full MNIST would take 376 MB). Over all pixels, the mean is the
    mean of the means, and the variance the mean of the variances plus the variance of the
    means."""
    s1 = np.zeros(x.shape[1])
    s2 = np.zeros(x.shape[1])
    for start in range(0, len(x), 4096):
        part = np.asarray(x[start : start + 4096], dtype=np.float64)
        s1 += part.sum(axis=0)
        s2 += np.square(part).sum(axis=0)
    n = max(len(x), 1)
    mean = s1 / n
    return mean, np.maximum(s2 / n - mean**2, 0.0)


def overall(mean: np.ndarray, var: np.ndarray) -> tuple[float, float]:
    """The mean and variance over all pixels from the per-pixel ones (equal counts)."""
    return float(mean.mean()), float(var.mean() + mean.var())


# ---- loss histories ---------------------------------------------------------------------
def history_rows(history: Any, name: str) -> list[dict[str, Any]]:
    """Per-epoch rows with 'loss' (and 'accuracy', 'val_loss', 'val_accuracy' when known)."""
    if hasattr(history, "history") and isinstance(history.history, dict):  # Keras History
        history = history.history
    elif hasattr(history, "history") and hasattr(history, "recipe"):  # a mnistlab Run
        history = history.history
    elif isinstance(history, (str, Path)):
        try:
            history = load_run(history).history
        except MnistlabError as exc:
            raise Off(f"{name}: {exc}", f"give {HISTORY_FORMS}") from None
    if isinstance(history, dict):
        return _columns(history, name)
    try:
        rows = list(history)
    except TypeError:
        raise Off(f"{name}: a {type(history).__name__}", f"give {HISTORY_FORMS}") from None
    if not rows:
        raise Off(f"{name}: an empty history (no epoch trained)", f"give {HISTORY_FORMS}")
    if all(isinstance(r, dict) for r in rows):
        if not all("loss" in r for r in rows):
            raise Off(f"{name}: rows without a 'loss'", f"give {HISTORY_FORMS}")
        return [{"epoch": i + 1, **r} for i, r in enumerate(rows)]
    losses = array(rows, name).astype(np.float64)
    if losses.ndim != 1:
        raise Off(f"{name}: losses of shape {losses.shape}", f"give {HISTORY_FORMS}")
    return [{"epoch": i + 1, "loss": float(v)} for i, v in enumerate(losses)]


def _columns(history: dict[str, Any], name: str) -> list[dict[str, Any]]:
    if "loss" not in history:
        raise Off(f"{name}: no 'loss' in {sorted(history)}", f"give {HISTORY_FORMS}")
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in history]
    columns = {k: array(history[k], f"{name}[{k!r}]").astype(np.float64) for k in keys}
    n = len(columns["loss"])
    if n == 0:
        raise Off(f"{name}: an empty history (no epoch trained)", f"give {HISTORY_FORMS}")
    return [{"epoch": i + 1, **{k: float(c[i]) for k, c in columns.items()}} for i in range(n)]


# ---- test-set predictions ---------------------------------------------------------------
PREDICTION_FORMS = (
    "mnistlab runs (or their folders), or test-set predictions from any framework: labels (N,) "
    "or probabilities (N, 10) in the test set's order, as arrays, .npy files or an .onnx model"
)


@dataclass(frozen=True)
class Source:
    """One model's test-set answers to read: a file or folder ``evaluation.sources`` reads
    (``kind`` run, npy or onnx), or an array in memory; ``seed`` is a run's."""

    name: str
    kind: str  # "run", "npy", "onnx" or "array"
    path: Path | None = None
    values: np.ndarray | None = None
    seed: int | None = None


def as_list(value: Any) -> list[Any]:
    """One model's answer or several: an array, a path or a run is one; a list or tuple, many."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def source(item: Any, name: str) -> Source:
    """What ``item`` is: a mnistlab Run or its folder, a .npy or .onnx file, or an array."""

    if isinstance(getattr(item, "recipe", None), Recipe) and hasattr(item, "path"):
        return Source(name, "run", Path(item.path), seed=int(item.recipe.seed))
    if not isinstance(item, (str, Path)):
        return Source(name, "array", values=array(item, name))
    path = Path(item)
    if not path.exists():
        raise Off(f"{name}: {path}: no such file or folder", f"give {PREDICTION_FORMS}")
    try:
        kind = sources.kind_of(path)
        seed = Recipe.from_toml(path / RECIPE).seed if kind == "run" else None
    except MnistlabError as exc:
        raise Off(f"{name}: {exc}", f"give {PREDICTION_FORMS}") from None
    return Source(name, kind, path, seed=seed)


def scored_on(items: list[Source], dataset=None):
    """The test set (``evaluation.sources.ScoredImages``) the items are scored on: their runs'
    (which must share it), else ``dataset``'s or the tutorial's MNIST of their length."""

    runs = [i.path for i in items if i.kind == "run"]
    try:
        if runs:
            return sources.shared_test_images(runs, dataset)
        first = next(i for i in items if i.kind in ("array", "npy"))
        n = len(first.values) if first.values is not None else len(_npy(first))
        ds = reference(dataset, n_test=n)
        return sources.shared_test_images([], ds)
    except StopIteration:
        raise Off("no run and no predictions to tell the test set by", "pass dataset=...") from None
    except MnistlabError as exc:
        raise Off(str(exc)) from None


def _npy(item: Source) -> np.ndarray:
    try:
        return np.load(item.path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise Off(f"{item.name}: {item.path}: not a readable .npy array ({exc})") from None


def predicted(item: Source, test) -> np.ndarray:
    """The labels ``item`` predicts for every image of ``test``, checked against it."""

    if item.kind != "array":
        try:
            return sources.read(item.path, item.kind, test).labels
        except MnistlabError as exc:
            raise Off(f"{item.name}: {exc}") from None
    answer = labels(item.values, item.name, len(test.class_names))
    if len(answer) != len(test.y):
        raise Off(
            f"{item.name}: {len(answer):,} predictions for {len(test.y):,} test images",
            "predict every test image, in the test set's order",
        )
    return answer
