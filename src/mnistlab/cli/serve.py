"""``mnistlab serve RUN``: the run behind an HTTP API and a draw-a-digit page.

mnistlab serve runs/20260101-120000-notebook            # http://127.0.0.1:8000/
mnistlab serve RUN --host 0.0.0.0 --port 9000 --workers 2
"""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder written by `mnistlab train`."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 opens it to the network."
    ),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    workers: int = typer.Option(
        1, "--workers", help="Server processes (each loads the model); about one per core."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Seconds a request may take before a 503.", show_default="10"
    ),
    max_body: int | None = typer.Option(
        None, "--max-body", help="Largest request body in bytes (else 413).", show_default="8 MiB"
    ),
    max_pixels: int | None = typer.Option(
        None,
        "--max-pixels",
        help="Largest uploaded image in pixels (else 413).",
        show_default="40 million",
    ),
) -> None:
    """Serve a run: POST /predict, GET /health, GET /model, API docs at /docs, a drawing page at /."""  # noqa: E501 (one line in the command list)
    from mnistlab.web import server as sv

    limits = {"timeout": timeout, "max_body": max_body, "max_pixels": max_pixels}
    sv.serve(
        run,
        host=host,
        port=port,
        workers=workers,
        **{k: v for k, v in limits.items() if v is not None},
    )


def register(root: typer.Typer) -> None:
    root.command("serve")(serve)
