"""``mnistlab evaluate RUN``: metrics, confusion matrix and mistakes of a trained run."""

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
    robustness: bool = typer.Option(
        False,
        "--robustness",
        help="Also measure where it breaks: accuracy under 12 corruptions at 3 severities and "
        "under the FGSM attack, on a seeded subset of the test set (see --robustness-images).",
    ),
    robustness_images: int = typer.Option(
        2000, "--robustness-images", metavar="N", min=1, help="Test images the card uses."
    ),
) -> None:
    """Evaluate a run: accuracy, loss, per-class precision/recall/F1, confusion matrix, R²."""
    from mnistlab import rundir
    from mnistlab.evaluation import evaluate as ev

    result = ev.evaluate(run, split=split, out=out)
    ev.print_evaluation(result)
    typer.echo(f'saved under "evaluation"."{split}" in {Path(run) / rundir.METRICS}')
    if robustness:
        from mnistlab.evaluation import robustness as rb

        rb.print_card(rb.evaluate_robustness(run, images=robustness_images, out=out))
        typer.echo(f'saved under "robustness" in {Path(run) / rundir.METRICS}')


def register(root: typer.Typer) -> None:
    root.command("evaluate")(evaluate)
