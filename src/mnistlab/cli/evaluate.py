"""``mnistlab evaluate RUN``: metrics, confusion matrix and mistakes of a trained run, its
calibration (fitted on its validation part, stored in calibration.json) and, with ``--ood``,
how well it tells digits from things that are not."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def evaluate(
    run: Path = typer.Argument(..., help="Run folder written by `mnistlab train`."),
    split: str = typer.Option(
        "test", "--split", help="test, or val (the validation part held out in training)."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Where to write the figures.", show_default="the run folder"
    ),
    ood: bool = typer.Option(
        False,
        "--ood",
        help="Also measure 'not a digit I know': false alarms on the test digits, catch rate "
        "on letters, shapes, scribbles and noise drawn in code (a few seconds).",
    ),
) -> None:
    """Evaluate a run: accuracy with its interval, per-class precision/recall/F1, confusion
    matrix, R², and calibration (ECE and NLL before and after temperature scaling)."""
    from rich.console import Console

    from mnistlab import rundir
    from mnistlab.errors import RunError
    from mnistlab.evaluation import evaluate as ev

    if ood and split != "test":
        raise RunError("--ood: false alarms are measured on test digits; use --split test")
    result = ev.evaluate(run, split=split, out=out)
    console = Console()
    ev.print_evaluation(result, console)
    if ood:
        from mnistlab.use.nondigits import check_run, print_ood

        result["ood"] = check_run(run)
        ev.merge_metrics(run, split, {"ood": result["ood"]})
        print_ood(result["ood"], console)
    typer.echo(f'saved under "evaluation"."{split}" in {Path(run) / rundir.METRICS}')


def register(root: typer.Typer) -> None:
    root.command("evaluate")(evaluate)
