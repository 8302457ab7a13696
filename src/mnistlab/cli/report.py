"""``mnistlab report FOLDER``: the self-contained HTML page of a run, compare, search or explore
folder (any other path is one line, exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report(
    folder: Path = typer.Argument(
        ...,
        metavar="FOLDER",
        help="A folder mnistlab wrote: a run (train), compare, search or explore folder.",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        metavar="FILE",
        help="HTML file to write.",
        show_default="FOLDER/report.html",
    ),
) -> None:
    """Write the page of a run, compare, search or explore folder: one self-contained HTML file (figures embedded; offline, phone, print)."""  # noqa: E501 (one line in the command list)
    from mnistlab.pages import write

    path = write(folder, out)
    typer.echo(f"report: {path}")


def register(root: typer.Typer) -> None:
    root.command("report")(report)
