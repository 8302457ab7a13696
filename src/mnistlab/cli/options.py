"""The options several commands share, declared once: a flag means the same thing, with the same
help, wherever it appears (the recipe fields' flags are in ``recipe_flags``)."""

from __future__ import annotations

import typer


def track(what: str = "each finished run"):
    """``--track``: train, compare and search log to MLflow (checked by ``finish.tracking_uri``)."""
    return typer.Option(
        None,
        "--track",
        metavar="mlflow[:URI]",
        help=f"Also log {what} to MLflow: mlflow or mlflow:URI (default URI sqlite:///mlflow.db).",
    )


def pixels():
    """``--pixels``: what an ONNX model from another framework takes as input."""
    return typer.Option(
        "raw",
        "--pixels",
        metavar="raw|unit|standardize",
        help="What an .onnx model takes: raw 0-255 grey levels (as `mnistlab export` writes "
        "them), unit 0-1, or standardize (the training images' mean and std).",
    )


def images(part: str):
    """``--train-images`` / ``--test-images``: quick trials on the first N images."""
    return typer.Option(
        None, f"--{part}-images", metavar="N", help=f"Use only the first N {part}ing images."
    )


def storage(default: str):
    """``--storage``: the study database that workers on any machine share."""
    return typer.Option(
        None,
        "--storage",
        metavar="URL",
        help=f"Study database URL (default: {default}; postgresql://user@host:port/db to share "
        "one study between machines).",
    )


def study(default: str):
    return typer.Option(None, "--study", metavar="NAME", help=f"Study name (default: {default}).")


def heartbeat(what: str):
    return typer.Option(
        10,
        "--heartbeat",
        metavar="SECONDS",
        help=f"Seconds between a running {what}'s heartbeats; silent for 3x this, it is failed "
        "and retried.",
    )
