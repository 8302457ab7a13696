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
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.check.verdict import Off

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
    from mnistlab import datasets

    return datasets.load(name, quiet=True)


def reference(dataset=None, n_train: int | None = None, n_test: int | None = None):
    """The Dataset to check against: ``dataset`` (a Dataset or a name), else the tutorial's
    MNIST whose train or test size matches the learner's arrays."""
    from mnistlab.datasets import registry
    from mnistlab.errors import MnistlabError

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
        from mnistlab.errors import MnistlabError
        from mnistlab.rundir import load_run

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
    "or probabilities (N, 10) in the test set's order, as arrays or .npy files"
)


def as_list(value: Any) -> list[Any]:
    """One model's answer or several: an array, a path or a run is one; a list or tuple, many."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def resolve(item: Any, name: str) -> Any:
    """A mnistlab Run (a run folder is loaded), or the predictions as an array (a .npy file is
    read, without pickles)."""
    from mnistlab.recipe import Recipe

    if isinstance(getattr(item, "recipe", None), Recipe) and hasattr(item, "predict_proba"):
        return item
    if not isinstance(item, (str, Path)):
        return array(item, name)
    path = Path(item)
    if path.is_dir():
        from mnistlab.errors import MnistlabError
        from mnistlab.rundir import load_run

        try:
            return load_run(path)
        except MnistlabError as exc:
            raise Off(f"{name}: {exc}", f"give {PREDICTION_FORMS}") from None
    if path.suffix.lower() != ".npy":
        raise Off(
            f"{name}: {path} is neither a run folder nor a .npy file", f"give {PREDICTION_FORMS}"
        )
    try:
        return array(np.load(path, allow_pickle=False), name)
    except (OSError, ValueError) as exc:
        raise Off(f"{name}: {path}: not a readable .npy array ({exc})") from None


def is_run(item: Any) -> bool:
    return not isinstance(item, np.ndarray)


def scored_on(items: list[Any], dataset=None) -> tuple[np.ndarray, np.ndarray]:
    """(test images, test labels) the resolved ``items`` are scored on: those of the first
    mnistlab run among them, else of ``dataset`` or of the tutorial's MNIST of their length."""
    runs = [i for i in items if is_run(i)]
    if runs and dataset is None:
        from mnistlab.evaluation.evaluate import split_data

        x, y = split_data(runs[0], "test")
        return x, np.asarray(y, dtype=np.int64)
    ds = reference(dataset, n_test=len(items[0]) if items and not runs else None)
    return ds.x_test, np.asarray(ds.y_test, dtype=np.int64)


def predicted(item: Any, name: str, x_test: np.ndarray, n_classes: int = 10):
    """(labels predicted for every test image, the run's seed or None) of a resolved item. A
    diverged run's NaN rows count as wrong answers (label -1)."""
    if not is_run(item):
        answer = labels(item, name, n_classes)
        if len(answer) != len(x_test):
            raise Off(
                f"{name}: {len(answer):,} predictions for {len(x_test):,} test images",
                "predict every test image, in the test set's order",
            )
        return answer, None
    proba = item.predict_proba(x_test)
    answer = proba.argmax(axis=1).astype(np.int64)
    answer[~np.all(np.isfinite(proba), axis=1)] = -1
    return answer, int(item.recipe.seed)
