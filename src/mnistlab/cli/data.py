"""``mnistlab data ...``: fetch, import, inspect and verify datasets (a thin layer over
:mod:`mnistlab.datasets`).

    mnistlab data info                         # what `load()` gives: shapes, balance, checksums
    mnistlab data fetch --dataset fashion-mnist
    mnistlab data import ~/Downloads/mnist     # verify four files and copy them into the cache
    mnistlab data verify                       # re-hash the files load() would use
    mnistlab data path --dataset kmnist        # where they are (or would go)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mnistlab import datasets

app = typer.Typer(
    help="Datasets: fetch, import, info, verify, path.", no_args_is_help=True, add_completion=False
)

DATASET_HELP = f"One of: {', '.join(datasets.NAMES)}."
DataDir = typer.Option(
    None,
    "--data-dir",
    help="Folder holding the four files (or a <name>/ "
    "folder of them); default: $MNISTLAB_DATA_DIR, the cache, system copies.",
)


def _console():
    from rich.console import Console

    return Console(highlight=False)


@app.command()
def fetch(
    dataset: str = typer.Option("mnist", "--dataset", "-d", metavar="NAME", help=DATASET_HELP),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Download into this folder instead of the cache."
    ),
    mirror: Optional[list[str]] = typer.Option(
        None,
        "--mirror",
        metavar="URL",
        help="Base URL to try instead of the built-in ones (repeatable).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Download the dataset (what is missing), verify it, keep it in the cache."""
    folder = datasets.fetch(dataset, data_dir, mirrors=mirror or None, quiet=quiet)
    typer.echo(f"{dataset}: four verified files in {folder}")


@app.command("import")
def import_(
    src: Path = typer.Argument(
        ..., metavar="FOLDER", help="Folder with the four files (.gz or uncompressed)."
    ),
    dataset: str = typer.Option("mnist", "--dataset", "-d", metavar="NAME", help=DATASET_HELP),
) -> None:
    """Verify a folder of the four files and copy it into the cache (for offline machines)."""
    folder = datasets.import_dir(src, dataset)
    typer.echo(f"{dataset}: imported {src} into {folder}")


@app.command()
def info(
    dataset: Optional[str] = typer.Option(
        None,
        "--dataset",
        "-d",
        help=DATASET_HELP + " Default: mnist, or the bundled sample when mnist is unavailable.",
    ),
    data_dir: Optional[Path] = DataDir,
    download: bool = typer.Option(
        False, "--download/--no-download", help="Download the dataset if it is missing."
    ),
) -> None:
    """Shapes, class balance, source and checksum status of a dataset."""
    from rich.table import Table

    d = datasets.info(dataset, data_dir, download=download)
    console = _console()
    if d["note"]:
        console.print(f"note: {d['note']}", soft_wrap=True)
    summary = Table(title=f"{d['name']}: {d['title']}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("source", d["source"])
    for key, shape in d["shapes"].items():
        summary.add_row(key, f"{shape} uint8")
    for f in d["files"]:
        summary.add_row(f["file"], f"verified: {f['how']} {f['sha256'][:16]}...")
    summary.add_row("license", d["license"])
    summary.add_row("attribution", d["attribution"])
    console.print(summary)
    balance = Table(title="class balance")
    for col in ("class", "name", "train", "test"):
        balance.add_column(col, justify="right" if col in ("class", "train", "test") else "left")
    for i, name in enumerate(d["class_names"]):
        balance.add_row(str(i), name, f"{d['train_counts'][i]:,}", f"{d['test_counts'][i]:,}")
    balance.add_row("", "total", f"{sum(d['train_counts']):,}", f"{sum(d['test_counts']):,}")
    console.print(balance)


@app.command()
def verify(
    dataset: str = typer.Option("mnist", "--dataset", "-d", metavar="NAME", help=DATASET_HELP),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Re-hash every file load() would use; exit 2 naming the first bad one."""
    result = datasets.verify(dataset, data_dir)
    arrays = result.pop("array cache")
    for fname, how in result.items():
        typer.echo(f"ok  {fname}  ({how})")
    typer.echo(f"array cache (.npy): {arrays}")
    typer.echo(f"{dataset}: all {len(result)} files verified in {datasets.path(dataset, data_dir)}")


@app.command()
def path(
    dataset: str = typer.Option("mnist", "--dataset", "-d", metavar="NAME", help=DATASET_HELP),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Print the folder the dataset is read from (or would be downloaded to)."""
    typer.echo(str(datasets.path(dataset, data_dir)))
