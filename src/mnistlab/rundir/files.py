"""The files of a run folder, each written atomically and read back verified.

model.safetensors and checkpoint.safetensors carry SHA-256s of their tensors and metadata, so a
changed byte is a RunError naming the file, never a silently different model. history.csv keeps
every bit of each float (``repr``), so a resumed run's history compares exactly.

>>> import tempfile, numpy as np
>>> from mnistlab.recipe import Recipe
>>> from mnistlab.engines.init import init_weights
>>> d = Path(tempfile.mkdtemp())
>>> r = Recipe()
>>> write_model(d / "m.safetensors", init_weights(r), 33.3, 78.6, tuple("0123456789"), r, "x")
>>> read_model(d / "m.safetensors")["mean"]
33.3
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import MnistlabError, RunError
from mnistlab.fsio import atomic_write_bytes, atomic_write_json, atomic_write_text
from mnistlab.recipe import Recipe
from mnistlab.rundir import lock
from mnistlab.rundir.folder import HISTORY_FIELDS, METRICS, RECIPE

MODEL_FORMAT = "mnistlab-model/1"
CHECKPOINT_FORMAT = "mnistlab-checkpoint/1"


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
    from mnistlab.engines.arch import network

    want = network(recipe, n_classes).shapes
    got = {k: tuple(v.shape) for k, v in weights.items()}
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

    path = Path(run_dir) / METRICS
    with lock.hold(run_dir, wait=60.0, command="update metrics.json"):
        current = read_json(path) if path.exists() else {}
        atomic_write_json(path, _jsonable(_merge(current, updates)))
        return read_json(path)


def _merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
