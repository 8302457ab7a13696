"""``mnistlab runs [DIR]``: the runs, compares, searches and explores under a folder, as a table.

mnistlab runs                     # runs/ (or $MNISTLAB_RUNS_DIR)
mnistlab runs runs/compare-beat-the-baseline/runs
mnistlab runs --json | jq '.[] | select(.health != "ok")'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def runs(
    folder: Optional[Path] = typer.Argument(
        None, metavar="FOLDER", help="Folder to list (default: runs/, or $MNISTLAB_RUNS_DIR)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the entries as JSON."),
) -> None:
    """List runs and compare/search/explore folders: what each changes, accuracy, health, date."""
    from mnistlab.rundir.listing import listing

    entries = listing(folder)
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    print_listing(entries, folder)


def print_listing(entries, folder) -> None:
    """The entries as a rich table, oldest first; a damaged folder is a row saying why."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:  # a pipe or log: rich's 80 columns would wrap every row
        console.width = max(console.width, 160)
    if not entries:
        console.print(f"no runs in {folder or 'runs/'} yet: mnistlab train makes one")
        return
    table = Table(title=f"{len(entries)} in {folder or 'runs/'}")
    for col in ("name", "kind", "dataset", "changes", "epochs", "test acc", "health", "date"):
        right = col in ("epochs", "test acc")
        # a name is copied into the next command: folded onto more lines, never cut short
        table.add_column(col, justify="right" if right else "left", overflow="fold")
    for e in entries:
        epochs = "" if e.epochs is None else str(e.epochs)
        if e.planned_epochs is not None and e.epochs != e.planned_epochs:
            epochs += f"/{e.planned_epochs}"
        acc = "" if e.test_accuracy is None else f"{100 * e.test_accuracy:.2f} %"
        date = (e.date or "")[:16].replace("T", " ")
        table.add_row(e.name, e.kind, e.dataset or "", e.changes, epochs, acc, e.health, date)
    console.print(table)


def register(root: typer.Typer) -> None:
    root.command("runs")(runs)
