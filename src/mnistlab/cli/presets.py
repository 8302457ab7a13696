"""``mnistlab presets [NAME]``: the shipped recipes and compare variants, and one as TOML.

mnistlab presets                          # one line each: train --preset, compare --preset
mnistlab presets fast-mlp > my.toml       # a starting point: edit it, then
mnistlab train --recipe my.toml
"""

from __future__ import annotations

import difflib
from typing import Optional

import typer


def presets(
    name: Optional[str] = typer.Argument(
        None, metavar="NAME", help="A preset to print as TOML (default: list them all)."
    ),
) -> None:
    """List the shipped recipe and compare presets, or print one as TOML to copy and edit."""
    from mnistlab import recipe
    from mnistlab.errors import RecipeError
    from mnistlab.experiments import compare

    kinds = {
        "recipe": (recipe.preset_names(), recipe.preset_text, "mnistlab train --preset NAME"),
        "compare": (compare.preset_names(), compare.preset_text, "mnistlab compare --preset NAME"),
    }
    if name is None:
        for kind, (names, text, usage) in kinds.items():
            typer.echo(f"{kind} presets ({usage}):")
            width = max(map(len, names), default=0)
            for n in names:
                typer.echo(f"  {n:<{width}}  {recipe.description(text(n))}")
        typer.echo("print one as TOML: mnistlab presets NAME")
        return
    found = [text(name) for names, text, _ in kinds.values() if name in names]
    if not found:
        every = [n for names, _, _ in kinds.values() for n in names]
        close = difflib.get_close_matches(name, every, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RecipeError(f"unknown preset {name!r}{hint}; `mnistlab presets` lists them")
    typer.echo("\n".join(found), nl=False)


def register(root: typer.Typer) -> None:
    root.command("presets")(presets)
