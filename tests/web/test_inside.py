"""POST /inside: the page's look inside, for an upload or a 28x28 array: the preparation steps,
each hidden layer, an attribution that adds up to the logit change, the pushing units; the same
prediction as POST /predict; one-line errors; not part of the public API document."""

import base64
import io
import warnings

import numpy as np
import pytest
from insiderun import small_run
from PIL import Image

from mnistlab import datasets
from mnistlab.evaluation import inside
from mnistlab.rundir import load_run
from mnistlab.web import app as sv

with warnings.catch_warnings():  # starlette asks for httpx2 over httpx; both work
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return load_run(small_run(tmp_path_factory, "mlp"))


@pytest.fixture(scope="module")
def client(mlp):
    return TestClient(sv.create_app(mlp))


@pytest.fixture(scope="module")
def digit():
    return datasets.load("mnist-sample").x_test[0]  # a 7


def _upload(digit: np.ndarray, size=140) -> bytes:
    """As the page sends a drawing: large, dark ink on white, PNG."""
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR), float)
    buf = io.BytesIO()
    Image.fromarray(np.clip(255 - big, 0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _image(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_an_upload_is_shown_inside(client, mlp, digit):
    files = {"file": ("d.png", _upload(digit), "image/png")}
    r = client.post("/inside", files=files)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["label"] == client.post("/predict", files=files).json()["label"] == "7"
    assert [s["name"] for s in a["steps"]] == ["input", "ink", "cropped", "box", "centred", "seen"]
    assert _image(a["steps"][0]["png"]).size == (112, 112)  # the 140x140 upload, reduced
    assert "centre of mass" in a["steps"][4]["note"]
    assert [(layer["title"], len(layer["values"])) for layer in a["layers"]] == [
        ("hidden layer 1: 32 relu", 32),
        ("hidden layer 2: 16 relu", 16),
    ]
    at = a["attribution"]
    assert at["exact"] and abs(at["gap"]) < 1e-9 and at["target"] == a["predicted"]
    assert sum(map(sum, at["values"])) == pytest.approx(at["logit_change"], abs=1e-3)
    assert _image(at["png"]).size == _image(at["gradient_png"]).size == (112, 112)
    p = a["pushes"]
    assert p["layer"] == "hidden layer 2: 16 relu" and 1 <= len(p["units"]) <= 8
    for u in p["units"]:
        assert u["contribution"] == pytest.approx(u["activation"] * u["weight"])
    assert [u["contribution"] for u in p["units"]] == sorted(
        (u["contribution"] for u in p["units"]), reverse=True
    )
    logits = np.array(list(a["logits"].values()))
    assert list(a["logits"]) == list(mlp.class_names) and int(np.argmax(logits)) == a["predicted"]
    assert a["pushes"]["logit"] == pytest.approx(logits[a["predicted"]])


def test_a_28x28_array_is_used_as_it_is_unless_prepared(client, mlp, digit):
    a = client.post("/inside", json={"image": digit.tolist()}).json()
    assert [s["name"] for s in a["steps"]] == ["seen"]
    look = inside.look(inside.Model.of(mlp), digit)
    assert a["predicted"] == look.predicted
    np.testing.assert_allclose(a["layers"][0]["values"], look.layers[0].values, atol=1e-5)
    b = client.post("/inside", json={"image": digit.tolist(), "prepare": True}).json()
    assert len(b["steps"]) == 6


def test_a_conv_net_shows_its_maps(tmp_path_factory, digit):
    run = load_run(small_run(tmp_path_factory, "cnn"))
    a = TestClient(sv.create_app(run)).post("/inside", json={"image": digit.tolist()}).json()
    kinds = [(layer["kind"], layer.get("shape")) for layer in a["layers"]]
    assert kinds == [("maps", [14, 14, 4]), ("maps", [7, 7, 6]), ("units", None)]
    assert _image(a["layers"][0]["png"]).size == (3 * (4 * 15 - 1), 3 * 14)  # 4 maps in a row
    at = a["attribution"]
    assert not at["exact"] and np.isfinite(at["gap"])


@pytest.mark.parametrize(
    "kwargs, status, fragment",
    [
        ({"files": {"file": ("b.png", b"", "image/png")}}, 422, "empty upload"),
        ({"json": {"image": [[0] * 28] * 28, "prepare": True}}, 422, "blank"),
        ({"json": {"image": [[0] * 27] * 28}}, 422, "28x28"),
        ({"content": b"{nope", "headers": {"content-type": "application/json"}}, 400, "JSON"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "content-type"),
        ({"files": {"other": ("d.png", b"x", "image/png")}}, 422, "'file'"),
        ({"content": b"not an image", "headers": {"content-type": "image/png"}}, 422, "file"),
    ],
)
def test_what_cannot_be_used_is_one_line(client, kwargs, status, fragment):
    r = client.post("/inside", **kwargs)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    assert fragment in message and "\n" not in message


def test_a_body_over_the_limit_is_refused(mlp):
    c = TestClient(sv.create_app(mlp, max_body=1000))
    r = c.post("/inside", content=b"x" * 2000, headers={"content-type": "image/png"})
    assert r.status_code == 413


def test_the_page_endpoint_is_not_in_the_api_document(client):
    assert "/inside" not in client.get("/openapi.json").json()["paths"]
    assert client.get("/static/inside.js").status_code == 200
    assert client.get("/static/inside.css").status_code == 200
    page = client.get("/").text
    assert '<section id="inside"' in page and '<script src="/static/inside.js">' in page
