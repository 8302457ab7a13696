"""The draw-a-digit page in a real browser (Debian's Chromium, headless, via Playwright) against a
real `mnistlab serve` process: strokes drawn with a mouse and with a finger reach the model, and
the page shows what the API answers for the image it displays."""

import itertools
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from mnistlab import datasets
from mnistlab.web import server as sv

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Strokes as fractions of the canvas, drawn in order, one pointer-down..up each.
SEVEN = [[(0.25, 0.2), (0.5, 0.2), (0.74, 0.2)], [(0.74, 0.2), (0.6, 0.5), (0.45, 0.85)]]
ONE = [[(0.54, 0.86), (0.55, 0.5), (0.56, 0.16)], [(0.56, 0.16), (0.45, 0.3)]]  # upwards


def trained_run(tmp_path_factory) -> Path:
    """The same small run as test_serve's (shared through the session's temp folder)."""
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import fit

    path = tmp_path_factory.getbasetemp() / "serve-run"
    if not (path / "model.safetensors").exists():
        fit(Recipe(epochs=2), datasets.load("mnist-sample"), out=path, quiet=True)
    return path


def require_chromium(path: Path = CHROMIUM) -> None:
    """Skip when the browser is missing, unless MNISTLAB_REQUIRE_SERVICES=1 (CI): then fail."""
    if not path.exists():
        message = f"{path} is missing (Debian package chromium)"
        if os.environ.get("MNISTLAB_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and MNISTLAB_REQUIRE_SERVICES=1")
        pytest.skip(message)


