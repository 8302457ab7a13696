"""How sure predict and export say the model is: calibrated probabilities when asked (refused in
one line without a calibration), a verdict on every answer ("sure", "not sure", "not a digit I
know"), and an out-of-distribution check that tells digits from drawn non-digits on the sample
(AUROC above 0.85, false alarms near the 5 % it was set to)."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw
from runs import calibrated_run, serve_run

from mnistlab import datasets
from mnistlab.errors import RunError
from mnistlab.rundir import load_run
from mnistlab.rundir.calibration import read_calibration, softmax
from mnistlab.use import nondigits as nd
from mnistlab.use import predict as pr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return calibrated_run(tmp_path_factory)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    return serve_run(tmp_path_factory)


def _canvas(points, width=10):
    """A drawing as the page sends it: dark strokes on a white 140 px canvas."""
    image = Image.new("L", (140, 140), 255)
    ImageDraw.Draw(image).line([(140 * x, 140 * y) for x, y in points], fill=0, width=width)
    return np.asarray(image)


SEVEN = _canvas([(0.3, 0.2), (0.72, 0.2), (0.5, 0.85)])
# back and forth across the whole canvas: the scribble of someone testing the page
SCRIBBLE = _canvas([(0.15 + 0.7 * (i % 2), 0.2 + 0.6 * i / 9) for i in range(10)])


# ---- the non-digits and the check ------------------------------------------------------
def test_non_digits_are_seeded_and_drawn_like_the_page():
    a, b, c = nd.non_digits(3, seed=0), nd.non_digits(3, seed=0), nd.non_digits(3, seed=1)
    assert set(a) == {"letters", "shapes", "scribbles", "noise"}
    for kind in a:
        assert all(x.shape == (140, 140) and x.dtype == np.uint8 for x in a[kind])
        assert all((x == y).all() for x, y in zip(a[kind], b[kind]))  # same seed, same images
        assert any((x != y).any() for x, y in zip(a[kind], c[kind]))
        assert a[kind][0].max() == 255 and a[kind][0].min() < 128  # dark ink on white paper
    x, refused = nd.prepared(a["letters"])
    assert x.shape == (3, 28, 28) and refused == 0


def test_ood_score_separates_digits_from_non_digits_on_the_sample(run_dir):
    result = nd.check_run(run_dir, per_kind=50)
    fa = result["false_alarm"]
    assert fa["n"] == 2000 and fa["target"] == 0.05
    assert 0.02 <= fa["measured"] <= 0.10  # set on validation digits, measured on test ones
    assert result["auroc"] > 0.85, result
    assert all(c["auroc"] > 0.75 for c in result["catch"].values()), result
    assert result["catch_rate"] > 0.4, result
    for c in result["catch"].values():
        assert c["rate"] == (c["flagged"] + c["refused"]) / c["n"]


def test_check_run_needs_a_calibration(raw_dir):
    with pytest.raises(RunError, match="not calibrated yet"):
        nd.check_run(raw_dir, per_kind=2)


# ---- predict ------------------------------------------------------------------------------
def test_calibrated_predictions_are_temperature_scaled_and_say_so(run_dir):
    run = load_run(run_dir)
    t = read_calibration(run).temperature
    raw, calibrated = (
        pr.predict(run, [SEVEN, SCRIBBLE], top=10, calibrated=c)[0] for c in (False, True)
    )
    z = run.predict_logits(raw.image[None])
    # (logits of a batch of one may differ from a batch of two in float32's last bits)
    np.testing.assert_allclose(calibrated.probabilities, softmax(z, t)[0], rtol=1e-5)
    np.testing.assert_allclose(raw.probabilities, softmax(z)[0], rtol=1e-5)
    assert (raw.kind, calibrated.kind) == ("raw", "calibrated")
    assert calibrated.label == raw.label == "7"  # the temperature never changes the class
    assert calibrated.raw_probability == pytest.approx(raw.probability)
    d = calibrated.to_dict()
    assert d["probabilities_are"] == "calibrated" and d["verdict"] in ("sure", "not sure")
    json.dumps(d)


def test_verdicts_sure_not_sure_and_not_a_digit(run_dir):
    run = load_run(run_dir)
    seven, scribble = pr.predict(run, [SEVEN, SCRIBBLE], calibrated=True)
    assert seven.ood["unusual"] is False and seven.verdict == "sure"
    assert scribble.ood["unusual"] is True and scribble.verdict == "not a digit I know"
    assert scribble.ood["score"] > scribble.ood["threshold"]
    # "not sure" below the threshold, whatever the class: a digit halfway between two
    ds = datasets.load("mnist-sample")
    answers = pr.predict_prepared(run, ds.x_test[:300], calibrated=True)
    unsure = [a for a in answers if a.verdict == "not sure"]
    assert unsure and all(a.probability < pr.NOT_SURE_BELOW for a in unsure)
    assert all(a.probability >= pr.NOT_SURE_BELOW for a in answers if a.verdict == "sure")
    assert pr.unfamiliar(["T-shirt", "Trouser"]) == "not like anything it was trained on"


def test_uncalibrated_run_is_raw_unchecked_and_refuses_calibrated(raw_dir):
    run = load_run(raw_dir)
    (answer,) = pr.predict(run, [SEVEN])
    assert answer.kind == "raw" and answer.ood is None and answer.verdict == "sure"
    np.testing.assert_array_equal(  # the raw path is the run's own probabilities, unchanged
        answer.probabilities, run.predict_proba(answer.image[None])[0].astype(np.float64)
    )
    with pytest.raises(RunError) as info:
        pr.predict(run, [SEVEN], calibrated=True)
    assert "calibration.json: missing" in str(info.value) and "\n" not in str(info.value)


def test_cli_predict_calibrated_json_and_table(run_dir, raw_dir, tmp_path, monkeypatch, capsys):
    from mnistlab.cli import main

    monkeypatch.setenv("COLUMNS", "200")  # one table row per line
    files = []
    for name, image in (("seven.png", SEVEN), ("scribble.png", SCRIBBLE)):
        Image.fromarray(image).save(tmp_path / name)
        files.append(str(tmp_path / name))

    def run_cli(*args):
        monkeypatch.setattr("sys.argv", ["mnistlab", "predict", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        return exc.value.code, capsys.readouterr()

    code, out = run_cli(str(run_dir), *files, "--calibrated", "--json")
    answers = json.loads(out.out)
    assert code == 0 and [a["probabilities_are"] for a in answers] == ["calibrated"] * 2
    assert [a["verdict"] for a in answers] == ["sure", "not a digit I know"]
    code, out = run_cli(str(run_dir), *files)
    assert "probability (raw)" in out.out and "not a digit I know" in out.out
    assert "--calibrated uses" in out.out
    code, out = run_cli(str(raw_dir), files[0], "--calibrated")
    assert code == 2 and out.err.count("\n") == 1 and "not calibrated yet" in out.err


# ---- export -------------------------------------------------------------------------------
def test_export_calibrated_divides_by_the_temperature(run_dir, raw_dir, tmp_path):
    import onnxruntime as ort

    from mnistlab.use import export as ex

    run = load_run(run_dir)
    t = read_calibration(run).temperature
    x = datasets.load("mnist-sample").x_test[:64]
    for calibrated in (False, True):
        path = ex.export(run_dir, out=tmp_path / f"m{calibrated}.onnx", calibrated=calibrated)
        got = ort.InferenceSession(str(path)).run(None, {"pixels": x.astype(np.float32)})[0]
        z = run.predict_logits(x)
        np.testing.assert_allclose(got, softmax(z, t if calibrated else 1.0), atol=2e-6)
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert props["probabilities"] == ("calibrated" if calibrated else "raw softmax")
        assert props["temperature"] == (repr(t) if calibrated else "")
    with pytest.raises(RunError, match="not calibrated yet"):
        ex.export(raw_dir, out=tmp_path / "x.onnx", calibrated=True)
    assert not (tmp_path / "x.onnx").exists()


def test_a_run_resumed_since_its_calibration_is_refused_by_predict(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    run = load_run(copy)
    from mnistlab.rundir import MODEL, write_model

    weights = {k: v * np.float32(1.01) for k, v in run.weights.items()}
    write_model(copy / MODEL, weights, run.mean, run.std, run.class_names, run.recipe, "x")
    with pytest.raises(RunError, match="fitted for other weights"):
        pr.predict(copy, [SEVEN])
