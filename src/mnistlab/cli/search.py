"""``mnistlab search``: an Optuna study over a declared recipe space (one worker per command).

    mnistlab search space.toml --trials 40                       # SQLite study in the out folder
    mnistlab search space.toml --trials 200 --study s1 \\
        --storage postgresql://me@db-host:5432/mnistlab            # run this on every machine
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mnistlab.cli.report import track_option


def search_command(
    space_file: Path = typer.Argument(
        ..., metavar="SPACE.toml", help="Space file: a \\[base] recipe and a \\[space] table."
    ),
    trials: int = typer.Option(
        ...,
        "--trials",
        "-n",
        help="Finished trials the study should hold (counted over all workers).",
    ),
    storage: Optional[str] = typer.Option(
        None,
        "--storage",
        help="Study database URL (default: "
        "sqlite:///OUT/study.db; postgresql://user@host:port/db "
        "to share one study between machines).",
    ),
    study: Optional[str] = typer.Option(
        None, "--study", help="Study name (default: the space file's name)."
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        help="Folder for trial runs, best_recipe.toml, trials.csv (default: runs/search-<name>).",
    ),
    dataset: Optional[str] = typer.Option(
        None,
        "--dataset",
        help="Dataset name (default: the base recipe's, else full MNIST or the sample).",
    ),
    train_images: Optional[int] = typer.Option(
        None, "--train-images", help="Use only the first N training images (quick trials)."
    ),
    test_images: Optional[int] = typer.Option(
        None, "--test-images", help="Use only the first N test images (quick trials)."
    ),
    heartbeat: int = typer.Option(
        10,
        "--heartbeat",
        help="Seconds between a running trial's "
        "heartbeats; silent for 3x this, it is failed and retried.",
    ),
    track: Optional[str] = track_option(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary."),
) -> None:
    """Search recipe fields with Optuna (pruning on validation accuracy); resumable, scales out."""
    from rich.console import Console

    from mnistlab.cli.report import run_tracker, tracking_uri
    from mnistlab.experiments import search as srch

    track_uri = tracking_uri(track)  # a bad value or a missing MLflow fails before training
    space = srch.load_space(space_file)
    console = Console(highlight=False, soft_wrap=True)
    log = None if quiet else console.print
    try:
        result = srch.search(
            space,
            trials,
            storage=storage,
            study=study,
            out=out,
            dataset=dataset,
            train_images=train_images,
            test_images=test_images,
            heartbeat=heartbeat,
            log=log,
            on_run=run_tracker(track_uri, log),
        )
    except KeyboardInterrupt:
        typer.echo(
            "interrupted: the trial is queued again; run the same command to continue", err=True
        )
        raise typer.Exit(code=130) from None
    counts = ", ".join(f"{n} {k.lower()}" for k, n in result["counts"].items() if n)
    console.print(
        f"study {result['study']}: {counts or 'no trials'}; wrote trials.csv"
        + (" and best_recipe.toml" if result["best"] else "")
        + f" in {result['out']} (best chosen on validation accuracy only)"
    )


def register(root: typer.Typer) -> None:
    root.command("search")(search_command)
