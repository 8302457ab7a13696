"""The run folder's safetensors files, each written atomically and read back verified.

model.safetensors and checkpoint.safetensors carry SHA-256s of their tensors and metadata, so a
changed byte is a RunError naming the file, never a silently different model. The text files
(history.csv, metrics.json, environment.json) are ``rundir.records``'.

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

import dataclasses
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.engines.arch import network
from mnistlab.errors import MnistlabError, RunError
from mnistlab.fsio import atomic_write_bytes, read_bytes
from mnistlab.recipe import Recipe
from mnistlab.rundir.folder import CHECKPOINT, LIMITS, MODEL, PREDICTIONS, RECIPE

MODEL_FORMAT = "mnistlab-model/1"
CHECKPOINT_FORMAT = "mnistlab-checkpoint/1"
PREDICTIONS_FORMAT = "mnistlab-predictions/1"
_FILE_OF = {MODEL_FORMAT: MODEL, CHECKPOINT_FORMAT: CHECKPOINT, PREDICTIONS_FORMAT: PREDICTIONS}


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
    atomic_write_bytes(path, _canonical(save(tensors, metadata=metadata)))


def _canonical(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys in sorted order: safetensors writes
    the header from a hash map, whose order changes from process to process, so two identical
    runs would otherwise differ in bytes. The tensor data (its order is safetensors' own, by
    dtype then name) is kept; the header is padded with spaces to 8 bytes, as the format asks."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob[8 + n :]


def _meta_digest(metadata: dict[str, str]) -> str:
    """SHA-256 of the metadata (recipe, class names, history...) except its own checksums: a
    changed byte there can still be valid JSON, which only a checksum catches."""
    body = {k: v for k, v in metadata.items() if k not in ("sha256", "metadata_sha256")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _load(path: Path, expected_format: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of a safetensors file written by ``_save``, verified."""
    from safetensors.numpy import load

    try:
        limit = LIMITS[_FILE_OF[expected_format]]
        data = read_bytes(path, "a safetensors file", limit, RunError)
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
    path: Path, recipe: Recipe | None = None, also_epochs: tuple[int, ...] = ()
) -> tuple[dict[str, np.ndarray], int, list[dict[str, Any]]]:
    """(state, epoch, history); with ``recipe``, RunError naming the first field in which it
    differs from the recipe the checkpoint was made with. ``also_epochs``: epoch counts the
    run had before it was extended (environment.json's "extended"), which the checkpoint's
    recipe may still state, all else equal."""
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
    if made_with is not None and made_with.epochs in also_epochs:
        made_with = made_with.replace(epochs=recipe.epochs if recipe else made_with.epochs)
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


# ---- predictions.safetensors ------------------------------------------------------------
def write_predictions(
    path: Path, proba: np.ndarray, class_names: tuple[str, ...], dataset_name: str
) -> None:
    """The final model's class probabilities of every test image, (N, classes) float32."""
    _save(
        Path(path),
        {"proba": np.asarray(proba, dtype=np.float32)},
        {
            "format": PREDICTIONS_FORMAT,
            "class_names": json.dumps(list(class_names)),
            "dataset": dataset_name,
        },
    )


def read_predictions(path: Path) -> dict[str, Any]:
    """{"proba", "class_names", "dataset"} from predictions.safetensors, verified."""
    path = Path(path)
    tensors, meta = _load(path, PREDICTIONS_FORMAT)
    try:
        proba = tensors["proba"]
        class_names = tuple(json.loads(meta["class_names"]))
        dataset = meta["dataset"]
    except (KeyError, ValueError) as exc:
        raise RunError(f"{path}: incomplete metadata ({exc})") from None
    if proba.ndim != 2 or proba.shape[1] != len(class_names):
        raise RunError(
            f"{path}: probabilities of shape {proba.shape}, expected (N, {len(class_names)})"
        )
    return {"proba": proba, "class_names": class_names, "dataset": dataset}
