"""``mnistlab data ...`` smoke tests (the commands are thin; the API is tested elsewhere)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mnistlab.cli.data import app
from mnistlab.errors import DataError

runner = CliRunner()


def test_info_default_falls_back_to_sample_and_says_so_first(mnistlab_home):
    r = runner.invoke(app, ["info"], terminal_width=200)
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[0]
    assert first.startswith("note: full MNIST not found") and "mnist-sample" in first
    assert "1,124" in r.output and "10,000" in r.output and "CC BY-SA 3.0" in r.output


def test_import_info_verify_path_on_real_mnist(mnist_dir, mnistlab_home):
    r = runner.invoke(app, ["import", str(mnist_dir)])
    assert r.exit_code == 0, r.output
    cache = mnistlab_home / "datasets" / "mnist"
    assert f"imported {mnist_dir} into {cache}" in r.output
    r = runner.invoke(app, ["info", "--dataset", "mnist"], terminal_width=200)
    assert r.exit_code == 0 and "note:" not in r.output
    assert "(60000, 28, 28) uint8" in r.output and "6,742" in r.output
    assert "gz-sha256 440fcabf73cc546f" in r.output
    r = runner.invoke(app, ["verify"])
    assert r.exit_code == 0 and r.output.count("ok  ") == 4
    r = runner.invoke(app, ["path"])
    assert r.output.strip() == str(cache)


def test_data_dir_option(fashion_dir, mnistlab_home):
    r = runner.invoke(app, ["verify", "-d", "fashion-mnist", "--data-dir", str(fashion_dir)])
    assert r.exit_code == 0, r.output
    assert r.output.count("(payload-sha256)") == 4
    r = runner.invoke(app, ["path", "-d", "fashion-mnist", "--data-dir", str(fashion_dir.parent)])
    assert r.output.strip() == str(fashion_dir)


def test_errors_surface_as_data_error(mnistlab_home):
    r = runner.invoke(app, ["verify", "--dataset", "mnist"])
    assert r.exit_code != 0 and isinstance(r.exception, DataError)
    r = runner.invoke(app, ["info", "--dataset", "nope"])
    assert isinstance(r.exception, DataError) and "unknown dataset 'nope'" in str(r.exception)


def test_explicit_mnist_offline_is_one_clear_line_and_exit_2(mnistlab_home):
    env = {**os.environ, "MNISTLAB_HOME": str(mnistlab_home)}
    for args in (["data", "fetch"], ["data", "info", "--dataset", "mnist", "--download"]):
        p = subprocess.run(
            [sys.executable, "-m", "mnistlab", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: mnist")
        assert "no network" in lines[0] and str(mnistlab_home / "datasets" / "mnist") in lines[0]


@pytest.mark.parametrize("cmd", ["fetch", "import", "info", "verify", "path"])
def test_every_command_has_dataset_option(cmd):
    r = runner.invoke(app, [cmd, "--help"], terminal_width=200)
    assert r.exit_code == 0 and "--dataset" in r.output
