"""``mnistlab search``: an Optuna study over a declared recipe space (one worker per command).

    mnistlab search space.toml --trials 40                       # SQLite study in the out folder
    mnistlab search space.toml --trials 40 --epochs 2            # recipe flags set the base
    mnistlab search space.toml --trials 200 --study s1 \\
        --storage postgresql://me@db-host:5432/mnistlab            # run this on every machine
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

import typer

from mnistlab.cli import options
from mnistlab.cli.recipe_flags import overrides_from_flags, with_recipe_flags

SPACE_EXAMPLE = """\
    name = "lr-and-width"        # names the folder and the study: runs/search-lr-and-width
    \\[base]                       # recipe fields (or preset = "NAME"); the flags below too
    epochs = 3
    \\[space]                      # one entry per searched recipe field
    lr = { low = 1e-4, high = 0.1, log = true }
    dropout = { low = 0.0, high = 0.5 }
    hidden = { choices = [[128], [256, 128]] }
    optimizer = { choices = ["sgd", "adam"] }"""


def search_command(
    space_file: Path = typer.Argument(
        ..., metavar="SPACE.toml", help="Space file: a \\[base] recipe and a \\[space] table."
    ),
    trials: int = typer.Option(
        ...,
        "--trials",
        "-n",
        metavar="N",
        help="Finished trials the study should hold (counted over all workers).",
    ),
    storage: Optional[str] = options.storage("sqlite:///OUT/study.db"),
    study: Optional[str] = options.study("the space's name"),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        metavar="FOLDER",
        help="Folder for trial runs, best_recipe.toml, trials.csv (default: runs/search-<name>).",
    ),
    train_images: Optional[int] = options.images("train"),
    test_images: Optional[int] = options.images("test"),
    heartbeat: int = options.heartbeat("trial"),
    track: Optional[str] = options.track(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary."),
    **fields: Any,
) -> None:
    """Search recipe fields with Optuna (pruning on validation accuracy); resumable, scales out."""
    from rich.console import Console

    from mnistlab.cli.finish import run_tracker, tracking_uri
    from mnistlab.experiments import search as srch

    track_uri = tracking_uri(track)  # a bad value or a missing MLflow fails before training
    changes = overrides_from_flags(fields)
    dataset = changes.pop("dataset", None)  # the data every trial sees, not a recipe change
    space = srch.load_space(space_file, changes)
    console = Console(highlight=False, soft_wrap=True)
    log = None if quiet else console.print
    options = dict(storage=storage, study=study, out=out, dataset=dataset, heartbeat=heartbeat)
    try:
        result = srch.search(
            space,
            trials,
            **options,
            train_images=train_images,
            test_images=test_images,
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


search_command.__doc__ = "\n\n".join(
    [
        inspect.cleandoc(search_command.__doc__),
        "A space file (TOML):",
        SPACE_EXAMPLE,
        "Every recipe flag sets that field of the base; the searched fields take the values "
        "each trial draws. The best trial's recipe goes to best_recipe.toml, named "
        "<study>-best.",
    ]
)


def register(root: typer.Typer) -> None:
    root.command("search")(with_recipe_flags(search_command, skip=("name",)))
