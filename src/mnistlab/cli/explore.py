"""``mnistlab explore``: class and pixel distributions of a dataset, as figures + summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def explore(
    dataset: Optional[str] = typer.Option(
        None,
        "--dataset",
        "-d",
        help="Dataset name (default: full MNIST if present, else the bundled sample).",
    ),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Folder holding the four MNIST-format .gz files."
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Where to write the figures and summary.json.",
        show_default="explore-<dataset>",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the random sample grid."),
) -> None:
    """Explore a dataset: class balance, pixel distribution, per-pixel and per-class mean images, samples."""  # noqa: E501 (one line in the command list)
    # Imported here, not at module level: `mnistlab train` must not pay for numpy/matplotlib setup.
    from mnistlab import exploration as ex

    summary = ex.explore(dataset, data_dir=data_dir, seed=seed)
    ex.print_summary(summary)
    files = ex.write_files(
        summary, out if out is not None else Path(f"explore-{summary['dataset']}")
    )
    typer.echo(
        f"wrote {len(files)} files to {files['summary'].parent}: "
        + ", ".join(p.name for p in files.values())
    )


def register(root: typer.Typer) -> None:
    root.command("explore")(explore)
