"""What a command does once its runs are finished: calibrate a trained run, write its page, and
log it to MLflow when ``--track`` asks (checked before anything trains)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer


def tracking_uri(track: Optional[str]) -> Optional[str]:
    """The MLflow URI of a --track value (None without one); checks MLflow is installed and the
    store can be reached and written, before any training."""
    if track is None:
        return None
    from mnistlab.experiments.track import check_target, parse_target, require_mlflow

    uri = parse_target(track)
    require_mlflow()
    check_target(uri)
    return uri


def run_tracker(track_uri: Optional[str], echo: Optional[Callable[[str], None]]):
    """The ``on_run`` callback of compare and search that logs each finished run folder to
    MLflow with its tags (None without --track); ``echo`` says so (None: quietly)."""
    if track_uri is None:
        return None
    from mnistlab.experiments.track import log_run

    def on_run(run_dir: Path, tags: dict[str, str]) -> None:
        run_id = log_run(run_dir, track_uri, tags=tags)
        if echo is not None:
            echo(f"tracked: {run_dir.name} as MLflow run {run_id} in {track_uri}")

    return on_run


def after_train(run_dir: Path, write_report: bool, track_uri: Optional[str], quiet: bool) -> None:
    """What `mnistlab train` does once the run folder is complete: calibrate it (so predict,
    serve and the report have honest probabilities), the report, then tracking."""
    from mnistlab.errors import MnistlabError
    from mnistlab.evaluation.calibration import calibrate, summary_line

    try:
        line = summary_line(calibrate(run_dir))
    except MnistlabError as exc:  # no validation part, a diverged model: said, the run stands
        line = f"not calibrated: {exc}"
    if not quiet:
        typer.echo(line)
    if write_report:
        from mnistlab.pages import write

        path = write(run_dir)
        if not quiet:
            typer.echo(f"report: {path}")
    if track_uri is not None:
        from mnistlab.experiments.track import log_run

        run_id = log_run(run_dir, track_uri)
        if not quiet:
            typer.echo(f"tracked: MLflow run {run_id} in {track_uri}")
