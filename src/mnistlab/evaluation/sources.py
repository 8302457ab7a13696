"""A source of test-set predictions: a run folder, a .npy file or an ONNX model, read as one
thing (``Predictions``) that ``evaluate`` and ``compare`` take, whatever framework made it.

* a run folder: its stored predictions.safetensors (the final model's probabilities), or, for a
  run made before runs stored them, its model's predictions recomputed on the recorded data;
* a ``.npy`` array in the test set's order: predicted labels (N,) as integers, or probabilities
  (N, classes), each row summing to 1 (e.g. ``np.save("keras.npy", model.predict(x_test))``);
* an ``.onnx`` model taking the images as (N, 28, 28), (N, 784), (N, 1, 28, 28) or
  (N, 28, 28, 1), in float or uint8, scaled as ``pixels`` says (raw 0-255 as ``mnistlab export``
  writes them, unit 0-1, or standardized with the training images' mean and std), answering
  probabilities or logits (a softmax is applied then, and said in ``note``).

The test set is the runs' own (all must share it: same dataset, files and number of test
images) or the named ``dataset``'s. Every input is checked against it (shape, dtype, range and
length) with one-line errors naming the file.

>>> kind_of(Path("keras.npy")), kind_of(Path("model.onnx"))
('npy', 'onnx')
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import datasets, rundir
from mnistlab.datasets.preprocess import normalization_stats
from mnistlab.errors import MnistlabError, RunError
from mnistlab.fsio import read_bytes
from mnistlab.recipe import Recipe

PIXELS = ("raw", "unit", "standardize")
NPY_LIMIT = 2**31  # bytes: 2 GiB holds the probabilities of 50 million images
_LAYOUTS = {(28, 28): "(N, 28, 28)", (784,): "(N, 784)", (1, 28, 28): "(N, 1, 28, 28)",
            (28, 28, 1): "(N, 28, 28, 1)"}  # fmt: skip
_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(uint8)": np.uint8}


class PredictionsError(MnistlabError):
    """A file of predictions (or a model) does not fit the test set it is scored on."""


@dataclasses.dataclass(frozen=True)
class ScoredImages:
    """The images every source is scored on: the first ``len(y)`` test images of ``dataset``."""

    name: str
    x: np.ndarray  # uint8 (N, 28, 28)
    y: np.ndarray  # int64 (N,)
    class_names: tuple[str, ...]
    dataset: Any  # the datasets.Dataset (its training images scale an ONNX model's input)

    def describe(self) -> str:
        return f"{self.name} ({len(self.y):,} test images)"


@dataclasses.dataclass(frozen=True)
class Predictions:
    """One source's answer for every test image: its labels, and probabilities when it gave
    them (None for a .npy of labels)."""

    name: str
    kind: str  # "run", "npy" or "onnx"
    path: Path
    labels: np.ndarray  # int64 (N,)
    proba: np.ndarray | None = None  # (N, classes)
    note: str | None = None  # what was done to read it, for the user to see

    def correct(self, test: ScoredImages) -> np.ndarray:
        """Which test images it classified right (the paired tests compare these)."""
        return self.labels == test.y


def kind_of(path: Path) -> str:
    """ "run", "npy" or "onnx" for a path, or a one-line error saying what is accepted."""
    if path.suffix.lower() == ".npy":
        return "npy"
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if path.is_dir() or not path.exists():
        return "run"
    raise PredictionsError(
        f"{path}: expected a run folder, a .npy of predictions or an .onnx model"
    )


def load(
    paths, dataset=None, data_dir=None, pixels: str = "raw"
) -> tuple[ScoredImages, list[Predictions]]:
    """The shared test set of ``paths`` and each one's predictions on it."""
    if pixels not in PIXELS:
        raise PredictionsError(f"--pixels: expected one of {', '.join(PIXELS)}, got {pixels!r}")
    paths = [Path(p) for p in paths]
    kinds = [kind_of(p) for p in paths]
    test = shared_test_images([p for p, k in zip(paths, kinds) if k == "run"], dataset, data_dir)
    return test, [read(p, k, test, pixels) for p, k in zip(paths, kinds)]


