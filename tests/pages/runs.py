"""Trained runs shared by the test modules of one session (through its temp folder): the serve
tests' small run, and a calibrated copy of it."""

from __future__ import annotations

import shutil
from pathlib import Path


def serve_run(tmp_path_factory) -> Path:
    """The notebook recipe, 2 epochs on the bundled sample (the serve tests' run)."""
    from mnistlab import datasets
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import fit

    path = tmp_path_factory.getbasetemp() / "serve-run"
    if not (path / "model.safetensors").exists():
        fit(Recipe(epochs=2), datasets.load("mnist-sample"), out=path, quiet=True)
    return path


def calibrated_run(tmp_path_factory) -> Path:
    """A copy of ``serve_run`` with its calibration.json (fitted on its validation part)."""
    from mnistlab.evaluation.calibration import calibrate

    path = tmp_path_factory.getbasetemp() / "calibrated-run"
    if not (path / "calibration.json").exists():
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(serve_run(tmp_path_factory), path, ignore=shutil.ignore_patterns("*.html"))
        calibrate(path)
    return path
