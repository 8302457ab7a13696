"""docs/limits.md states the code's bounds: each row's value, recomputed from the constant it
names, so the table cannot drift from what the code enforces."""

from __future__ import annotations

import re
from pathlib import Path

from mnistlab import fsio, plots
from mnistlab.datasets import download, store
from mnistlab.experiments import compare, search, shared_study, track
from mnistlab.rundir import folder, schema
from mnistlab.use import imagefile
from mnistlab.web import app, protocol

ROOT = Path(__file__).resolve().parents[2]
size = fsio.size_text


def _rows() -> dict[str, list[str]]:
    """The table's rows by their last cell (the constant), each its "Bound" cell."""
    rows: dict[str, list[str]] = {}
    for line in (ROOT / "docs" / "limits.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == 4:
            rows.setdefault(cells[3], []).append(cells[1])
    return rows


def test_every_bound_in_the_table_is_the_codes():
    ceiling = re.search(
        r"CEILING_MB = (\d+)", (ROOT / "tests/web/test_serve_memory.py").read_text()
    )
    retries = int(track.HTTP_DEADLINES["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    want = {
        "`fsio.TOML_LIMIT`": [size(fsio.TOML_LIMIT)],
        "`rundir.folder.LIMITS`": [
            f"{size(folder.LIMITS[folder.HISTORY])} each",
            size(folder.LIMITS[folder.ENVIRONMENT]),
        ],
        "`rundir.schema.MAX_DEPTH`": [f"{schema.MAX_DEPTH} levels"],
        "`use.imagefile.MAX_FILE_BYTES`": [size(imagefile.MAX_FILE_BYTES)],
        "`use.imagefile.MAX_PIXELS`": [f"{imagefile.MAX_PIXELS:,}"],
        "`use.imagefile.MAX_DECODE_BYTES`": [size(imagefile.MAX_DECODE_BYTES)],
        "`web.app.MAX_BODY`": [size(app.MAX_BODY)],
        "`web.app.TIMEOUT`": [f"{app.TIMEOUT:g} s"],
        "`web.app.THREADS`": [f"{app.THREADS} per process"],
        "`tests/web/test_serve_memory.py`": [f"{ceiling.group(1)} MB peak RSS"],
        "`web.protocol.HEAD_TIMEOUT`": [f"{protocol.HEAD_TIMEOUT:g} s"],
        "`experiments.compare.MAX_SEEDS`": [f"1 to {compare.MAX_SEEDS:,}"],
        "`experiments.compare.MAX_RUNS`": [f"{compare.MAX_RUNS:,}"],
        "`experiments.compare.MAX_JOBS`": [f"1 to {compare.MAX_JOBS}"],
        "`experiments.search.MAX_TRIALS`": [f"1 to {search.MAX_TRIALS:,}"],
        "`plots.PREDICTIONS_SHOWN`": [f"first {plots.PREDICTIONS_SHOWN} images"],
        "`experiments.shared_study.MAX_STUDY_NAME`": [
            f"1 to {shared_study.MAX_STUDY_NAME} characters"
        ],
        "`experiments.shared_study.CONNECT_TIMEOUT`": [f"{shared_study.CONNECT_TIMEOUT} s"],
        "`experiments.shared_study.STATEMENT_TIMEOUT`": [f"{shared_study.STATEMENT_TIMEOUT} s"],
        "`experiments.shared_study.SQLITE_BUSY_TIMEOUT`": [f"{shared_study.SQLITE_BUSY_TIMEOUT} s"],
        "`experiments.track.REACH_TIMEOUT`": [f"within {track.REACH_TIMEOUT:g} s"],
        "`experiments.track.HTTP_DEADLINES`": [
            f"{track.HTTP_DEADLINES['MLFLOW_HTTP_REQUEST_TIMEOUT']} s each, {retries + 1} tries"
        ],
        "`datasets.download.DEFAULT_TIMEOUT`": [f"{download.DEFAULT_TIMEOUT:g} s"],
        "`datasets.download.MIN_RATE`, `DEADLINE_GRACE`": [
            f"{download.DEADLINE_GRACE:g} s + its size at {download.MIN_RATE // 1024} KiB/s"
        ],
        "`datasets.store.LOCK_TIMEOUT`": [f"{store.LOCK_TIMEOUT} s"],
    }
    rows = _rows()
    for where, values in want.items():
        assert where in rows, f"docs/limits.md has no row for {where}"
        for value in values:
            assert any(value in bound for bound in rows[where]), (where, value, rows[where])
