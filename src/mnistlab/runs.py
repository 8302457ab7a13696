"""The run folder: everything downstream (evaluate, predict, resume) takes one of these.

A finished run holds::

    recipe.toml        the recipe, exactly as trained
    history.csv        one row per epoch: loss, accuracy, val_loss, val_accuracy, lr, seconds
    metrics.json       shared JSON object: "train" and "test" (train), "evaluation" (evaluate)
    model.safetensors  weights + normalization statistics; recipe, class names, dataset and
                       SHA-256s of the tensors and of the metadata (so tampering is detected)
    environment.json   versions, threads, seed, engine, device, dataset name/checksums/note
    checkpoint.safetensors  weights + optimizer state + history after the last finished epoch,
                       and the recipe it was made with (resume refuses an edited recipe.toml)
    .lock              only while a process writes the run (see runlock.py)

Every file is written atomically (temp file + rename). ``load_run`` checks all of them and turns
any damage into a RunError naming the file. No torch here: a run predicts through
``engines.predictor`` (NumPy when the fast path supports the recipe); input scaling is
``mnistlab.normalize``.

>>> import tempfile, numpy as np
>>> from mnistlab.recipe import Recipe
>>> from mnistlab.initializers import init_weights
>>> d = Path(tempfile.mkdtemp())
>>> r = Recipe()
>>> write_model(d / MODEL, init_weights(r), 33.3, 78.6, tuple("0123456789"), r, "mnist")
>>> read_model(d / MODEL)["mean"]
33.3
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import hashlib
import io
import json
import math
import os
import shutil
import struct
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab._io import (
    _umask,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    fs_error,
    fs_errors,
    make_dirs,
    normalize,
)
from mnistlab.errors import MnistlabError, RunError
from mnistlab.normalize import preprocess
from mnistlab.recipe import Recipe

RECIPE, HISTORY, METRICS, MODEL, ENVIRONMENT, CHECKPOINT = (
    "recipe.toml",
    "history.csv",
    "metrics.json",
    "model.safetensors",
    "environment.json",
    "checkpoint.safetensors",
)
REQUIRED = (RECIPE, HISTORY, METRICS, MODEL, ENVIRONMENT)
HISTORY_FIELDS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
)
MODEL_FORMAT = "mnistlab-model/1"
CHECKPOINT_FORMAT = "mnistlab-checkpoint/1"


# ---- the Run object ---------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """A loaded run folder. ``predict_proba`` takes raw uint8 images."""

    path: Path
    recipe: Recipe
    weights: dict[str, np.ndarray]
    mean: float
    std: float
    class_names: tuple[str, ...]
    history: list[dict[str, Any]]
    dataset_name: str
    engine: str
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    environment: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)  # health check, this session
    stopped: str | None = None  # why training stopped early, if it did
    _predict: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def preprocess(self, x: np.ndarray) -> np.ndarray:
        return preprocess(x, self.mean, self.std)

    def predict_proba(self, x: np.ndarray, batch_size: int = 10000) -> np.ndarray:
        """(N, n_classes) float32 softmax probabilities for uint8 images ``x``."""
        if self._predict is None:
            from mnistlab.engines import predictor

            self._predict = predictor(self.recipe, self.weights)
        predict = self._predict
        parts = [
            predict(self.preprocess(x[s : s + batch_size])) for s in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.class_names)), np.float32)


# ---- model.safetensors ------------------------------------------------------------------
def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.require(tensors[name], requirements="C")  # (ascontiguousarray would make 0-d 1-d)
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _save(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    from safetensors.numpy import save

    tensors = {k: np.require(v, requirements="C") for k, v in tensors.items()}
    metadata = {**metadata, "sha256": _digest(tensors), "metadata_sha256": _meta_digest(metadata)}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def _meta_digest(metadata: dict[str, str]) -> str:
    """SHA-256 of the metadata (recipe, class names, history...) except its own checksums: a
    changed byte there can still be valid JSON, which only a checksum catches."""
    body = {k: v for k, v in metadata.items() if k not in ("sha256", "metadata_sha256")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _load(path: Path, expected_format: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of a safetensors file written by ``_save``, verified."""
    from safetensors.numpy import load

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RunError(f"{path}: file is missing") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + n])
        metadata = header.get("__metadata__") or {}
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types for every kind of damage
        raise RunError(f"{path}: damaged or truncated safetensors file ({exc})") from None
    if metadata.get("format") != expected_format:
        raise RunError(f"{path}: not a {expected_format} file (format {metadata.get('format')!r})")
    if metadata.get("sha256") != _digest(tensors):
        raise RunError(f"{path}: checksum mismatch, the file was modified or damaged")
    # (files written before the metadata had a checksum have none to check)
    if "metadata_sha256" in metadata and metadata["metadata_sha256"] != _meta_digest(metadata):
        raise RunError(f"{path}: metadata checksum mismatch, the file was modified or damaged")
    return tensors, metadata


