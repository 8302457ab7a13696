"""serve: how sure the answer says the model is. A calibrated run answers with calibrated
probabilities and its out-of-distribution verdict, says which probabilities they are, and gives
raw ones when asked; an uncalibrated run answers raw, labelled raw, and refuses to pretend."""

import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw
from runs import calibrated_run, serve_run

from mnistlab.rundir import load_run
from mnistlab.rundir.calibration import read_calibration, softmax
from mnistlab.use import predict as pr
from mnistlab.web import app as sv

with warnings.catch_warnings():  # starlette asks for httpx2 over httpx; both work
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    run = load_run(calibrated_run(tmp_path_factory))
    return run, TestClient(sv.create_app(run))


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    run = load_run(serve_run(tmp_path_factory))
    return run, TestClient(sv.create_app(run))


def _drawing(points) -> bytes:
    import io

    image = Image.new("L", (140, 140), 255)
    ImageDraw.Draw(image).line([(140 * x, 140 * y) for x, y in points], fill=0, width=10)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


SEVEN = _drawing([(0.3, 0.2), (0.72, 0.2), (0.5, 0.85)])
SCRIBBLE = _drawing([(0.15 + 0.7 * (i % 2), 0.2 + 0.6 * i / 9) for i in range(10)])


def _post(client, data, query=""):
    return client.post(f"/predict{query}", files={"file": ("d.png", data, "image/png")})


def test_calibrated_answer_says_which_probabilities_and_its_verdict(calibrated):
    run, client = calibrated
    t = read_calibration(run).temperature
    answer = _post(client, SEVEN).json()
    assert answer["label"] == "7" and answer["probabilities_are"] == "calibrated"
    assert answer["temperature"] == t and answer["verdict"] == "sure"
    x = np.array(answer["image"], np.uint8)[None]
    z = run.predict_logits(x)
    p = np.array([answer["probabilities"][c] for c in run.class_names])
    np.testing.assert_allclose(p, softmax(z, t)[0], rtol=1e-9)
    assert answer["probability"] == max(p)
    assert answer["raw_probability"] == pytest.approx(softmax(z)[0].max(), rel=1e-9)
    assert answer["ood"]["unusual"] is False and answer["ood"]["threshold"] < 1
    # what `mnistlab predict` says of the same 28x28
    (want,) = pr.predict_prepared(run, x, calibrated=True)
    assert (want.verdict, want.label) == (answer["verdict"], answer["label"])

    scribble = _post(client, SCRIBBLE).json()
    assert scribble["verdict"] == "not a digit I know" and scribble["ood"]["unusual"] is True

    as_raw = _post(client, SEVEN, "?probabilities=raw").json()
    assert as_raw["probabilities_are"] == "raw" and as_raw["temperature"] is None
    assert as_raw["probability"] == pytest.approx(answer["raw_probability"], rel=1e-9)
    assert as_raw["ood"] == answer["ood"]  # the check does not depend on the temperature
    assert _post(client, SEVEN, "?probabilities=odd").status_code == 422


def test_uncalibrated_run_answers_raw_and_refuses_calibrated(raw):
    run, client = raw
    answer = _post(client, SEVEN).json()
    assert answer["probabilities_are"] == "raw" and answer["ood"] is None
    assert answer["raw_probability"] is None and answer["temperature"] is None
    r = _post(client, SEVEN, "?probabilities=calibrated")
    assert r.status_code == 409 and "not calibrated yet" in r.json()["error"]
    assert str(run.path) not in r.json()["error"]  # no server path in an answer
    info = client.get("/model").json()["calibration"]
    assert info["calibrated"] is False and "mnistlab evaluate" in info["why_not"]


def test_model_info_has_the_calibration_and_the_accuracy_interval(calibrated):
    run, client = calibrated
    info = client.get("/model").json()
    cal = info["calibration"]
    assert cal["calibrated"] is True and cal["temperature"] == read_calibration(run).temperature
    assert cal["not_sure_below"] == pr.NOT_SURE_BELOW and cal["ood_false_alarm"] == 0.05
    ci = info["test_accuracy_ci"]
    assert ci["low"] < run.metrics["test"]["accuracy"] < ci["high"] and ci["method"]


def test_openapi_describes_the_answer(calibrated):
    _, client = calibrated
    schema = client.get("/openapi.json").json()
    answer = schema["components"]["schemas"]["Answer"]["properties"]
    for key in ("probabilities_are", "raw_probability", "temperature", "verdict", "ood"):
        assert key in answer, key
    params = schema["paths"]["/predict"]["post"]["parameters"]
    assert [p["name"] for p in params] == ["probabilities"]
    assert "409" in schema["paths"]["/predict"]["post"]["responses"]
