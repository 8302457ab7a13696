"""What training prints, Keras ``verbose=1``-like: a progress bar per epoch on a terminal, one
summary line per epoch, and warnings on stderr (shown even when quiet: they are about the
result, not the progress).

>>> row = {"epoch": 1, "seconds": 2.0, "loss": 0.5, "accuracy": 0.9, "val_loss": None}
>>> summary(row, epochs=5, steps=1313)
'Epoch 1/5 - 1313/1313 - 2.0s - loss: 0.5000 - accuracy: 0.9000'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mnistlab.datasets import Dataset


class Console:
    def __init__(self, quiet: bool):
        self.quiet = quiet
        if not quiet:
            from rich.console import Console as RichConsole

            self.console = RichConsole(highlight=False, soft_wrap=True)
        self.err = None

    def line(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def warn(self, text: str) -> None:
        if self.err is None:
            from rich.console import Console as RichConsole

            self.err = RichConsole(stderr=True, highlight=False, soft_wrap=True)
        self.err.print(f"[bold yellow]warning:[/] {text}")

    @contextlib.contextmanager
    def epoch(self, epoch: int, epochs: int, steps: int) -> Iterator[Any]:
        """A progress callback ``(done, loss, accuracy)`` for one epoch's steps, or None."""
        if self.quiet or not self.console.is_terminal:
            yield None  # a bar in a log file is noise: the summary line says it all
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn(f"Epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
            transient=True,
        ) as bar:
            task = bar.add_task("", total=steps, metrics="")

            def update(done: int, loss: float, acc: float) -> None:
                bar.update(task, completed=done, metrics=f"loss: {loss:.4f} - accuracy: {acc:.4f}")

            yield update


def dataset_line(ds: Dataset) -> str:
    """The first line of a training: which data, how much of it, from where."""
    first = (
        f"dataset: {ds.name} ({len(ds.x_train):,} train / {len(ds.x_test):,} test images"
        + (f", from {ds.source}" if ds.source else "")
        + ")"
    )
    return first + (f" - note: {ds.note}" if ds.note else "")


def summary(row: dict[str, Any], epochs: int, steps: int) -> str:
    """One epoch's line: its number, steps, seconds, and the numbers of its history row."""
    parts = [
        f"Epoch {row['epoch']}/{epochs}",
        f"{steps}/{steps}",
        f"{row['seconds']:.1f}s",
        f"loss: {row['loss']:.4f}",
        f"accuracy: {row['accuracy']:.4f}",
    ]
    if row.get("val_loss") is not None:
        parts += [f"val_loss: {row['val_loss']:.4f}", f"val_accuracy: {row['val_accuracy']:.4f}"]
    return " - ".join(parts)