def write_model(
    path: Path,
    weights: dict[str, np.ndarray],
    mean: float,
    std: float,
    class_names: tuple[str, ...],
    recipe: Recipe,
    dataset_name: str,
) -> None:
    tensors = dict(weights)
    tensors["normalization.mean"] = np.array(mean, dtype=np.float64)
    tensors["normalization.std"] = np.array(std, dtype=np.float64)
    _save(
        Path(path),
        tensors,
        {
            "format": MODEL_FORMAT,
            "recipe": json.dumps(recipe.to_dict()),
            "class_names": json.dumps(list(class_names)),
            "dataset": dataset_name,
        },
    )


def read_model(path: Path) -> dict[str, Any]:
    """{"weights", "mean", "std", "class_names", "recipe", "dataset"} from model.safetensors."""
    path = Path(path)
    tensors, meta = _load(path, MODEL_FORMAT)
    try:
        mean = float(tensors.pop("normalization.mean"))
        std = float(tensors.pop("normalization.std"))
        recipe = Recipe.from_dict(json.loads(meta["recipe"]), source=f"{path} metadata")
        class_names = tuple(json.loads(meta["class_names"]))
        dataset = meta["dataset"]
    except (KeyError, ValueError, TypeError, MnistlabError) as exc:
        raise RunError(f"{path}: incomplete metadata ({exc})") from None
    _check_weights(path, recipe, tensors, len(class_names))
    return {
        "weights": tensors,
        "mean": mean,
        "std": std,
        "class_names": class_names,
        "recipe": recipe,
        "dataset": dataset,
    }


def _check_weights(
    path: Path, recipe: Recipe, weights: dict[str, np.ndarray], n_classes: int
) -> None:
    from mnistlab.initializers import init_weights

    want = {k: v.shape for k, v in init_weights(recipe, n_classes=n_classes).items()}
    got = {k: v.shape for k, v in weights.items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:4]
        raise RunError(
            f"{path}: weights do not match the recipe's network (first differences: {diff})"
        )


# ---- checkpoint -------------------------------------------------------------------------
def write_checkpoint(
    path: Path,
    state: dict[str, np.ndarray],
    epoch: int,
    history: list[dict[str, Any]],
    engine: str,
    recipe: Recipe | None = None,
) -> None:
    """State after ``epoch`` finished epochs; the history travels with it so the two never
    disagree, whatever moment a kill lands. ``recipe``, recorded too, pins how a resume goes on."""
    meta = {
        "format": CHECKPOINT_FORMAT,
        "epoch": str(epoch),
        "history": json.dumps(history),
        "engine": engine,
    }
    if recipe is not None:
        meta["recipe"] = json.dumps(recipe.to_dict())
    _save(Path(path), state, meta)


def read_checkpoint(
    path: Path, recipe: Recipe | None = None
) -> tuple[dict[str, np.ndarray], int, list[dict[str, Any]]]:
    """(state, epoch, history); with ``recipe``, RunError naming the first field in which it
    differs from the recipe the checkpoint was made with."""
    path = Path(path)
    tensors, meta = _load(path, CHECKPOINT_FORMAT)
    try:
        epoch, history = int(meta["epoch"]), json.loads(meta["history"])
        made_with = (
            Recipe.from_dict(json.loads(meta["recipe"]), source=f"{path} metadata")
            if "recipe" in meta
            else None
        )
    except (KeyError, ValueError, MnistlabError) as exc:
        raise RunError(f"{path}: incomplete metadata ({exc})") from None
    if recipe is not None and made_with is not None and made_with != recipe:
        name = next(
            f.name
            for f in dataclasses.fields(Recipe)
            if getattr(made_with, f.name) != getattr(recipe, f.name)
        )
        raise RunError(
            f"{path.parent / RECIPE}: field '{name}' is {getattr(recipe, name)!r} but "
            f"the checkpoint after epoch {epoch} was made with "
            f"{getattr(made_with, name)!r}; resume continues a run exactly as it "
            f"started: set it back, or train a new run with the changed recipe"
        )
    return tensors, epoch, history


