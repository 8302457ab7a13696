"""The run folder: what a training writes and everything downstream reads.

``folder`` names the files (with the size each reader accepts) and makes folders atomically;
``files`` writes and reads the safetensors files, verified; ``records`` the text files, each
through one bounded reader checked against its ``schema``; ``dataset`` is the typed record of
the data a run trained on; ``run`` loads a finished run as a ``Run``; ``lock`` keeps one writer
per folder.
The names below are the package's public face, so callers write ``rundir.load_run(path)``.
"""

from mnistlab.rundir.dataset import DatasetRecord
from mnistlab.rundir.files import (
    read_checkpoint,
    read_model,
    read_predictions,
    write_checkpoint,
    write_model,
    write_predictions,
)
from mnistlab.rundir.folder import (
    CHECKPOINT,
    ENVIRONMENT,
    HISTORY,
    HISTORY_FIELDS,
    LIMITS,
    METRICS,
    MODEL,
    ONNX,
    PREDICTIONS,
    RECIPE,
    REPORT,
    REQUIRED,
    check_free,
    new_run_dir,
    run_folder,
    run_name,
)
from mnistlab.rundir.records import (
    json_bytes,
    read_environment,
    read_history,
    read_json,
    read_metrics,
    update_metrics,
    write_history,
)
from mnistlab.rundir.run import Run, load_run

__all__ = [
    "CHECKPOINT",
    "ENVIRONMENT",
    "HISTORY",
    "HISTORY_FIELDS",
    "LIMITS",
    "METRICS",
    "MODEL",
    "ONNX",
    "PREDICTIONS",
    "RECIPE",
    "REPORT",
    "REQUIRED",
    "DatasetRecord",
    "Run",
    "check_free",
    "json_bytes",
    "load_run",
    "new_run_dir",
    "read_checkpoint",
    "read_environment",
    "read_history",
    "read_json",
    "read_metrics",
    "read_model",
    "read_predictions",
    "run_folder",
    "run_name",
    "update_metrics",
    "write_checkpoint",
    "write_history",
    "write_model",
    "write_predictions",
]
