"""serve: the HTTP API and the page's assets, in process (TestClient) and as a real server."""

import io
import json
import re
import socket
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

from mnistlab import datasets
from mnistlab.errors import RunError
from mnistlab.rundir import load_run
from mnistlab.use import predict as pr
from mnistlab.web import app as sv
from mnistlab.web.server import serving

with warnings.catch_warnings():  # starlette asks for httpx2 over httpx; both work
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    import schemathesis
    from fastapi.testclient import TestClient


def trained_run(tmp_path_factory) -> Path:
    """A small run (2 epochs on the bundled sample), trained once per session for every
    serve test module."""
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import fit

    path = tmp_path_factory.getbasetemp() / "serve-run"
    if not (path / "model.safetensors").exists():
        fit(Recipe(epochs=2), datasets.load("mnist-sample"), out=path, quiet=True)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


@pytest.fixture(scope="module")
def client(run):
    return TestClient(sv.create_app(run))


@pytest.fixture(scope="module")
def digits():
    ds = datasets.load("mnist-sample")
    return ds.x_test[:8], ds.y_test[:8]


def _png(img: Image.Image, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def _photo(digit: np.ndarray, size=150) -> Image.Image:
    """A test digit as a user would photograph it: large, dark ink on light paper."""
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BICUBIC), float)
    return Image.fromarray(np.clip(np.rint(240 - 220 * big / 255), 0, 255).astype(np.uint8))


