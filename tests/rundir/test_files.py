"""runs.py: the run folder's files, their verification, and the shared metrics.json."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnistlab import fsio, rundir
from mnistlab.engines.init import init_weights
from mnistlab.errors import RunError
from mnistlab.recipe import Recipe

CLASSES = tuple("0123456789")


def _fake_run(d: Path, recipe=None) -> Path:
    """A complete run folder written with the module's own writers (no training needed)."""
    recipe = recipe or Recipe(hidden=[8])
    d.mkdir(parents=True, exist_ok=True)
    recipe.to_toml(d / rundir.RECIPE)
    rundir.write_model(
        d / rundir.MODEL, init_weights(recipe), 33.3, 78.6, CLASSES, recipe, "mnist-sample"
    )
    rundir.write_history(
        d / rundir.HISTORY,
        [
            {
                "epoch": 1,
                "loss": 0.5,
                "accuracy": 0.9,
                "val_loss": None,
                "val_accuracy": None,
                "learning_rate": 0.01,
                "seconds": 1.0,
            }
        ],
    )
    rundir.update_metrics(d, {"test": {"loss": 0.3, "accuracy": 0.91}})
    fsio.atomic_write_json(
        d / rundir.ENVIRONMENT, {"engine": "fast", "dataset": {"name": "mnist-sample"}}
    )
    return d


def test_load_run_reads_back_everything(tmp_path):
    run = rundir.load_run(_fake_run(tmp_path / "r"))
    assert run.recipe == Recipe(hidden=[8])
    assert (run.mean, run.std, run.class_names) == (33.3, 78.6, CLASSES)
    assert run.dataset_name == "mnist-sample" and run.engine == "fast"
    assert run.history[0]["val_loss"] is None and run.history[0]["loss"] == 0.5
    for k, v in init_weights(Recipe(hidden=[8])).items():
        np.testing.assert_array_equal(run.weights[k], v)
    x = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    p = run.predict_proba(x)
    assert p.shape == (3, 10) and np.allclose(p.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(run.preprocess(x), (x.reshape(3, 784) - 33.3) / 78.6, rtol=1e-5)


def test_history_csv_round_trips_floats_exactly(tmp_path):
    rows = [
        {
            "epoch": 1,
            "loss": 0.1 + 0.2,
            "accuracy": 1 / 3,
            "val_loss": float("nan"),
            "val_accuracy": 2 / 3,
            "learning_rate": 0.009998910118797052,
            "seconds": 1.5,
        }
    ]
    rundir.write_history(tmp_path / "h.csv", rows)
    back = rundir.read_history(tmp_path / "h.csv")
    assert back[0]["loss"] == 0.1 + 0.2 and back[0]["accuracy"] == 1 / 3
    assert np.isnan(back[0]["val_loss"])


def test_tampered_model_is_detected(tmp_path):
    d = _fake_run(tmp_path / "r")
    data = bytearray((d / rundir.MODEL).read_bytes())
    data[-100] ^= 0x01  # one bit of one weight
    (d / rundir.MODEL).write_bytes(bytes(data))
    with pytest.raises(RunError, match=r"model.safetensors: checksum mismatch"):
        rundir.load_run(d)


def test_tampered_model_metadata_is_detected(tmp_path):
    """A changed class name is still valid JSON: only the metadata's checksum catches it."""
    d = _fake_run(tmp_path / "r")
    data = (d / rundir.MODEL).read_bytes()
    tampered = data.replace(b'\\"7\\"', b'\\"X\\"', 1)  # the escaped "7" of class_names
    assert tampered != data and len(tampered) == len(data)
    (d / rundir.MODEL).write_bytes(tampered)
    with pytest.raises(RunError, match=r"model.safetensors: metadata checksum mismatch"):
        rundir.load_run(d)


def test_truncated_model_is_detected(tmp_path):
    d = _fake_run(tmp_path / "r")
    data = (d / rundir.MODEL).read_bytes()
    (d / rundir.MODEL).write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match=r"model.safetensors: damaged or truncated"):
        rundir.load_run(d)


@pytest.mark.parametrize("name", rundir.REQUIRED)
def test_missing_file_is_named(tmp_path, name):
    d = _fake_run(tmp_path / "r")
    (d / name).unlink()
    with pytest.raises(RunError, match=f"{name}: file is missing"):
        rundir.load_run(d)


def test_model_of_another_recipe_is_rejected(tmp_path):
    d = _fake_run(tmp_path / "r")
    Recipe(hidden=[16]).to_toml(d / rundir.RECIPE)
    with pytest.raises(RunError, match="recipe differs"):
        rundir.load_run(d)


