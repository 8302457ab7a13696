"""``mnistlab export RUN --format onnx [--out FILE]``: the run as a model any runtime can serve.

    mnistlab export runs/20260101-120000-notebook                 # -> <run>/model.onnx
    mnistlab export RUN --format onnx --out digits.onnx
    mnistlab export RUN --calibrated        # softmax(logits / T), T from calibration.json

The ONNX model takes float32 (N, 28, 28) raw 0-255 pixels and returns (N, classes) probabilities;
normalization, batch norm (inference form) and softmax are inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def export(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder written by `mnistlab train`."),
    format: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="File to write.", show_default="RUN/model.onnx"
    ),
    calibrated: bool = typer.Option(
        False,
        "--calibrated",
        help="Calibrated probabilities: the logits divided by the temperature of the run's "
        "calibration.json before the softmax.",
    ),
) -> None:
    """Export a trained run: raw 0-255 pixels (N, 28, 28) in, probabilities out."""
    from mnistlab.use import export as ex

    path = ex.export(run, format=format, out=out, calibrated=calibrated)
    kind = "calibrated" if calibrated else "raw softmax"
    typer.echo(
        f"wrote {path} (input 'pixels': float32 (N, 28, 28) raw 0-255; output "
        f"'probabilities': (N, classes), {kind})"
    )


def register(root: typer.Typer) -> None:
    root.command("export")(export)
