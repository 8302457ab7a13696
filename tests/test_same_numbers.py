"""scripts/same_numbers.py: the before/after check of a refactor finds one changed bit."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

import mnistlab
from mnistlab import Recipe

ROOT = Path(__file__).resolve().parents[1]


def _script():
    path = ROOT / "scripts" / "same_numbers.py"
    spec = importlib.util.spec_from_file_location("same_numbers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_identical_runs_pass_and_one_flipped_bit_is_named(tmp_path):
    script = _script()
    run = mnistlab.fit(Recipe(epochs=1, hidden=[8], threads=1), "mnist-sample", out=tmp_path / "a")
    shutil.copytree(run.path, tmp_path / "b")
    assert script.compare(tmp_path / "a", tmp_path / "b") == []

    model = load_file(tmp_path / "b" / "model.safetensors")
    kernel = model["dense_1.kernel"].copy()
    kernel.view(np.uint32)[3, 4] ^= 1  # the last bit of one weight
    save_file({**model, "dense_1.kernel": kernel}, tmp_path / "b" / "model.safetensors")
    assert script.compare(tmp_path / "a", tmp_path / "b") == ["model/dense_1.kernel differs"]


def test_every_recipe_it_trains_is_one_the_command_line_accepts():
    """A renamed flag would make the script fail on both trees alike; caught here instead."""
    from typer.testing import CliRunner

    from mnistlab.cli import app

    script = _script()
    for name, flags in script.RECIPES.items():
        args = ["train", "--dataset", "mnist-sample", *script.COMMON, *flags, "--help"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (name, result.output)
