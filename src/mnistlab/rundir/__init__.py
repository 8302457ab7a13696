"""The run folder: what a training writes and everything downstream reads.

``folder`` names the files and makes folders atomically; ``files`` writes and reads each file,
verified; ``run`` loads a finished run as a ``Run``; ``lock`` keeps one writer per folder.
The names below are the package's public face, so callers write ``rundir.load_run(path)``.
"""

from mnistlab.rundir.files import (
    json_bytes,
    read_checkpoint,
    read_history,
    read_json,
    read_model,
    update_metrics,
    write_checkpoint,
    write_history,
    write_model,
)
from mnistlab.rundir.folder import (
    CHECKPOINT,
    ENVIRONMENT,
    HISTORY,
    HISTORY_FIELDS,
    METRICS,
    MODEL,
    RECIPE,
    REQUIRED,
    check_free,
    new_run_dir,
    run_folder,
)
from mnistlab.rundir.run import Run, load_run

__all__ = [
    "CHECKPOINT",
    "ENVIRONMENT",
    "HISTORY",
    "HISTORY_FIELDS",
    "METRICS",
    "MODEL",
    "RECIPE",
    "REQUIRED",
    "Run",
    "check_free",
    "json_bytes",
    "load_run",
    "new_run_dir",
    "read_checkpoint",
    "read_history",
    "read_json",
    "read_model",
    "run_folder",
    "update_metrics",
    "write_checkpoint",
    "write_history",
    "write_model",
]
