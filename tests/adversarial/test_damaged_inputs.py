"""Damaged or absurd inputs are one line, never a traceback or a wait without end: special files
given as recipes or images, damaged run files, out-of-range recipe values, a model that predicts
NaN. (The fuller per-command matrices live beside each reader; these keep the classes in CI.)"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from mnistlab import rundir
from mnistlab.errors import DataError, RecipeError, RunError
from mnistlab.fsio import read_toml
from mnistlab.recipe import Recipe
from mnistlab.use import imagefile


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _within(seconds: float, call):
    """``call()``'s exception, which must come within ``seconds`` (a FIFO blocks otherwise)."""
    caught: list[BaseException] = []

    def run():
        try:
            call()
        except BaseException as exc:  # handed to the test
            caught.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still reading after {seconds} s"
    return caught[0] if caught else None


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "folder"])
def test_special_files_as_a_recipe_or_an_image_are_refused_unopened(fifo, tmp_path, kind):
    path = {"fifo": fifo, "/dev/zero": "/dev/zero", "folder": tmp_path}[kind]
    words = {"fifo": "is a FIFO", "/dev/zero": "is a character device", "folder": "is a folder"}
    exc = _within(5, lambda: read_toml(path))
    assert isinstance(exc, RecipeError) and words[kind] in str(exc) and "recipe" in str(exc)
    exc = _within(5, lambda: imagefile.read_image(path))
    assert isinstance(exc, DataError) and words[kind] in str(exc) and "image file" in str(exc)


def test_an_image_file_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(imagefile, "MAX_FILE_BYTES", 1000)
    (tmp_path / "big.png").write_bytes(b"\x89PNG" + bytes(2000))
    with pytest.raises(DataError, match=r"big\.png: 2,004 bytes, more than an image file may"):
        imagefile.read_image(tmp_path / "big.png")


@pytest.mark.parametrize(
    "name, damage, said",
    [
        (rundir.HISTORY, lambda t: t.replace(b"\n1,", b"\n1\xff,"), "not UTF-8"),
        (rundir.HISTORY, lambda t: t.replace(b"\n1,", b"\ninf,"), "epoch is inf"),
        (rundir.METRICS, lambda t: b'{"test": {"accuracy": "high"}}', "is 'high', expected"),
        (rundir.METRICS, lambda t: b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),
    ],
    ids=["history-non-utf8", "history-epoch-inf", "metrics-string", "metrics-deep"],
)
def test_damaged_run_files_are_one_line(tmp_path, fake_run, name, damage, said):
    run = fake_run(tmp_path / "r")
    (run / name).write_bytes(damage((run / name).read_bytes()))
    with pytest.raises(RunError, match=said) as err:
        rundir.load_run(run)
    assert str(err.value).startswith(str(run / name)) and "\n" not in str(err.value)


@pytest.mark.parametrize("record", [{"checksums": 5}, {"data_dir": 42}])
def test_a_malformed_dataset_record_on_resume_is_one_line(tmp_path, fake_run, record):
    run = fake_run(tmp_path / "r")
    (run / rundir.MODEL).unlink()  # unfinished: resume reads environment.json's record
    env = {"engine": "fast", "dataset": {"name": "mnist-sample", **record}}
    (run / rundir.ENVIRONMENT).write_text(json.dumps(env))
    from mnistlab.training.fit import fit

    with pytest.raises(RunError, match=rf"\['dataset'\]\['{next(iter(record))}'\] is"):
        fit(out=run, resume=True, quiet=True)


@pytest.mark.parametrize(
    "field, value",
    [("augment_elastic_sigma", 1e308), ("augment_shift", 1e39), ("kernel_size", 99)],
)
def test_recipe_values_outside_their_range_are_one_line(field, value):
    extra = {"kind": "cnn"} if field == "kernel_size" else {}
    with pytest.raises(RecipeError, match=field):
        Recipe(**extra, **{field: value}).validate()


def test_a_model_that_predicts_nan_is_not_exported(tmp_path, fake_run):
    pytest.importorskip("onnx")
    from mnistlab.use.export import export

    run = fake_run(tmp_path / "r")
    loaded = rundir.load_run(run)
    nan = {k: v * np.float32("nan") for k, v in loaded.weights.items()}
    rundir.write_model(run / rundir.MODEL, nan, 33.3, 78.6, loaded.class_names, loaded.recipe, "x")
    with pytest.raises(RunError, match="predicts NaN/inf probabilities"):
        export(run, out=tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