def shared_test_images(runs: list[Path], dataset=None, data_dir=None) -> ScoredImages:
    """The test set of the run folders ``runs`` (which must share it), else of ``dataset``
    (a name or a Dataset; default: full MNIST, else the bundled sample)."""

    if not runs:
        ds = dataset if isinstance(dataset, datasets.Dataset) else datasets.load(dataset, data_dir)
        return _test(ds, len(ds.y_test))
    records = [(run, _record(run)) for run in runs]
    first, record = records[0]
    for other, rec in records[1:]:
        if (rec.name, rec.checksums, rec.test) != (record.name, record.checksums, record.test):
            same = rec.name == record.name and rec.test == record.test
            raise PredictionsError(
                f"{other}: scored on {_said(rec)}{' from other files' if same else ''}, but "
                f"{first} on {_said(record)}; runs compare only on the same test images"
            )
    name = dataset.name if isinstance(dataset, datasets.Dataset) else dataset
    if name is not None and name != record.name:
        raise PredictionsError(
            f"--dataset {name}: the runs were scored on {_said(record)}; drop --dataset or "
            "compare runs of that dataset"
        )
    recipe_dir = Recipe.from_toml(first / rundir.RECIPE).data_dir
    ds = record.load(first / rundir.ENVIRONMENT, data_dir, recipe_dir)
    return _test(ds, record.test if record.test is not None else len(ds.y_test))


def _record(run: Path) -> rundir.DatasetRecord:
    env = rundir.run_folder(run) / rundir.ENVIRONMENT
    return rundir.DatasetRecord.from_environment(rundir.read_environment(env), env)


def _said(record) -> str:
    return f"{record.name!r} ({record.test:,} test images)" if record.test else repr(record.name)


def _test(ds, n: int) -> ScoredImages:
    y = np.asarray(ds.y_test[:n], dtype=np.int64)
    return ScoredImages(ds.name, ds.x_test[:n], y, tuple(ds.class_names), ds)


def read(path: Path, kind: str, test: ScoredImages, pixels: str = "raw") -> Predictions:
    """One source's predictions on ``test``, checked against it."""
    reader = {"run": _from_run, "npy": _from_npy, "onnx": _from_onnx}[kind]
    return reader(Path(path), test, pixels)


def _from_run(path: Path, test: ScoredImages, _pixels: str) -> Predictions:
    stored = path / rundir.PREDICTIONS
    if stored.is_file():
        proba = rundir.read_predictions(stored)["proba"]
        if proba.shape != (len(test.y), len(test.class_names)):
            raise RunError(
                f"{stored}: probabilities of shape {proba.shape}, but the run's test set is "
                f"{test.describe()}; delete the file to have them recomputed"
            )
        if not np.all(np.isfinite(proba)):
            raise RunError(f"{stored}: the model predicts NaN/inf (training diverged?)")
        note = None
    else:  # a run made before runs stored their predictions
        proba = rundir.load_run(path).finite_proba(test.x, before="comparing it")
        note = "no stored predictions (an older run): recomputed from its model"
    labels = proba.argmax(axis=1).astype(np.int64)
    return Predictions(path.name, "run", path, labels, proba, note)


def _from_npy(path: Path, test: ScoredImages, _pixels: str) -> Predictions:
    try:
        data = read_bytes(path, "a .npy file", NPY_LIMIT, PredictionsError)
        a = np.load(io.BytesIO(data), allow_pickle=False)
    except FileNotFoundError:
        raise PredictionsError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as exc:  # pickled objects, truncated, not .npy
        raise PredictionsError(f"{path}: not a readable .npy array ({exc})") from None
    n, c = len(test.y), len(test.class_names)
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[1] != c):
        raise PredictionsError(
            f"{path}: an array of shape {a.shape}, expected labels ({n},) or probabilities "
            f"({n}, {c}) for {test.describe()}"
        )
    if len(a) != n:
        raise PredictionsError(
            f"{path}: {len(a):,} predictions, but the test set of {test.name} has {n:,} images "
            "(one prediction per test image, in its order)"
        )
    if a.ndim == 1:
        return Predictions(path.name, "npy", path, _labels(path, a, c))
    proba = _probabilities(path, a)
    return Predictions(path.name, "npy", path, proba.argmax(axis=1).astype(np.int64), proba)


