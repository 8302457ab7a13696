"""``mnistlab report FOLDER``: the self-contained HTML page of a run, compare, search or explore
folder (any other path is one line, exit 2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer


def report(
    folder: Path = typer.Argument(
        ...,
        metavar="FOLDER",
        help="A folder mnistlab wrote: a run (train), compare, search or explore folder.",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        metavar="FILE",
        help="HTML file to write.",
        show_default="FOLDER/report.html",
    ),
) -> None:
    """Write the page of a run, compare, search or explore folder: one self-contained HTML file (figures embedded; offline, phone, print)."""  # noqa: E501 (one line in the command list)
    from mnistlab.pages import write

    path = write(folder, out)
    typer.echo(f"report: {path}")


def register(root: typer.Typer) -> None:
    root.command("report")(report)


def track_option(what: str = "each finished run"):
    """The ``--track`` option train, compare and search share (checked by ``tracking_uri``)."""
    return typer.Option(
        None,
        "--track",
        metavar="mlflow[:URI]",
        help=f"Also log {what} to MLflow: mlflow or mlflow:URI (default URI sqlite:///mlflow.db).",
    )


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
