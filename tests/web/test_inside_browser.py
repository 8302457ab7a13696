"""The draw page's look inside, in a real browser (Debian's Chromium, headless, via Playwright)
against a real `mnistlab serve` process: a digit drawn with the mouse brings the preparation
steps, every hidden layer's activations, the attribution and the pushing units; Clear hides
them again."""

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from mnistlab import datasets
from mnistlab.web import server as sv

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SEVEN = [[(0.25, 0.2), (0.5, 0.2), (0.74, 0.2)], [(0.74, 0.2), (0.6, 0.5), (0.45, 0.85)]]
SHOTS = os.environ.get("MNISTLAB_SCREENSHOTS")  # a folder: keep the screenshots there


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("MNISTLAB_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{CHROMIUM} is missing and MNISTLAB_REQUIRE_SERVICES=1")
        pytest.skip(f"{CHROMIUM} is missing (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import fit

    path = tmp_path_factory.getbasetemp() / "serve-run"  # the serve tests' run, if made
    if not (path / "model.safetensors").exists():
        fit(Recipe(epochs=2), datasets.load("mnist-sample"), out=path, quiet=True)
    with sv.serving(path) as served:
        yield served.url


def _draw(page, strokes, per_segment=8):
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        pts = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*pts[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in itertools.pairwise(pts):
            for t in np.linspace(0, 1, per_segment + 1)[1:]:
                page.mouse.move(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
        page.mouse.up()


def _inside(page) -> dict:
    """What the panel shows once the page and the panel have both answered the last drawing."""
    page.wait_for_function(
        "document.body.dataset.busy === '0' && document.body.dataset.insideBusy === '0' && "
        "document.getElementById('inside').dataset.label === "
        "document.getElementById('label').dataset.label",
        timeout=30000,
    )
    return page.evaluate("""() => {
        const panel = document.getElementById('inside');
        const loaded = (img) => img.complete && img.naturalWidth > 0;
        return {
            hidden: panel.hidden, label: panel.dataset.label,
            steps: [...panel.querySelectorAll('.steps li')].map(li => ({
                name: li.dataset.step, loaded: loaded(li.querySelector('img'))})),
            layers: [...panel.querySelectorAll('.layer')].map(d => ({
                name: d.dataset.layer, title: d.querySelector('.layer-title').textContent,
                cells: d.querySelector('canvas') ? d.querySelector('canvas').width : 0})),
            ig: loaded(panel.querySelector('.ig img')),
            caption: panel.querySelector('.ig figcaption').textContent,
            units: [...panel.querySelectorAll('.units li')].map(li => Number(li.dataset.unit)),
        };
    }""")


def test_drawing_a_seven_shows_the_inside_and_clear_hides_it(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors, outside = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.route(
        "**/*",
        lambda route: (
            outside.append(route.request.url) if not route.request.url.startswith(server) else None,
            route.continue_(),
        ),
    )
    page.goto(server)
    page.wait_for_function("document.querySelectorAll('#bars li').length === 10")
    assert page.locator("#inside").is_hidden()
    _draw(page, SEVEN)
    shown = _inside(page)
    assert not shown["hidden"] and shown["label"] == page.locator("#label").text_content()
    names = ["input", "ink", "cropped", "box", "centred", "seen"]
    assert [s["name"] for s in shown["steps"]] == names and all(s["loaded"] for s in shown["steps"])
    # the notebook recipe's three hidden layers, one cell per unit
    assert [layer["cells"] for layer in shown["layers"]] == [128, 128, 128]
    assert all("active" in layer["title"] for layer in shown["layers"])
    assert shown["ig"] and "add up to its change" in shown["caption"]
    assert 1 <= len(shown["units"]) <= 8
    page.screenshot(path=tmp_path / "inside.png", full_page=True)
    if SHOTS:
        page.screenshot(path=Path(SHOTS) / "inside-desktop.png", full_page=True)

    page.click("#clear")
    page.wait_for_function("document.getElementById('inside').hidden === true")
    assert errors == [] and outside == []
    page.close()


def test_the_panel_fits_a_phone(browser, server, tmp_path):
    context = browser.new_context(
        viewport={"width": 390, "height": 800},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    page = context.new_page()
    page.goto(server)
    page.wait_for_function("document.querySelectorAll('#bars li').length === 10")
    _draw(page, SEVEN)
    _inside(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    if SHOTS:
        page.screenshot(path=Path(SHOTS) / "inside-phone.png", full_page=True)
    context.close()