def test_missing_browser_skips_or_fails_as_the_environment_says(monkeypatch, tmp_path):
    monkeypatch.delenv("MNISTLAB_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="is missing"):
        require_chromium(tmp_path / "chromium")
    monkeypatch.setenv("MNISTLAB_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="MNISTLAB_REQUIRE_SERVICES=1"):
        require_chromium(tmp_path / "chromium")


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    with sv.serving(trained_run(tmp_path_factory)) as served:
        yield served.url


def _path(strokes, box, per_segment=8):
    """Pixel points along each stroke (several per segment: a hand moves, it does not jump)."""
    out = []
    for stroke in strokes:
        pts = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        line = [pts[0]]
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            line += [
                (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
                for t in np.linspace(0, 1, per_segment + 1)[1:]
            ]
        out.append(line)
    return out


def _draw_with_mouse(page, strokes):
    for line in _path(strokes, page.locator("#pad").bounding_box()):
        page.mouse.move(*line[0])
        page.mouse.down()
        for x, y in line[1:]:
            page.mouse.move(x, y)
        page.mouse.up()


def _draw_with_finger(page, strokes):
    cdp = page.context.new_cdp_session(page)
    for line in _path(strokes, page.locator("#pad").bounding_box()):
        for i, (x, y) in enumerate(line):
            kind = "touchStart" if i == 0 else "touchMove"
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def _shown(page) -> dict:
    """What the page displays once its last request is answered."""
    page.wait_for_function(
        "document.body.dataset.busy === '0' && "
        "document.getElementById('label').dataset.label !== ''",
        timeout=20000,
    )
    return page.evaluate("""() => {
        const bars = [...document.querySelectorAll('#bars li')].map(li => ({
            name: li.dataset.class, p: Number(li.dataset.p),
            pct: li.querySelector('.pct').textContent, top: li.classList.contains('top')}));
        const seen = document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28);
        const image = [];
        for (let y = 0; y < 28; y++) {
            image.push([]);
            for (let x = 0; x < 28; x++) image[y].push(seen.data[4 * (28 * y + x)]);
        }
        return {label: document.getElementById('label').textContent, bars, image,
                status: document.getElementById('status').textContent,
                verdict: document.querySelector('.verdict').dataset.verdict,
                confidence: document.getElementById('confidence').textContent,
                kind: document.getElementById('kind').textContent,
                model: document.getElementById('model').textContent};
    }""")


def _check_against_api(shown: dict, url: str) -> dict:
    """The shown class is the argmax of the shown bars, and the API gives the same answer for
    the 28x28 the page shows."""
    p = np.array([b["p"] for b in shown["bars"]])
    assert shown["label"] == shown["bars"][int(np.argmax(p))]["name"]
    assert [b["top"] for b in shown["bars"]].count(True) == 1
    assert all(b["pct"] == f"{100 * b['p']:.1f}%" for b in shown["bars"])
    assert abs(p.sum() - 1) < 1e-5
    image = np.array(shown["image"])
    assert image.shape == (28, 28) and image.max() == 255 and image[0].max() == 0
    answer = httpx.post(f"{url}/predict", json={"image": shown["image"]}, timeout=30).json()
    assert answer["label"] == shown["label"]
    np.testing.assert_allclose(
        [answer["probabilities"][b["name"]] for b in shown["bars"]], p, rtol=1e-9
    )
    return answer


def test_draw_a_seven_with_the_mouse(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    outside = []  # every asset must come from the server itself (no CDN)
    page.route(
        "**/*",
        lambda route: (
            outside.append(route.request.url) if not route.request.url.startswith(server) else None,
            route.continue_(),
        ),
    )
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto(server)
    page.wait_for_function("document.querySelectorAll('#bars li').length === 10")
    assert page.locator("#label").text_content() == "\u2013"
    _draw_with_mouse(page, SEVEN)
    shown = _shown(page)
    answer = _check_against_api(shown, server)
    assert answer["label"] == "7", shown["bars"]
    # an uncalibrated run: the page says its probabilities are the raw softmax
    assert shown["kind"].startswith("raw softmax") and "not calibrated" in shown["model"]
    page.screenshot(path=tmp_path / "desktop.png")
    requests = int(page.evaluate("document.body.dataset.answers"))
    assert requests >= 3  # bars updated while drawing, not only at the end

    page.click("#clear")
    assert page.locator("#label").text_content() == "\u2013"
    assert page.evaluate(
        "[...document.querySelectorAll('#bars li')].every(li => li.dataset.p === '0')"
    )
    assert page.evaluate(
        "document.getElementById('seen').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data.every((v, i) => i % 4 === 3 || v === 0)"
    )
    assert errors == [] and outside == []
    page.close()


def test_draw_a_one_with_a_finger_on_a_phone(browser, server, tmp_path):
    context = browser.new_context(
        viewport={"width": 390, "height": 700},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page = context.new_page()
    page.goto(server)
    page.wait_for_function("document.querySelectorAll('#bars li').length === 10")
    box = page.locator("#pad").bounding_box()
    assert (
        box["y"] + box["height"] < 700 and box["x"] >= 0 and box["x"] + box["width"] <= 390
    )  # fits the phone's width
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    page.add_style_tag(content="body { padding-bottom: 100vh; }")  # room for the page to scroll
    _draw_with_finger(page, ONE)  # a finger moving upwards would scroll a normal page
    shown = _shown(page)
    assert page.evaluate("window.scrollY") == 0  # ...but the canvas keeps the gesture
    answer = _check_against_api(shown, server)
    assert answer["label"] == "1", shown["bars"]
    assert page.locator("#label").is_visible() and page.locator("#bars").is_visible()
    page.screenshot(path=tmp_path / "phone.png")  # what a phone shows while drawing
    context.close()


def test_docs_page_lists_the_endpoints_offline(browser, server):
    page = browser.new_page()
    outside = []
    page.route(
        "**/*",
        lambda route: (
            outside.append(route.request.url) if not route.request.url.startswith(server) else None,
            route.continue_(),
        ),
    )
    page.goto(f"{server}/docs")
    page.wait_for_function("document.querySelectorAll('.op').length === 3")
    assert "/predict" in page.inner_text("#ops") and outside == []
    page.close()


# ---- how sure: a calibrated run --------------------------------------------------------
# Back and forth across the whole canvas: the scribble of someone testing the page.
SCRIBBLE = [[(0.15 + 0.7 * (i % 2), 0.2 + 0.6 * i / 9) for i in range(10)]]


@pytest.fixture(scope="module")
def calibrated_server(browser, tmp_path_factory):
    from runs import calibrated_run

    with sv.serving(calibrated_run(tmp_path_factory)) as served:
        yield served.url


def _draw_and_read(browser, url, strokes, path):
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('#bars li').length === 10")
    _draw_with_mouse(page, strokes)
    shown = _shown(page)
    page.screenshot(path=path)
    page.close()
    return shown


def test_drawn_digit_shows_its_calibrated_probability(browser, calibrated_server, tmp_path):
    shown = _draw_and_read(browser, calibrated_server, SEVEN, tmp_path / "seven.png")
    answer = _check_against_api(shown, calibrated_server)
    assert answer["probabilities_are"] == "calibrated" and shown["kind"] == "calibrated probability"
    assert shown["verdict"] == answer["verdict"] != "not a digit I know"
    pct = f"{100 * answer['probability']:.1f} %"
    assert shown["confidence"] == (
        f"{pct} sure" if answer["verdict"] == "sure" else f"not sure ({pct})"
    )
    assert "calibrated probabilities (T = " in shown["model"] and "95 % CI" in shown["model"]


def test_a_scribble_is_not_a_digit_it_knows(browser, calibrated_server, tmp_path):
    shown = _draw_and_read(browser, calibrated_server, SCRIBBLE, tmp_path / "scribble.png")
    answer = _check_against_api(shown, calibrated_server)
    assert answer["verdict"] == shown["verdict"] == "not a digit I know"
    assert shown["confidence"].startswith("not a digit I know (closest: ")
    assert "sure" not in shown["confidence"]  # no "99.9 % sure" for a scribble
