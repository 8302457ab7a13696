"""What a runs folder holds, one entry per folder: the table of ``mnistlab runs``.

Each folder under it is read for what it is: a run (recipe.toml), a compare (leaderboard.json
or its runs/; comparison.json for trained models), a search (trials.csv or study.db) or an
explore (summary.json), every file through its bounded reader, so a damaged folder is one
entry saying what is wrong, never a traceback or a missing row. Other folders (not made by
mnistlab) are not listed. Entries come sorted by date.

>>> import tempfile
>>> listing(tempfile.mkdtemp())
[]
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError, RunError
from mnistlab.fsio import read_text
from mnistlab.paths import runs_dir
from mnistlab.recipe import Recipe, base_of, changes
from mnistlab.rundir import schema
from mnistlab.rundir.dataset import DatasetRecord
from mnistlab.rundir.folder import (
    ENVIRONMENT,
    HISTORY,
    LIMITS,
    METRICS,
    MODEL,
    RECIPE,
    run_folder,
)
from mnistlab.rundir.lock import LOCK
from mnistlab.rundir.records import read_environment, read_history, read_json, read_metrics

KINDS = ("run", "compare", "search", "explore")
LEADERBOARD, COMPARISON, TRIALS, STUDY, BEST, IMPORTANCE, SUMMARY = (
    "leaderboard.json",
    "comparison.json",
    "trials.csv",
    "study.db",
    "best_recipe.toml",
    "importance.json",
    "summary.json",
)
CHANGES_WIDTH = 48  # characters of the changes column before the rest is counted


@dataclasses.dataclass(frozen=True)
class Entry:
    """One folder: ``kind`` (run, compare, search, explore), the dataset, what it changes from
    the notebook's recipe, epochs trained (of planned), test accuracy, health ("ok", what went
    wrong, "incomplete", "training", or "damaged: <why>") and its UTC date (ISO 8601)."""

    name: str
    path: str
    kind: str
    dataset: str | None = None
    changes: str = ""
    epochs: int | None = None
    planned_epochs: int | None = None
    test_accuracy: float | None = None
    health: str = "ok"
    date: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def listing(folder: str | Path | None = None) -> list[Entry]:
    """One Entry per mnistlab folder directly under ``folder`` (default: the runs folder),
    oldest first."""
    root = run_folder(folder if folder is not None else runs_dir())
    entries = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or not path.is_dir():
            continue
        kind = kind_of(path)
        if kind is not None:
            entries.append(_entry(path, kind))
    return sorted(entries, key=lambda e: (e.date or "", e.name))


def kind_of(path: Path) -> str | None:
    """What made ``path``: "run", "compare", "search", "explore", or None (not mnistlab)."""
    if any((path / f).is_file() for f in (RECIPE, ENVIRONMENT, MODEL)):
        return "run"
    if any((path / f).is_file() for f in (LEADERBOARD, COMPARISON)) or (path / "runs").is_dir():
        return "compare"
    if (path / TRIALS).is_file() or (path / STUDY).is_file() or (path / "trials").is_dir():
        return "search"
    if (path / SUMMARY).is_file():
        return "explore"
    return None


def _entry(path: Path, kind: str) -> Entry:
    read = {"run": _run, "compare": _compare, "search": _search, "explore": _explore}[kind]
    try:
        return read(path)
    except (MnistlabError, OSError) as exc:
        damaged = f"damaged: {_one_line(exc)}"
        return Entry(path.name, str(path), kind, health=damaged, date=_mtime(path))


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _mtime(path: Path) -> str:
    stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return stamp.isoformat(timespec="seconds")


# ---- a run ------------------------------------------------------------------------------
def _run(path: Path) -> Entry:
    recipe = Recipe.from_toml(path / RECIPE)
    env = read_environment(path / ENVIRONMENT) if (path / ENVIRONMENT).is_file() else {}
    dataset = (
        DatasetRecord.from_environment(env, path / ENVIRONMENT).name if env else recipe.dataset
    )
    metrics = read_metrics(path / METRICS) if (path / METRICS).is_file() else None
    history = read_history(path / HISTORY) if (path / HISTORY).is_file() else []
    complete = metrics is not None and (path / MODEL).is_file()
    test = (metrics or {}).get("test", {}).get("accuracy")
    return Entry(
        name=path.name,
        path=str(path),
        kind="run",
        dataset=dataset,
        changes=describe(recipe),
        epochs=len(history),
        planned_epochs=recipe.epochs,
        test_accuracy=test if complete else None,
        health=_health(metrics) if complete else _unfinished(path),
        date=env.get("started") or _mtime(path),
    )


def describe(recipe: Recipe) -> str:
    """What ``recipe`` changes, in the words run folders are named with: from the notebook's
    recipe, or from the preset it names.

    >>> describe(Recipe(optimizer="adam", lr=0.001)), describe(Recipe())
    ('adam lr0.001', 'notebook')
    """
    preset, base = base_of(recipe)
    words = changes(recipe, base)
    own = preset not in (None, "notebook")  # a shipped preset: named first
    head = [preset if own else "notebook"] if own or not words else []
    text, shown = " ".join(head), 0
    for word in words:
        if len(text) + 1 + len(word) > CHANGES_WIDTH:
            break
        text, shown = f"{text} {word}".strip(), shown + 1
    left = len(words) - shown
    return f"{text} +{left} more" if left else text


def _health(metrics: dict[str, Any]) -> str:
    """ok, or what the health check or a stop said (its first words)."""
    if metrics.get("stopped"):
        return "stopped early"
    for message in metrics.get("health") or []:
        for kind in ("diverged", "stuck"):
            if kind in message:
                return kind
        return "warning"
    return "ok"


def _unfinished(path: Path) -> str:
    """ "training" while another process holds the folder, else "incomplete" (resumable)."""
    return "training" if _held(path / LOCK) else "incomplete (mnistlab train --resume)"


def _held(lock: Path) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: a lock file present is all there is to go by
        return lock.exists()
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock, if it was taken
    return False


# ---- a compare, a search, an explore ---------------------------------------------------
def _compare(path: Path) -> Entry:
    if not (path / LEADERBOARD).is_file() and (path / COMPARISON).is_file():
        return _comparison(path)
    if not (path / LEADERBOARD).is_file():
        runs = [p for p in (path / "runs").iterdir() if (p / RECIPE).is_file()]
        return Entry(
            path.name,
            str(path),
            "compare",
            changes=f"{len(runs)} runs so far",
            health="incomplete (run the same compare again)",
            date=_mtime(path),
        )
    board = read_json(path / LEADERBOARD, what="a leaderboard file")
    variants = _objects(board, "variants", path / LEADERBOARD)
    best = min(variants, key=lambda v: v.get("rank", math.inf), default={})
    seeds = board.get("seeds") or []
    return Entry(
        name=path.name,
        path=str(path),
        kind="compare",
        dataset=(board.get("dataset") or {}).get("name"),
        changes=f"{len(variants)} variants x {len(seeds)} seeds; best: {best.get('name')}",
        test_accuracy=(best.get("test_accuracy") or {}).get("mean"),
        date=_mtime(path / LEADERBOARD),
    )


def _objects(doc: dict, key: str, file: Path) -> list[dict]:
    """``doc[key]`` (missing: empty), refused in one line unless it is a list of objects."""
    items = doc.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise RunError(f"{file}: [{key!r}] is not a list of objects")
    return items


def _comparison(path: Path) -> Entry:
    """A comparison of trained models (``mnistlab compare RUN_A RUN_B --out``)."""
    doc = read_json(path / COMPARISON, what="a comparison of trained models")
    models = _objects(doc, "models", path / COMPARISON)
    best = max(models, key=lambda m: m.get("test_accuracy") or 0.0, default={})
    return Entry(
        name=path.name,
        path=str(path),
        kind="compare",
        dataset=(doc.get("dataset") or {}).get("name"),
        changes=f"{len(models)} trained models; best test: {best.get('name')}",
        test_accuracy=best.get("test_accuracy"),
        date=_mtime(path / COMPARISON),
    )


def _search(path: Path) -> Entry:
    rows = []
    if (path / TRIALS).is_file():
        text = read_text(path / TRIALS, "a trials file", LIMITS[METRICS], RunError)
        rows = list(csv.DictReader(io.StringIO(text)))
    complete = [r for r in rows if r.get("state") == "COMPLETE" and r.get("val_accuracy")]
    dataset = None
    if (path / BEST).is_file():
        dataset = Recipe.from_toml(path / BEST).dataset
    words = f"{len(rows)} trials"
    if complete:
        best = max(complete, key=lambda r: float(r["val_accuracy"]))
        words += f"; best val {float(best['val_accuracy']):.4f} (trial {best['number']})"
    return Entry(
        name=path.name,
        path=str(path),
        kind="search",
        dataset=dataset,
        changes=words,
        health="ok" if rows else "incomplete (run the same search again)",
        date=_mtime(path / TRIALS) if rows else _mtime(path),
    )


def _explore(path: Path) -> Entry:
    summary = read_json(path / SUMMARY, what="an explore summary")
    dataset = schema.check(summary.get("dataset"), schema.optional(schema.TEXT), path / SUMMARY)
    return Entry(path.name, str(path), "explore", dataset=dataset, date=_mtime(path / SUMMARY))