# ---- history.csv ------------------------------------------------------------------------
def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        # repr keeps every bit of a float, so a resumed run's csv compares exactly.
        w.writerow({k: ("" if row.get(k) is None else repr(row[k])) for k in HISTORY_FIELDS})
    atomic_write_text(path, buf.getvalue())


def read_history(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunError(f"{path}: file is missing") from None
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != HISTORY_FIELDS:
        raise RunError(f"{path}: expected columns {', '.join(HISTORY_FIELDS)}")
    rows = []
    try:
        for line in reader:
            row: dict[str, Any] = {
                k: (None if line[k] in ("", None) else float(line[k])) for k in HISTORY_FIELDS
            }
            row["epoch"] = int(row["epoch"])
            rows.append(row)
    except (TypeError, ValueError) as exc:
        raise RunError(f"{path}: line {reader.line_num}: {exc}") from None
    return rows


# ---- metrics.json -----------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    """Strict JSON: non-finite floats (a diverged loss) become null."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def json_bytes(obj: Any) -> bytes:
    """``obj`` as the bytes ``atomic_write_json`` writes."""
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8")


def read_json(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: file is missing") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise RunError(f"{path}: expected a JSON object")
    return obj


def update_metrics(run_dir: str | Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into the run's metrics.json (read-modify-write under the run's lock,
    atomic); other writers' keys are kept, nested dicts merged. Returns the new object."""
    from mnistlab import runlock

    path = Path(run_dir) / METRICS
    with runlock.hold(run_dir, wait=60.0, command="update metrics.json"):
        current = read_json(path) if path.exists() else {}
        atomic_write_json(path, _jsonable(_merge(current, updates)))
        return read_json(path)


def _merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---- the folder -------------------------------------------------------------------------
def check_free(out: str | Path) -> Path:
    """``out`` as a Path if a new run may go there (absent or an empty folder), else RunError."""
    path = Path(out)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(
            f"{path}: already exists and is not an empty folder; choose another "
            "--out or continue it with --resume"
        )
    return path


def new_run_dir(
    recipe: Recipe, out: str | Path | None = None, files: dict[str, bytes] | None = None
) -> Path:
    """A fresh folder: ``out`` (must not hold files yet) or runs/<UTC timestamp>-<name>.

    With ``files`` (name -> content) the folder appears with them all or not at all: it is built
    under a temporary name in the same parent and renamed into place, so a kill leaves no
    half-made run.
    """
    if out is not None:
        path = normalize(check_free(out))
    else:
        from mnistlab.paths import runs_dir

        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        base = normalize(runs_dir() / f"{stamp}-{recipe.name}")
        path, k = base, 1
        while path.exists():
            k += 1
            path = base.with_name(f"{base.name}-{k}")
    if files is None:
        return make_dirs(path)
    make_dirs(path.parent)
    with fs_errors(path):
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a run folder is a plain folder
    try:
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
        base, k = path, 1
        while True:
            try:
                os.rename(tmp, path)  # onto an absent or empty folder; atomic
                return path
            except OSError as exc:
                # taken meanwhile: a default name gets a suffix, an explicit --out is refused
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or out is not None:
                    check_free(path)
                    raise fs_error(exc, path) from None
                k += 1
                path = base.with_name(f"{base.name}-{k}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def run_folder(path: str | Path) -> Path:
    """``path`` as a Path when it is a folder, else a RunError saying what is there instead."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(
            f"{path}: is a file, expected a run folder"
            if path.exists()
            else f"{path}: no such run folder"
        )
    return path


def load_run(path: str | Path) -> Run:
    """Read and verify a finished run folder; any problem is a RunError naming the file."""
    path = run_folder(path)
    for name in REQUIRED:
        if not (path / name).is_file():
            raise RunError(
                f"{path / name}: file is missing (the run is incomplete; "
                f"if training was interrupted, continue it with --resume)"
            )
    recipe = Recipe.from_toml(path / RECIPE)
    model = read_model(path / MODEL)
    if model["recipe"] != recipe:
        raise RunError(f"{path / MODEL}: its recipe differs from {path / RECIPE}")
    env = read_json(path / ENVIRONMENT)
    return Run(
        path=path,
        recipe=recipe,
        weights=model["weights"],
        mean=model["mean"],
        std=model["std"],
        class_names=model["class_names"],
        history=read_history(path / HISTORY),
        dataset_name=model["dataset"],
        engine=str(env.get("engine", "")),
        metrics=read_json(path / METRICS),
        environment=env,
    )
