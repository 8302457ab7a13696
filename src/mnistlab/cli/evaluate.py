"""``mnistlab evaluate RUN``: metrics, confusion matrix and mistakes of a trained run, or of
test-set predictions from any framework.

    mnistlab evaluate runs/20260101-120000-notebook
    mnistlab evaluate keras_preds.npy --dataset mnist       # labels (N,) or probabilities (N, 10)
    mnistlab evaluate model.onnx --dataset mnist --pixels unit
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def evaluate(
    run: Path = typer.Argument(
        ...,
        metavar="RUN",
        help="Run folder written by `mnistlab train`; or a .npy of test-set predictions "
        "(labels (N,) or probabilities (N, classes), in the test set's order) or an .onnx model.",
    ),
    split: str = typer.Option(
        "test",
        "--split",
        metavar="test|val",
        help="test, or val (the validation part a run held out in training).",
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        metavar="FOLDER",
        help="Where to write the figures.",
        show_default="the run folder; runs/evaluate-<file name> for .npy and .onnx",
    ),
    dataset: Optional[str] = typer.Option(
        None,
        "--dataset",
        "-d",
        metavar="NAME",
        help="Whose test set .npy and .onnx predictions are of (default: full MNIST, else the "
        "bundled sample).",
    ),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", metavar="FOLDER", help="Folder holding the dataset's four files."
    ),
    pixels: str = typer.Option(
        "raw",
        "--pixels",
        metavar="raw|unit|standardize",
        help="What an .onnx model takes: raw 0-255 grey levels (as `mnistlab export` writes "
        "them), unit 0-1, or standardize (the training images' mean and std).",
    ),
) -> None:
    """Evaluate a run: accuracy, loss, per-class precision/recall/F1, confusion matrix, R²."""
    from mnistlab import rundir
    from mnistlab.errors import RunError
    from mnistlab.evaluation import evaluate as ev
    from mnistlab.evaluation import sources

    if sources.kind_of(run) == "run":
        if dataset is not None or data_dir is not None:
            raise RunError(
                "a run is evaluated on the data it was trained on; drop --dataset/--data-dir"
            )
        result = ev.evaluate(run, split=split, out=out)
        ev.print_evaluation(result)
        typer.echo(f'saved under "evaluation"."{split}" in {Path(run) / rundir.METRICS}')
        return
    result = ev.evaluate(run, split, out, dataset=dataset, data_dir=data_dir, pixels=pixels)
    ev.print_evaluation(result)
    typer.echo(f"wrote evaluation.json in {Path(result['figures']['confusion_matrix']).parent}")


def register(root: typer.Typer) -> None:
    root.command("evaluate")(evaluate)
