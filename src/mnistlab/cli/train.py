"""``mnistlab train``: train a recipe and write a run folder (a thin layer over ``train.fit``).

    mnistlab train                                   # the notebook's recipe
    mnistlab train --preset NAME --epochs 10         # a shipped recipe, one field changed
    mnistlab train --recipe my.toml --lr 0.001       # every recipe field is also a flag
    mnistlab train --normalize none                  # the notebook's failure (health check)
    mnistlab train --resume runs/20260101-120000-notebook   # continue a killed run

The recipe flags are generated from the Recipe's field declarations (one per field, its help,
range and default from ``recipe.fields_help``, grouped by recipe.toml section), so a new field is
a new flag without touching this file. Exit codes: 0 done, 1 stopped by --stop-on-divergence,
2 bad input (``error: ...``).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any, Optional

import typer

from mnistlab.cli.report import track_option
from mnistlab.errors import RecipeError
from mnistlab.recipe import SPECS, Recipe, fields_help


def _flag_type(hint: Any) -> tuple[Any, bool]:
    """(click-friendly annotation, is_bool) for a Recipe field's type."""
    if typing.get_origin(hint) is typing.Union or type(hint).__name__ == "UnionType":
        hint = [a for a in typing.get_args(hint) if a is not type(None)][0]  # X | None -> X
    base = hint
    if typing.get_origin(base) is list:
        return Optional[str], False  # "128,128,128"
    if base is bool:
        return Optional[bool], True
    return Optional[base], False


def _recipe_params() -> list[inspect.Parameter]:
    hints = typing.get_type_hints(Recipe)
    params = []
    for name, text in fields_help().items():
        spec = SPECS[name]
        annotation, is_bool = _flag_type(hints[name])
        flag = "--" + name.replace("_", "-")
        names = [f"{flag}/--no-{name.replace('_', '-')}"] if is_bool else [flag]
        if spec.alias:
            names.append("--" + spec.alias)
        if typing.get_origin(hints[name]) is list:
            example = spec.constraint.example.strip("[]").replace(" ", "")
            text += f" (on the command line comma-separated, e.g. {example}; empty for none)"
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=annotation,
                default=typer.Option(
                    None,
                    *names,
                    help=text,
                    show_default=False,
                    rich_help_panel=f"Recipe fields: {spec.section}"
                    if spec.section
                    else "Recipe fields",
                ),
            )
        )
    return params


def _parse_list(name: str, text: str) -> list[int]:
    try:
        return [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise RecipeError(
            f"--{name.replace('_', '-')}: expected comma-separated integers such "
            f"as 128,128,128, got {text!r}"
        ) from None


def overrides_from_flags(values: dict[str, Any]) -> dict[str, Any]:
    """The recipe fields given on the command line, converted to the Recipe's types."""
    list_fields = {
        f.name
        for f in dataclasses.fields(Recipe)
        if typing.get_origin(typing.get_type_hints(Recipe)[f.name]) is list
    }
    out = {}
    for name, value in values.items():
        if value is None:
            continue
        out[name] = _parse_list(name, value) if name in list_fields else value
    return out


def train_command(
    recipe_file: Optional[Path] = typer.Option(
        None, "--recipe", help="Recipe TOML file to start from (default: the notebook's recipe)."
    ),
    preset: Optional[str] = typer.Option(None, "--preset", help="A shipped recipe by name."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Run folder to create (default: runs/<UTC time>-<name>)."
    ),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue this run folder from its last checkpoint."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress output (warnings still go to stderr)."
    ),
    stop_on_divergence: bool = typer.Option(
        False,
        "--stop-on-divergence",
        help="Stop (exit 1) when the health check flags a NaN or stuck loss.",
    ),
    device: Optional[str] = typer.Option(
        None,
        "--device",
        help="torch device for the reference engine: cpu, cuda, cuda:N (default: cuda if present).",
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Do not write report.html."),
    track: Optional[str] = track_option("the run"),
    **fields: Any,
) -> None:
    """Train a recipe (the notebook's by default) and write a run folder."""
    from mnistlab.cli.report import after_train, tracking_uri

    track_uri = tracking_uri(track)  # a bad value or a missing MLflow fails before training
    try:
        run = _train(recipe_file, preset, out, resume, quiet, stop_on_divergence, device, fields)
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None  # fit already said how to resume
    after_train(run.path, not no_report, track_uri, quiet)
    if run.stopped:
        raise typer.Exit(code=1)


def _train(recipe_file, preset, out, resume, quiet, stop_on_divergence, device, fields):
    from mnistlab.training.fit import fit

    changes = overrides_from_flags(fields)
    if resume is not None:
        refuse_recipe_input(recipe_file, preset, changes)
        if out is not None:
            raise RecipeError("--resume continues the run in its own folder; drop --out")
    recipe = None if resume is not None else Recipe.compose(recipe_file, preset, **changes)
    return fit(
        recipe,
        out=resume if resume is not None else out,
        resume=resume is not None,
        quiet=quiet,
        stop_on_divergence=stop_on_divergence,
        device=device,
    )


def refuse_recipe_input(file: Path | None, preset: str | None, changes: dict[str, Any]) -> None:
    """--resume continues a run exactly as it started (the recipe comes from the run folder):
    one line naming each recipe input given, or nothing.

    >>> refuse_recipe_input(None, "notebook", {"epochs": 3})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mnistlab.errors.RecipeError: --resume ... no recipe input; drop: preset notebook, field 'epochs'
    """
    given = (
        ([f"recipe file {file}"] if file is not None else [])
        + ([f"preset {preset}"] if preset is not None else [])
        + [f"field '{name}'" for name in changes]
    )
    if given:
        raise RecipeError(
            "--resume continues a run exactly as it started, so it takes no recipe input; "
            "drop: " + ", ".join(given)
        )


# typer reads the signature: the fixed options above plus one keyword option per Recipe field.
_fixed = [
    p
    for p in inspect.signature(train_command).parameters.values()
    if p.kind is not inspect.Parameter.VAR_KEYWORD
]
train_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in _fixed] + _recipe_params()
)


def register(root: typer.Typer) -> None:
    root.command("train")(train_command)