def _labels(path: Path, a: np.ndarray, c: int) -> np.ndarray:
    if not np.issubdtype(a.dtype, np.integer):
        raise PredictionsError(
            f"{path}: labels of dtype {a.dtype}, expected integers 0..{c - 1} (e.g. "
            "model.predict(x).argmax(axis=1))"
        )
    if a.min() < 0 or a.max() >= c:
        raise PredictionsError(
            f"{path}: labels from {a.min()} to {a.max()}, expected integers 0..{c - 1}"
        )
    return a.astype(np.int64)


def _probabilities(path: Path, a: np.ndarray) -> np.ndarray:
    if not np.issubdtype(a.dtype, np.floating):
        raise PredictionsError(f"{path}: probabilities of dtype {a.dtype}, expected floats")
    if not np.all(np.isfinite(a)):
        raise PredictionsError(f"{path}: holds NaN or infinite probabilities")
    sums = a.sum(axis=1, dtype=np.float64)
    if a.min() < 0 or a.max() > 1 or np.abs(sums - 1).max() > 1e-3:
        raise PredictionsError(
            f"{path}: rows from {a.min():.3g} to {a.max():.3g} summing to {sums.min():.3g}.."
            f"{sums.max():.3g}, expected probabilities in [0, 1] summing to 1 (logits? apply "
            "a softmax first)"
        )
    return a


def _from_onnx(path: Path, test: ScoredImages, pixels: str) -> Predictions:
    session = _session(path)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise PredictionsError(f"{path}: the model takes {len(inputs)} inputs, expected one")
    spec = inputs[0]
    layout = tuple(spec.shape[1:])
    dtype = _ONNX_TYPES.get(spec.type)
    if layout not in _LAYOUTS or dtype is None or len(spec.shape) < 2:
        raise PredictionsError(
            f"{path}: input {spec.name!r} is {spec.type} of shape {spec.shape}, expected float or "
            f"uint8 images as {', '.join(_LAYOUTS.values())}"
        )
    if dtype is np.uint8 and pixels != "raw":
        raise PredictionsError(f"{path}: the model takes uint8 pixels, so --pixels must be raw")
    x = _scaled(test, pixels).astype(dtype, copy=False).reshape(len(test.y), *layout)
    out = _run_batches(session, spec, x)
    c = len(test.class_names)
    if out.shape != (len(test.y), c):
        raise PredictionsError(
            f"{path}: answers of shape {out.shape}, expected ({len(test.y)}, {c}): one row of "
            "class scores per image"
        )
    out = out.astype(np.float64)
    note = None
    if not np.all(np.isfinite(out)):
        raise PredictionsError(f"{path}: the model answers NaN or infinity")
    if out.min() < 0 or np.abs(out.sum(axis=1) - 1).max() > 1e-3:
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out /= out.sum(axis=1, keepdims=True)
        note = "its outputs are not probabilities (rows do not sum to 1): read as logits"
    return Predictions(path.name, "onnx", path, out.argmax(axis=1).astype(np.int64), out, note)


def _session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise PredictionsError(
            f"{path}: reading an ONNX model needs onnxruntime: pip install 'mnistlab[export]'"
        ) from None
    if not path.is_file():
        raise PredictionsError(f"{path}: no such file")
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types for every kind of bad model
        text = " ".join(str(exc).split())[:200]
        raise PredictionsError(f"{path}: not an ONNX model onnxruntime can run ({text})") from None


def _scaled(test: ScoredImages, pixels: str) -> np.ndarray:
    x = np.asarray(test.x)
    if pixels == "raw":
        return x
    if pixels == "unit":
        return x.astype(np.float32) / np.float32(255)

    mean, std = normalization_stats(test.dataset.x_train, "standardize")
    return ((x.astype(np.float32) - np.float32(mean)) / np.float32(std)).astype(np.float32)


def _run_batches(session, spec, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """The model's answers for all of ``x``, in batches (its own size when it fixes one)."""
    fixed = spec.shape[0] if isinstance(spec.shape[0], int) and spec.shape[0] > 0 else None
    size = fixed or batch
    parts = []
    for s in range(0, len(x), size):
        chunk = x[s : s + size]
        if fixed is not None and len(chunk) < fixed:  # pad the last batch to the model's size
            pad = np.zeros((fixed - len(chunk), *chunk.shape[1:]), chunk.dtype)
            answer = session.run(None, {spec.name: np.concatenate([chunk, pad])})[0]
            parts.append(answer[: len(chunk)])
        else:
            parts.append(session.run(None, {spec.name: chunk})[0])
    return np.concatenate(parts)
