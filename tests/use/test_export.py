"""export: ONNX models that predict exactly like the run (normalization, batch norm,
softmax inside)."""

import builtins
import dataclasses
import json
import subprocess
import sys

import numpy as np
import onnx  # both are in the test extra: missing, these tests fail rather than skip
import onnxruntime as ort
import pytest

from mnistlab import datasets
from mnistlab.recipe import Recipe
from mnistlab.training.fit import fit
from mnistlab.use import export as ex


@pytest.fixture(scope="module")
def sample():
    ds = datasets.load("mnist-sample")
    return dataclasses.replace(ds, x_train=ds.x_train[:2000], y_train=ds.y_train[:2000])


# Batch norm and dropout in both: they must come out in inference form (moving statistics,
# no dropout), which a training-mode export would get wrong.
RECIPES = {
    "mlp": Recipe(
        hidden=[32, 16],
        batch_norm=True,
        dropout=0.2,
        activation="gelu",
        epochs=1,
        optimizer="adam",
        learning_rate=0.003,
    ),
    "cnn": Recipe(
        kind="cnn",
        conv_channels=[4, 8],
        hidden=[16],
        batch_norm=True,
        dropout=0.2,
        epochs=1,
        optimizer="adam",
        learning_rate=0.003,
        batch_size=64,
    ),
}


@pytest.fixture(scope="module", params=list(RECIPES))
def run(request, sample, tmp_path_factory):
    return fit(RECIPES[request.param], sample, out=tmp_path_factory.mktemp("run") / "r", quiet=True)


def test_onnx_matches_predict_proba_on_the_test_set(run, sample, tmp_path):
    path = ex.export(run, "onnx", tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape[1:], out.name) == ("pixels", [28, 28], "probabilities")
    x = sample.x_test  # raw uint8 0..255: normalization is the model's job
    got = session.run(None, {"pixels": x.astype(np.float32)})[0]
    want = run.predict_proba(x)
    assert got.shape == want.shape == (len(x), 10)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert (got.argmax(1) == want.argmax(1)).all()
    # A batch of one works too (the batch dimension is dynamic).
    np.testing.assert_allclose(
        session.run(None, {"pixels": x[:1].astype(np.float32)})[0], want[:1], atol=1e-5, rtol=0
    )
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["class_names"]) == list(run.class_names)
    assert float(props["normalization.std"]) == run.std
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Dropout" not in ops and "BatchNormalization" not in ops  # folded, inference form


def test_cli_default_path_and_bad_arguments(run, tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "mnistlab", "export", *map(str, args)],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )

    p = cli(run.path)
    assert p.returncode == 0, p.stderr
    assert (run.path / "model.onnx").is_file() and "model.onnx" in p.stdout
    for args, why in [
        ((run.path, "--format", "tflite"), "--format: expected one of onnx"),
        ((tmp_path / "nope",), "no such run folder"),
        ((run.path, "--out", tmp_path), "is a folder"),
    ]:
        p = cli(*args)
        assert p.returncode == 2, p.stdout
        assert p.stderr.startswith("error: ") and why in p.stderr, p.stderr
        assert p.stderr.strip().count("\n") == 0


def test_missing_onnx_names_the_extra(run, tmp_path, monkeypatch):
    real = builtins.__import__

    def no_onnx(name, *args, **kw):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ex.ExportError, match=r"pip install 'mnistlab\[export\]'") as exc:
        ex.export(run, "onnx", tmp_path / "m.onnx")
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "m.onnx").exists()
