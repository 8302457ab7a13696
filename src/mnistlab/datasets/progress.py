"""A rich progress bar for downloads (stderr, only on a terminal; one line per file otherwise).

>>> from mnistlab.datasets.download import Session
>>> s = Session()
>>> with progress_hook(s, quiet=True):
...     s.on_progress is None
True
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from mnistlab.datasets.download import Session


@contextlib.contextmanager
def progress_hook(session: Session, quiet: bool = False) -> Iterator[None]:
    """Install a progress callback on ``session`` for the duration of the block."""
    if quiet:
        yield
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:
        started: set[str] = set()

        def plain(name: str, done: int, total: int | None) -> None:
            if name not in started:  # logs stay readable: one line per file, no bar spam
                started.add(name)
                size = (
                    ""
                    if not total
                    else (
                        f" ({total / 1e6:.1f} MB)"
                        if total >= 100_000
                        else f" ({total / 1e3:.1f} kB)"
                    )
                )
                print(f"downloading {name}{size}", file=sys.stderr, flush=True)

        session.on_progress = plain
        try:
            yield
        finally:
            session.on_progress = None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        session.on_progress = update
        try:
            yield
        finally:
            session.on_progress = None