def _error(response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert "\n" not in message and message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---- success paths --------------------------------------------------------------------------
def test_health_and_model(client, run):
    assert client.get("/health").json() == {"status": "ok", "run": run.path.name}
    info = client.get("/model").json()
    assert info["classes"] == list("0123456789") and info["dataset"] == run.dataset_name
    assert info["recipe"]["model"]["hidden"] == [128, 128, 128]
    assert "data_dir" not in info["recipe"]["data"]
    assert info["metrics"]["test"]["accuracy"] == run.metrics["test"]["accuracy"]


def test_json_array_goes_to_the_model_as_it_is(client, run, digits):
    x, y = digits
    expected = run.predict_proba(x)
    for i in range(len(x)):
        answer = client.post("/predict", json={"image": x[i].tolist()}).json()
        assert answer["image"] == x[i].tolist()
        p = np.array([answer["probabilities"][c] for c in run.class_names])
        np.testing.assert_array_equal(p, run.predict_proba(x[i : i + 1])[0])
        np.testing.assert_allclose(p, expected[i], rtol=1e-4, atol=1e-7)  # batch of 8: BLAS order
        assert answer["predicted"] == int(np.argmax(p)) and answer["label"] == str(
            answer["predicted"]
        )
        assert answer["probability"] == max(p)
    hits = sum(
        client.post("/predict", json={"image": d.tolist()}).json()["predicted"] == t
        for d, t in zip(x, y)
    )
    assert hits >= 6  # a 2-epoch model gets ~93 % of test digits


def test_json_floats_round_and_prepare_runs_the_photo_recipe(client, digits):
    x = digits[0][0]
    floats = client.post("/predict", json={"image": (x - 0.3).clip(0).tolist()}).json()
    assert floats["image"] == x.tolist()  # 0.3 below each value rounds back to it
    dark_on_light = (255 - x).tolist()  # the wrong polarity, which prepare undoes
    answer = client.post("/predict", json={"image": dark_on_light, "prepare": True}).json()
    assert answer["image"] == pr.prepare(255 - x).tolist()


@pytest.mark.parametrize("how", ["multipart", "raw"])
def test_upload_is_prepared_as_predict_prepares_a_file(client, run, digits, tmp_path, how):
    x, _ = digits
    for i in (0, 1, 2):
        data = _png(_photo(x[i]))
        (tmp_path / "d.png").write_bytes(data)
        if how == "multipart":
            r = client.post("/predict", files={"file": ("d.png", data, "image/png")})
        else:
            r = client.post("/predict", content=data, headers={"content-type": "image/png"})
        answer = r.json()
        (want,) = pr.predict(run, [tmp_path / "d.png"])
        assert answer["image"] == want.image.tolist()
        assert answer["predicted"] == want.predicted
        np.testing.assert_allclose(
            [answer["probabilities"][c] for c in run.class_names], want.probabilities, rtol=1e-6
        )


@pytest.mark.parametrize("kind", ["jpeg", "rgba", "grey16"])
def test_other_image_kinds(client, digits, kind):
    photo = _photo(digits[0][0])
    if kind == "jpeg":
        data = _png(photo, "JPEG")
    elif kind == "rgba":  # ink on a transparent background, as drawing apps save it
        ink = 255 - np.asarray(photo)
        rgba = np.zeros(ink.shape + (4,), np.uint8)
        rgba[..., 3] = ink
        data = _png(Image.fromarray(rgba, "RGBA"))
    else:
        data = _png(Image.fromarray((np.asarray(photo, np.int32) * 200).astype(np.uint16)))
    answer = client.post("/predict", files={"file": ("d", data, "application/octet-stream")}).json()
    assert answer["label"] == "7"  # the first test digit, whatever the encoding
    assert np.asarray(answer["image"]).max() == 255


def test_large_upload_is_reduced_and_still_read(client, digits):
    x = digits[0][0]
    small = client.post(
        "/predict", content=_png(_photo(x, 300)), headers={"content-type": "image/png"}
    ).json()
    big = client.post(
        "/predict",
        content=_png(_photo(x, 3300)),  # 11 megapixels
        headers={"content-type": "image/png"},
    ).json()
    assert big["label"] == small["label"] == "7"
    assert np.abs(np.array(big["image"], int) - np.array(small["image"], int)).mean() < 8


def test_page_docs_and_assets_are_all_local(client):
    page = client.get("/")
    assert page.status_code == 200 and '<canvas id="pad"' in page.text
    for path in ("/static/app.js", "/static/style.css", "/docs", "/static/docs.js"):
        assert client.get(path).status_code == 200, path
    remote = re.compile(
        r"""(src|href|action)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//"""
        r"""|(fetch|import)\s*\(?\s*["'](https?:)?//|@import""",
        re.IGNORECASE,
    )
    for f in sv.STATIC.iterdir():  # nothing is loaded from another host (no CDN)
        assert not remote.search(f.read_text(encoding="utf-8")), f
    assert "touch-action: none" in client.get("/static/style.css").text
    api = client.get("/openapi.json").json()
    assert set(api["paths"]) == {"/predict", "/health", "/model"}
    assert {"application/json", "multipart/form-data", "image/png"} <= set(
        api["paths"]["/predict"]["post"]["requestBody"]["content"]
    )


# ---- error paths ----------------------------------------------------------------------------
def test_images_that_cannot_be_used(client):
    blank = _png(Image.new("L", (100, 100), 230))
    _error(client.post("/predict", files={"file": ("b.png", blank, "image/png")}), 422, "blank")
    junk = {"file": ("j.png", b"definitely not an image", "image/png")}
    _error(client.post("/predict", files=junk), 422, "not an image")
    truncated = _png(_photo(np.eye(28, dtype=np.uint8) * 255))[:200]
    _error(
        client.post("/predict", content=truncated, headers={"content-type": "image/png"}),
        422,
        "damaged",
    )
    _error(
        client.post("/predict", content=b"", headers={"content-type": "image/png"}), 422, "empty"
    )
    _error(
        client.post("/predict", files={"other": ("d.png", blank, "image/png")}),
        422,
        "field named 'file'",
    )


def _huge_png_header(width: int, height: int) -> bytes:
    """A valid PNG whose header claims ``width`` x ``height``: decoding it would take gigabytes."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def test_pixel_limit_is_checked_before_decoding(client, run):
    def post(data):
        return client.post("/predict", content=data, headers={"content-type": "image/png"})

    _error(post(_huge_png_header(8000, 8000)), 413, "8000x8000", "40,000,000")
    _error(post(_huge_png_header(20000, 20000)), 413, "40,000,000")  # past Pillow's own limit
    small = TestClient(sv.create_app(run, max_pixels=100 * 99))
    photo = {"file": ("d.png", _png(_photo(np.eye(28, dtype=np.uint8), size=100)), "image/png")}
    _error(small.post("/predict", files=photo), 413, "100x100")


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({"image": [[0] * 28] * 27}, 422, "shape 27x28"),
        ({"image": [[0] * 28] * 27 + [[0] * 27]}, 422, "28x28"),  # ragged
        ({"image": [["a"] * 28] * 28}, 422, "other than rows of numbers"),
        ({"image": [[True] * 28] * 28}, 422, "booleans"),
        ({"image": [[[0]] * 28] * 28}, 422, "shape 28x28x1"),
        ({"image": [[300] * 28] * 28}, 422, "values from 300 to 300"),
        ({"image": [[-1] + [0] * 27] * 28}, 422, "values from -1"),
        ({"image": "0" * 784}, 422, "got str"),
        ({"image": None}, 422, "got null"),
        ({"pixels": [[0] * 28] * 28}, 422, '{"image"'),
        ({"image": [[0] * 28] * 28, "colour": 1}, 422, "unknown field 'colour'"),
        ({"image": [[0] * 28] * 28, "prepare": "yes"}, 422, "prepare: expected true or false"),
        ({"image": [[0] * 28] * 28, "prepare": True}, 422, "blank"),
        ([[0] * 28] * 28, 422, "JSON object"),
    ],
)
def test_wrong_json(client, body, status, fragment):
    _error(client.post("/predict", json=body), status, fragment)


def test_malformed_bodies_and_content_types(client):
    def post(content, ctype):
        return client.post("/predict", content=content, headers={"content-type": ctype})

    _error(post(b'{"image": [', "application/json"), 400, "not valid JSON")
    nan = b'{"image": [' + b",".join([b"[" + b",".join([b"NaN"] * 28) + b"]"] * 28) + b"]}"
    _error(post(nan, "application/json"), 422, "NaN")
    _error(post(b"[" * 100000 + b"]" * 100000, "application/json"), 400, "not valid JSON")
    _error(post(b"hello", "text/plain"), 415, "text/plain")
    _error(client.post("/predict"), 415, "none")
    _error(post(b"--x\r\n", "multipart/form-data"), 400)


def test_body_limit_413_whether_announced_or_streamed(run):
    small = TestClient(sv.create_app(run, max_body=1000))
    _error(
        small.post("/predict", content=b"x" * 1001, headers={"content-type": "image/png"}),
        413,
        "1,000 bytes",
    )

    def chunks():  # no Content-Length: the limit must count what arrives
        for _ in range(5):
            yield b"x" * 400

    _error(
        small.post("/predict", content=chunks(), headers={"content-type": "image/png"}),
        413,
        "1,000 bytes",
    )
    assert small.get("/health").status_code == 200


def test_time_limit_503(run, digits):
    slow = TestClient(sv.create_app(run, timeout=0.001))
    big = _png(_photo(digits[0][0], size=1200))  # larger than INLINE_PIXELS: prepared in a thread
    _error(slow.post("/predict", files={"file": ("d.png", big, "image/png")}), 503, "0.001 s")


def test_unknown_routes_and_methods(client):
    _error(client.get("/predict/../../etc/passwd"), 404, "no such endpoint")
    _error(client.get("/static/../app.py"), 404)
    _error(client.get("/nope"), 404, "GET /nope: no such endpoint")
    r = client.delete("/health")
    _error(r, 405, "DELETE not allowed")
    assert r.headers["allow"] == "GET"


def test_diverged_model_is_refused_at_start(run):
    import dataclasses

    broken = dataclasses.replace(run, weights={k: v * np.nan for k, v in run.weights.items()})
    with pytest.raises(RunError, match="NaN"):
        sv.create_app(broken)


# ---- schema-driven: no generated request makes the server fail -----------------------------
@pytest.mark.slow
def test_no_server_errors_on_generated_requests(run):
    from hypothesis import given
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_asgi("/openapi.json", sv.create_app(run))
    strategies = []
    for result in schema.get_all_operations():
        op = result.ok()
        media = list(op.definition.raw.get("requestBody", {}).get("content", {})) or [None]
        strategies += [op.as_strategy(mode, media_type=m) for mode in GenerationMode for m in media]
    assert len(strategies) == 2 * (5 + 1 + 1)  # 5 body types of /predict, /health, /model
    seen = set()

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        response = case.call_and_validate(checks=[not_a_server_error])
        seen.add((case.path, response.status_code))

    check()
    assert {("/predict", 200), ("/predict", 422), ("/health", 200)} <= seen, seen


# ---- the command and a real server ----------------------------------------------------------
def _cli(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "mnistlab", "serve", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cli_refuses_a_bad_run_or_a_taken_port_in_one_line(run_dir, tmp_path):
    r = _cli(tmp_path / "missing")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "no such run folder" in r.stderr and r.stdout == ""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = _cli(run_dir, "--port", taken.getsockname()[1])
    assert r.returncode == 2 and "cannot listen" in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0
    r = _cli(run_dir, "--workers", 0)
    assert r.returncode == 2 and "--workers" in r.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_real_server_answers_like_the_app(run_dir, run, digits, workers):
    x = digits[0][0]
    with serving(run_dir, workers=workers) as server:
        url = server.url
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=30) as http:
            answers = [http.post("/predict", json={"image": x.tolist()}).json() for _ in range(4)]
            upload = http.post("/predict", files={"file": ("d.png", _png(_photo(x)), "image/png")})
            too_big = http.post(
                "/predict", content=b"x" * (sv.MAX_BODY + 1), headers={"content-type": "image/png"}
            )
    p = run.predict_proba(x[None])[0]
    for a in answers:
        np.testing.assert_allclose([a["probabilities"][c] for c in run.class_names], p, rtol=1e-6)
    assert upload.status_code == 200 and upload.json()["label"] == answers[0]["label"]
    _error(too_big, 413)
    assert json.loads(too_big.text)["error"].startswith("body:")


def _sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += str(fd.readlink()).startswith("socket:")
        except FileNotFoundError:  # closed between the listing and the read: not held
            continue
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts sockets in /proc (Linux)")
def test_workers_share_kept_alive_connections(run_dir):
    # A burst of connections must not all land on one worker: kept alive, they would stay
    # there while the other worker idles.
    with serving(run_dir, workers=2) as server:
        pid = server.process.pid
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        before = {k: _sockets(k) for k in kids}
        host, port = server.url.rsplit("/", 1)[-1].split(":")
        conns = [socket.create_connection((host, int(port)), timeout=30) for _ in range(16)]
        try:
            for c in conns:
                c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            for c in conns:
                assert c.recv(4096).startswith(b"HTTP/1.1 200 ")
            held = [_sockets(k) - before[k] for k in kids]
        finally:
            for c in conns:
                c.close()
    assert sum(h > 0 for h in held) == 2, f"new connections per child process: {held}"


def test_load_benchmark_runs_without_errors(run_dir):
    bench = Path(__file__).resolve().parents[2] / "bench" / "serve_load.py"
    r = subprocess.run(
        [
            sys.executable,
            str(bench),
            str(run_dir),
            "--workers",
            "1",
            "--requests",
            "40",
            "--clients",
            "8",
            "--max-seconds",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith(("upload", "json"))]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("upload", "40", "0"),
        ("json", "40", "0"),
    ]
