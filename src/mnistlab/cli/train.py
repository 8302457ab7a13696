"""``mnistlab train``: train a recipe and write a run folder (a thin layer over ``train.fit``).

    mnistlab train                                   # the notebook's recipe
    mnistlab train --preset NAME --epochs 10         # a shipped recipe, one field changed
    mnistlab train --recipe my.toml --lr 0.001       # every recipe field is also a flag
    mnistlab train --normalize none                  # the notebook's failure (health check)
    mnistlab train --resume runs/20260101-120000-notebook   # continue a killed run
    mnistlab train --resume RUN --epochs 8           # train a finished 5-epoch run on to 8
    RUN=$(mnistlab train --quiet) && mnistlab evaluate "$RUN"   # --quiet prints the folder

The recipe flags are one per Recipe field (``cli.recipe_flags``, shared with compare and
search). Exit codes: 0 done, 1 stopped by --stop-on-divergence, 2 bad input (``error: ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from mnistlab.cli import options
from mnistlab.cli.recipe_flags import overrides_from_flags, with_recipe_flags
from mnistlab.errors import RecipeError
from mnistlab.recipe import Recipe, preset_names


def train_command(
    recipe_file: Optional[Path] = typer.Option(
        None,
        "--recipe",
        metavar="FILE",
        help="Recipe TOML file to start from (default: the notebook's recipe).",
    ),
    preset: Optional[str] = typer.Option(
        None,
        "--preset",
        metavar="NAME",
        help=f"A shipped recipe: {', '.join(preset_names())} (`mnistlab presets` shows them).",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        metavar="FOLDER",
        help="Run folder to create (default: runs/<UTC time>-<what the recipe changes>).",
    ),
    resume: Optional[Path] = typer.Option(
        None,
        "--resume",
        metavar="RUN",
        help="Continue this run folder from its last checkpoint; with --epochs N, train a "
        "finished run on to N epochs.",
    ),
    quiet: bool = typer.Option(
        False,
        "--quiet",
        "-q",
        help="No progress output; print only the run folder (warnings still go to stderr).",
    ),
    stop_on_divergence: bool = typer.Option(
        False,
        "--stop-on-divergence",
        help="Stop (exit 1) when the health check flags a NaN or stuck loss.",
    ),
    device: Optional[str] = typer.Option(
        None,
        "--device",
        metavar="DEVICE",
        help="torch device for the reference engine: cpu, cuda, cuda:N (default: cuda if present).",
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    track: Optional[str] = options.track("the run"),
    **fields: Any,
) -> None:
    """Train a recipe (the notebook's by default) and write a run folder."""
    from mnistlab.cli.finish import after_train, tracking_uri

    track_uri = tracking_uri(track)  # a bad value or a missing MLflow fails before training
    try:
        run = _train(recipe_file, preset, out, resume, quiet, stop_on_divergence, device, fields)
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None  # fit already said how to resume
    after_train(run.path, not no_report, track_uri, quiet)
    if quiet:  # the one line a script chains on: RUN=$(mnistlab train --quiet ...)
        typer.echo(str(run.path))
    if run.stopped:
        raise typer.Exit(code=1)


def _train(recipe_file, preset, out, resume, quiet, stop_on_divergence, device, fields):
    from mnistlab.training.fit import fit

    changes = overrides_from_flags(fields)
    if resume is None:
        recipe = Recipe.compose(recipe_file, preset, **changes)
        return fit(
            recipe, out=out, quiet=quiet, stop_on_divergence=stop_on_divergence, device=device
        )
    epochs = changes.pop("epochs", None)  # the one change a resume takes: train on further
    refuse_recipe_input(recipe_file, preset, changes)
    if out is not None:
        raise RecipeError("--resume continues the run in its own folder; drop --out")
    return fit(
        None,
        out=resume,
        resume=True,
        epochs=epochs,
        quiet=quiet,
        stop_on_divergence=stop_on_divergence,
        device=device,
    )


def refuse_recipe_input(file: Path | None, preset: str | None, changes: dict[str, Any]) -> None:
    """--resume continues a run as it started (the recipe comes from the run folder), only
    ``--epochs`` may train it further: one line naming each other recipe input given, or nothing.

    >>> refuse_recipe_input(None, "notebook", {"lr": 0.1})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mnistlab.errors.RecipeError: --resume ... drop: preset notebook, field 'lr'
    """
    given = (
        ([f"recipe file {file}"] if file is not None else [])
        + ([f"preset {preset}"] if preset is not None else [])
        + [f"field '{name}'" for name in changes]
    )
    if given:
        raise RecipeError(
            "--resume continues a run exactly as it started, so of the recipe inputs it takes "
            "only 'epochs' (to train it further); drop: " + ", ".join(given)
        )


with_recipe_flags(train_command)


def register(root: typer.Typer) -> None:
    root.command("train")(train_command)
