"""The explore page: the lesson for training first, then every figure `mnistlab explore` wrote
with its numbers from summary.json; a missing or damaged piece is named in its section."""

from __future__ import annotations

import html
import json
import shutil

import pytest
from pagecheck import Page, check_self_contained
from pagefolders import make_explore

from mnistlab.errors import RunError
from mnistlab.pages import explore_page

FIGURES = {"class-balance", "pixel-histogram", "pixel-mean-std", "class-means", "samples"}


@pytest.fixture(scope="module")
def explore_dir(tmp_path_factory):
    return make_explore(tmp_path_factory.mktemp("explore") / "e")


@pytest.fixture
def copy(explore_dir, tmp_path):
    dest = tmp_path / "e"
    shutil.copytree(explore_dir, dest, ignore=shutil.ignore_patterns("report.html"))
    return dest


def test_explore_page_shows_every_figure_and_its_numbers(copy):
    text = explore_page.write(copy).read_text(encoding="utf-8")
    page = Page(text)
    check_self_contained(page)
    assert set(explore_page.SECTIONS) <= set(page.ids) and page.missing_in == set()
    assert set(page.figures) == FIGURES and all(n == 1 for n in page.figures.values())
    summary = json.loads((copy / "summary.json").read_text())
    assert html.escape(summary["advice"]) in text  # the lesson, in the header
    train, test = summary["classes"]["train"], summary["classes"]["test"]
    for i, name in enumerate(summary["class_names"]):
        row = f"{name} {train['counts'][i]:,} {train['shares'][i]:.2%} {test['counts'][i]:,}"
        assert row in page.text("classes")
    assert f"train {train['imbalance_ratio']:.3f}" in page.text("classes")
    pixels = page.text("pixels")
    assert f"mean {summary['pixels']['train']['mean']:.2f}" in pixels
    zeros = summary["per_pixel"]["always_zero_pixels"]
    assert f"{zeros:,} of 784 pixel positions are 0" in page.text("means")


def test_missing_figure_and_damaged_numbers_are_named(copy):
    (copy / "samples.png").unlink()
    (copy / "class_means.png").write_bytes(b"not a png")
    summary = json.loads((copy / "summary.json").read_text())
    del summary["pixels"]["test"]
    summary["figures"]["class_balance"] = "../../elsewhere.png"  # only files of the folder
    (copy / "summary.json").write_text(json.dumps(summary))
    page = Page(explore_page.render(copy))
    assert page.missing_in == {"samples", "means", "pixels"}
    assert "samples.png" in page.text("samples") and "not a PNG" in page.text("means")
    assert "pixel statistics" in page.text("pixels") and "pixel-histogram" in page.figures
    assert "class-balance" in page.figures  # drawn from class_balance.png, the folder's own

    (copy / "summary.json").write_text("{not json")
    with pytest.raises(RunError, match="summary.json: not valid JSON"):
        explore_page.render(copy)
