"""The run folder's text files: history.csv, metrics.json and environment.json, one reader each.

Every reader takes the file through ``fsio.read_text`` (size limit from ``folder.LIMITS``,
checked before reading; special files refused), refuses JSON nested deeper than
``schema.MAX_DEPTH`` and checks what it parsed against the file's schema (``rundir.schema``),
so a damaged piece is one RunError naming the file and what is wrong, whichever command reads
it. history.csv keeps every bit of each float (``repr``), so a resumed run's history compares
exactly.

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> _ = (d / "metrics.json").write_text('{"test": {"accuracy": [0.9]}}')
>>> try:
...     read_metrics(d / "metrics.json")
... except RunError as exc:
...     print(str(exc).split(": ", 1)[1])
['test']['accuracy'] is a list, expected a number or null
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import RunError
from mnistlab.fsio import atomic_write_json, atomic_write_text, read_text
from mnistlab.rundir import lock, schema
from mnistlab.rundir.folder import (
    ENVIRONMENT,
    HISTORY,
    HISTORY_FIELDS,
    JSON_LIMIT,
    LIMITS,
    METRICS,
)


def _text(path: Path, what: str, form: str, limit: int) -> str:
    """The file's text, or one RunError line: missing, unreadable, special, too big, not UTF-8."""
    try:
        return read_text(path, what, limit, RunError)
    except FileNotFoundError:
        raise RunError(f"{path}: file is missing") from None
    except OSError as exc:
        raise RunError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise RunError(
            f"{path}: not valid {form} (not UTF-8 text: byte 0x{exc.object[exc.start]:02x} "
            f"at offset {exc.start})"
        ) from None


# ---- JSON ---------------------------------------------------------------------------------
def read_json(
    path: str | Path, spec: Any = None, limit: int = JSON_LIMIT, what: str = "a JSON file"
) -> dict[str, Any]:
    """The JSON object in ``path``, checked against ``spec`` (a ``rundir.schema`` spec)."""
    path = Path(path)
    text = _text(path, what, "JSON", limit)
    try:
        obj = json.loads(text)
    except RecursionError:  # nested past the parser's own limit: the depth check says it
        obj = None
        too_deep = True
    except ValueError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    else:
        too_deep = schema.depth(obj) > schema.MAX_DEPTH
    if too_deep:
        raise RunError(
            f"{path}: JSON nested deeper than {schema.MAX_DEPTH} levels; not a file mnistlab wrote"
        )
    if not isinstance(obj, dict):
        raise RunError(f"{path}: expected a JSON object")
    return obj if spec is None else schema.check(obj, spec, path)


def read_metrics(path: str | Path) -> dict[str, Any]:
    """metrics.json: "train", "test", "health", "stopped", "early_stopping", "evaluation"."""
    return read_json(path, schema.METRICS, LIMITS[METRICS], "a metrics file")


def read_environment(path: str | Path) -> dict[str, Any]:
    """environment.json: versions, threads, engine and the dataset record."""
    return read_json(path, schema.ENVIRONMENT, LIMITS[ENVIRONMENT], "an environment file")


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


def update_metrics(run_dir: str | Path, updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into the run's metrics.json (read-modify-write under the run's lock,
    atomic); other writers' keys are kept, nested dicts merged. Returns the new object."""

    path = Path(run_dir) / METRICS
    with lock.hold(run_dir, wait=60.0, command="update metrics.json"):
        current = read_metrics(path) if path.exists() else {}
        atomic_write_json(path, _jsonable(_merge(current, updates)))
        return read_metrics(path)


def _merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# ---- history.csv --------------------------------------------------------------------------
def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in rows:
        # repr keeps every bit of a float, so a resumed run's csv compares exactly.
        w.writerow({k: ("" if row.get(k) is None else repr(row[k])) for k in HISTORY_FIELDS})
    atomic_write_text(path, buf.getvalue())


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """One dict per epoch: ``epoch`` a whole number >= 1, every other column a float or None."""
    path = Path(path)
    text = _text(path, "a history file", "CSV", LIMITS[HISTORY])
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    try:
        if tuple(reader.fieldnames or ()) != HISTORY_FIELDS:
            raise RunError(f"{path}: expected columns {', '.join(HISTORY_FIELDS)}")
        for line in reader:
            row: dict[str, Any] = {
                k: (None if line[k] in ("", None) else float(line[k])) for k in HISTORY_FIELDS
            }
            row["epoch"] = _epoch(row["epoch"])
            rows.append(row)
    except (TypeError, ValueError, csv.Error) as exc:
        raise RunError(f"{path}: line {reader.line_num}: {exc}") from None
    return rows


def _epoch(value: float | None) -> int:
    if value is None or not math.isfinite(value) or value != int(value) or value < 1:
        raise ValueError(f"epoch is {value!r}, expected a whole number >= 1")
    return int(value)
