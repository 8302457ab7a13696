"""The recipe flags ``train``, ``compare`` and ``search`` share: one per Recipe field.

They are generated from the field declarations (help, range and default from
``recipe.fields_help``, grouped by recipe.toml section), so a new field is a new flag on all
three commands without touching them. ``with_recipe_flags(command)`` gives a typer command
function (taking ``**fields``) one keyword option per field; ``overrides_from_flags(fields)``
turns what was given into Recipe changes.

>>> overrides_from_flags({"hidden": "256,128", "lr": None, "epochs": 2})
{'hidden': [256, 128], 'epochs': 2}
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, Optional

import typer

from mnistlab.errors import RecipeError
from mnistlab.recipe import SPECS, Recipe, fields_help
from mnistlab.recipe.fields import Flag, Interval, IntList, Options, OrUnset, Text

_HINTS = typing.get_type_hints(Recipe)
LIST_FIELDS = tuple(n for n in SPECS if typing.get_origin(_HINTS[n]) is list)
_METAVARS = {"dataset": "NAME", "data_dir": "FOLDER", "name": "NAME"}


def _annotation(name: str) -> Any:
    """The click-friendly annotation of a field's flag: lists travel as "128,128,128" text."""
    hint = _HINTS[name]
    if typing.get_origin(hint) is typing.Union or type(hint).__name__ == "UnionType":
        hint = [a for a in typing.get_args(hint) if a is not type(None)][0]  # X | None -> X
    if typing.get_origin(hint) is list:
        return Optional[str]
    return Optional[hint]


def metavar(name: str) -> str:
    """What a field's flag takes, in the help: N, X, N,N,..., one of its choices, or nothing."""
    constraint = SPECS[name].constraint
    if isinstance(constraint, OrUnset):
        constraint = constraint.inner
    if isinstance(constraint, Flag):
        return ""
    if isinstance(constraint, IntList):
        return "N,N,..."
    if isinstance(constraint, Options):
        return "|".join(constraint.choices) if len(constraint.choices) <= 3 else "NAME"
    if isinstance(constraint, Interval):
        return "N" if constraint.type is int else "X"
    assert isinstance(constraint, Text), constraint
    return _METAVARS.get(name, "TEXT")


def recipe_params(skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One keyword-only typer option per Recipe field (but ``skip``), help from its declaration."""
    params = []
    for name, text in fields_help().items():
        if name in skip:
            continue
        spec = SPECS[name]
        flag = "--" + name.replace("_", "-")
        is_bool = isinstance(spec.constraint, Flag)
        names = [f"{flag}/--no-{name.replace('_', '-')}"] if is_bool else [flag]
        if spec.alias:
            names.append("--" + spec.alias)
        if name in LIST_FIELDS:
            example = spec.constraint.example.strip("[]").replace(" ", "")
            text += f" (on the command line comma-separated, e.g. {example}; empty for none)"
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_annotation(name),
                default=typer.Option(
                    None,
                    *names,
                    help=text,
                    metavar=metavar(name),
                    show_default=False,  # the help states it, in the recipe's own words
                    rich_help_panel=f"Recipe fields: {spec.section}"
                    if spec.section
                    else "Recipe fields",
                ),
            )
        )
    return params


def with_recipe_flags(command: Callable, skip: tuple[str, ...] = ()) -> Callable:
    """``command`` (whose ``**fields`` receives them) with a flag per Recipe field: typer reads
    the signature, so it is rewritten as the fixed options plus the generated ones."""
    fixed = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(command).parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    command.__signature__ = inspect.Signature(fixed + recipe_params(skip))  # type: ignore[attr-defined]
    return command


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
    return {
        name: _parse_list(name, value) if name in LIST_FIELDS else value
        for name, value in values.items()
        if value is not None
    }
