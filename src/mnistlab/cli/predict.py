"""``mnistlab predict RUN IMAGE...``: what a trained run says about your own handwriting.

    mnistlab predict runs/20260101-120000-notebook seven.jpg three.png
    mnistlab predict RUN digit.png --top 5 --show digit-explained.png
    mnistlab predict RUN *.png --json > predictions.json
    mnistlab predict RUN digit.png --calibrated    # probabilities that mean what they say

A bad file (unreadable, too large, blank) does not stop the others: its row (and JSON entry)
carries its one-line error, the error is also printed on stderr, and the exit code is 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def predict(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder written by `mnistlab train`."),
    images: list[Path] = typer.Argument(
        ...,
        metavar="IMAGE...",
        help="Image files (PNG, JPEG, ...): dark ink on light paper or light on dark.",
    ),
    top: int = typer.Option(3, "--top", min=1, help="How many of the most likely classes to list."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the predictions as JSON instead of a table."
    ),
    show: Optional[Path] = typer.Option(
        None,
        "--show",
        help="Also write a PNG: each image's preparation, step by step, beside its probabilities.",
    ),
    calibrated: bool = typer.Option(
        False,
        "--calibrated",
        help="Temperature-scaled probabilities from the run's calibration.json (written by "
        "`mnistlab evaluate` and `mnistlab train`) instead of the raw softmax.",
    ),
) -> None:
    """Predict the class of each image, prepared the way MNIST's digits were."""
    from mnistlab.rundir import load_run
    from mnistlab.use import predict as pr

    loaded = load_run(run)
    top = min(top, len(loaded.class_names))  # --top 20 on 10 classes: list them all
    results = pr.predict(
        loaded,
        images,
        top=top,
        on_error="collect",
        calibrated=calibrated,
        steps=show is not None,
    )
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        pr.print_predictions(results)
    if show is not None and any(r.ok for r in results):
        path = pr.show(results, loaded.class_names, show)
        # On stderr with --json, so stdout stays valid JSON.
        typer.echo(f"figure: {path}", err=as_json)
    failed = [r for r in results if not r.ok]
    for r in failed:
        typer.echo(f"error: {r.error}", err=True)
    if failed:
        raise typer.Exit(2)


def register(root: typer.Typer) -> None:
    root.command("predict")(predict)
