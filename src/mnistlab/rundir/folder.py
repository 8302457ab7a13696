"""A run folder's names and how one is made: atomically, under a name that says what it holds.

A finished run holds::

    recipe.toml        the recipe, exactly as trained
    history.csv        one row per epoch: loss, accuracy, val_loss, val_accuracy, lr, seconds
    metrics.json       shared JSON object: "train" and "test" (train), "evaluation" (evaluate)
    model.safetensors  weights + normalization statistics; recipe, class names, dataset and
                       SHA-256s of the tensors and of the metadata (so tampering is detected)
    environment.json   versions, threads, seed, engine, device, dataset name/checksums/note
    predictions.safetensors  the test set's class probabilities per image, from the final model
    checkpoint.safetensors  weights + optimizer state + history after the last finished epoch,
                       and the recipe it was made with (resume refuses an edited recipe.toml)
    .lock              only while a process writes the run (see rundir/lock.py)

and, written by later commands, report.html (``mnistlab report``) and model.onnx (``mnistlab
export``). These names are written here and nowhere else, with the largest size each reader
accepts (``LIMITS``, checked before a byte is read).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from mnistlab.errors import RunError
from mnistlab.fsio import _umask, atomic_write_bytes, fs_error, fs_errors, make_dirs, normalize
from mnistlab.paths import runs_dir
from mnistlab.recipe import Recipe, base_of, changes

RECIPE, HISTORY, METRICS, MODEL, ENVIRONMENT, CHECKPOINT = (
    "recipe.toml",
    "history.csv",
    "metrics.json",
    "model.safetensors",
    "environment.json",
    "checkpoint.safetensors",
)
REQUIRED = (RECIPE, HISTORY, METRICS, MODEL, ENVIRONMENT)
REPORT, ONNX = "report.html", "model.onnx"
# The finished run's per-image test-set class probabilities (float32, N x classes, in the test
# set's order), so runs compare on the same images without recomputing them.
PREDICTIONS = "predictions.safetensors"
# Far above what a run writes (a history row is ~150 bytes: 16 MiB is 100,000 epochs; metrics
# with two evaluations ~20 KiB), far below what would exhaust memory. recipe.toml is read as
# every recipe is, under fsio.TOML_LIMIT. The safetensors files hold what training held in
# memory, so their bound is generous: it is there to refuse a wrong file, not a big model.
LIMITS = {
    HISTORY: 16 * 2**20,
    METRICS: 16 * 2**20,
    ENVIRONMENT: 2**20,
    MODEL: 16 * 2**30,
    CHECKPOINT: 16 * 2**30,
    PREDICTIONS: 2**30,  # 10,000 x 10 float32 is 400 KB; EMNIST-sized sets fit many times over
}
NAME_WORDS = 60  # characters of a default run name's change words; the rest are counted
JSON_LIMIT = 16 * 2**20  # other JSON read by rundir.read_json (a compare's leaderboard.json)
HISTORY_FIELDS = (
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
)


# ---- the folder -------------------------------------------------------------------------
def run_name(recipe: Recipe) -> str:
    """The name a run folder gets after its UTC time: what ``recipe`` changes from the recipe it
    was made from (the notebook's, or the preset its name names), so runs can be told apart;
    a name of its own wins. Short: past ``NAME_WORDS`` characters the other changes are counted.

    >>> run_name(Recipe()), run_name(Recipe(normalize="none"))
    ('notebook', 'normalize-none')
    >>> run_name(Recipe(optimizer="adam", lr=0.001, dropout=0.2, batch_norm=True))
    'adam-lr0.001-dropout0.2-bn'
    >>> run_name(Recipe(name="mine", epochs=2))
    'mine'
    """
    preset, base = base_of(recipe)
    if preset is None:
        return recipe.name
    words = changes(recipe, base)
    kept = [] if preset == "notebook" and words else [preset]
    for k, word in enumerate(words):
        if kept and len("-".join([*kept, word])) > NAME_WORDS:
            kept.append(f"{len(words) - k}more")
            break
        kept.append(word)
    return "-".join(kept)


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
    """A fresh folder: ``out`` (must not hold files yet) or runs/<UTC timestamp>-<run_name>.

    With ``files`` (name -> content) the folder appears with them all or not at all: it is built
    under a temporary name in the same parent and renamed into place, so a kill leaves no
    half-made run.
    """
    if out is not None:
        path = normalize(check_free(out))
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        base = normalize(runs_dir() / f"{stamp}-{run_name(recipe)}")
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