def test_model_weights_are_checked_against_the_network_walk(tmp_path, monkeypatch):
    recipe = Recipe(hidden=[8], batch_norm=True)
    path = tmp_path / "m.safetensors"
    weights = init_weights(recipe)
    rundir.write_model(path, weights, 33.3, 78.6, CLASSES, recipe, "x")

    def no_draws(*args, **kwargs):
        raise AssertionError("reading a model must not draw initial weights")

    monkeypatch.setattr("mnistlab.engines.init.init_weights", no_draws)
    assert rundir.read_model(path)["weights"].keys() == weights.keys()
    weights["bn_0.moving_mean"] = np.zeros(9, np.float32)
    rundir.write_model(path, weights, 33.3, 78.6, CLASSES, recipe, "x")
    with pytest.raises(RunError, match=r"weights do not match .*bn_0\.moving_mean"):
        rundir.read_model(path)


def test_update_metrics_keeps_other_writers_keys(tmp_path):
    rundir.update_metrics(tmp_path, {"train": {"loss": 1.0}, "test": {"accuracy": 0.5}})
    rundir.update_metrics(
        tmp_path, {"evaluation": {"test": {"f1": 0.4}}, "test": {"loss": float("nan")}}
    )
    got = json.loads((tmp_path / rundir.METRICS).read_text())
    assert got == {
        "train": {"loss": 1.0},
        "test": {"accuracy": 0.5, "loss": None},
        "evaluation": {"test": {"f1": 0.4}},
    }


def test_new_run_dir_refuses_a_used_folder_and_names_default(tmp_path, monkeypatch):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(RunError, match="not an empty folder"):
        rundir.new_run_dir(Recipe(), tmp_path / "used")
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(tmp_path / "runs"))
    a, b = rundir.new_run_dir(Recipe(name="exp")), rundir.new_run_dir(Recipe(name="exp"))
    assert a.name.endswith("-exp") and a != b and a.parent == tmp_path / "runs"


def test_load_run_on_a_file_or_nothing_says_which(tmp_path):
    (tmp_path / "recipe.toml").write_text("")  # `evaluate RUN/recipe.toml` by mistake
    with pytest.raises(RunError, match="recipe.toml: is a file, expected a run folder"):
        rundir.load_run(tmp_path / "recipe.toml")
    with pytest.raises(RunError, match="nope: no such run folder"):
        rundir.load_run(tmp_path / "nope")


def test_new_run_dir_under_a_file_is_a_one_line_error(tmp_path):
    from mnistlab.errors import MnistlabError

    (tmp_path / "f.png").write_text("x")
    with pytest.raises(MnistlabError, match="f.png/run: cannot create this folder"):
        rundir.new_run_dir(Recipe(), tmp_path / "f.png" / "run")


def test_cli_reports_a_damaged_run_in_one_line(tmp_path):
    """`mnistlab train --resume` on a run whose checkpoint was cut short: exit 2, no traceback."""
    d = _fake_run(tmp_path / "r")
    (d / rundir.MODEL).unlink()  # unfinished run, so resume reads the checkpoint
    rundir.write_checkpoint(d / rundir.CHECKPOINT, init_weights(Recipe(hidden=[8])), 1, [], "fast")
    data = (d / rundir.CHECKPOINT).read_bytes()
    (d / rundir.CHECKPOINT).write_bytes(data[:-10])
    env = {**os.environ, "MNISTLAB_HOME": str(tmp_path / "home")}
    p = subprocess.run(
        [sys.executable, "-m", "mnistlab", "train", "--resume", str(d)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: ") and "checkpoint.safetensors" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    p = subprocess.run(
        [sys.executable, "-m", "mnistlab", "train", "--resume", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 2 and "recipe.toml: file is missing" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("damage", ["tamper", "truncate", "missing"])
def test_cli_damaged_model_exits_2_without_traceback(tmp_path, monkeypatch, capsys, damage):
    """`mnistlab train --resume` on a finished run re-reads it: a damaged model is one line."""
    from mnistlab.cli import main

    d = _fake_run(tmp_path / "r")
    data = bytearray((d / rundir.MODEL).read_bytes())
    if damage == "tamper":
        data[-5] ^= 0x40
        (d / rundir.MODEL).write_bytes(bytes(data))
    elif damage == "truncate":
        (d / rundir.MODEL).write_bytes(bytes(data[:40]))
    else:
        (d / rundir.HISTORY).unlink()
    monkeypatch.setattr(sys, "argv", ["mnistlab", "train", "--resume", str(d)])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert ("history.csv" if damage == "missing" else "model.safetensors") in err
    assert "Traceback" not in err


def test_predictor_matches_the_reference_model_on_either_path():
    from mnistlab.engines import predictor
    from mnistlab.engines.reference import ReferenceEngine

    x = np.random.default_rng(0).standard_normal((5, 784)).astype(np.float32)
    for r in (
        Recipe(hidden=[16, 8], dropout=0.2),  # the NumPy path (dropout is off)
        Recipe(kind="cnn", conv_channels=[4], hidden=[8]),
    ):  # torch only
        w = init_weights(r)
        p = predictor(r, w)(x)
        assert p.shape == (5, 10) and p.dtype == np.float32
        np.testing.assert_allclose(p, ReferenceEngine(r, w).predict_proba(x), atol=1e-5)
