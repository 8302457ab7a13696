"""The report's look inside: the first-layer templates, the attributions of the most-confused
digits, the embedding, and the robustness card (or how to get one), for an MLP and a CNN run;
a damaged card is named in its section while the rest renders."""

from __future__ import annotations

import json
import shutil

import pytest
from insiderun import small_run
from pagecheck import Page, check_self_contained

from mnistlab.evaluation import robustness as rb
from mnistlab.pages import inside_sections, run_page, run_pieces


@pytest.fixture
def mlp_dir(tmp_path_factory, tmp_path):
    dest = tmp_path / "mlp"
    shutil.copytree(small_run(tmp_path_factory, "mlp"), dest)
    return dest


def test_an_mlp_report_looks_inside(mlp_dir):
    page = Page(run_page.write(mlp_dir).read_text(encoding="utf-8"))
    assert set(inside_sections.SECTIONS) <= set(page.ids) and page.missing_in == set()
    assert {"templates", "attribution", "embedding"} <= set(page.figures)
    assert page.figures["attribution"] == 4  # one per most-confused pair
    assert "32 units of the first Dense layer" in page.text("templates")
    assert "exact" in page.text("attribution") and "\u2192" in page.text("attribution")
    assert "2,000 test digits" in page.text("embedding") or "test digits" in page.text("embedding")
    assert "mnistlab evaluate RUN --robustness" in page.text("robustness")
    assert "robustness" not in page.figures
    check_self_contained(page)
    # in the table of contents, in order: what it learned after the mistakes
    keys = list(run_pieces.SECTIONS)
    assert keys.index("mistakes") < keys.index("templates") < keys.index("robustness")


def test_the_attributions_keep_to_their_budget(mlp_dir):
    parts = run_pieces.gather(mlp_dir)
    views = inside_sections._views(parts).value
    model = views["model"]
    found = [a for pair in views["confused"] for two in pair["attributions"] for a in two]
    assert found and all(a.exact for a in found)
    assert sum(a.evaluations for a in found) * model.cost <= inside_sections.ATTRIBUTION_COST
    assert inside_sections._views(parts) is views or inside_sections._views(parts).value is views


def test_the_robustness_card_once_measured(mlp_dir):
    rb.evaluate_robustness(mlp_dir, images=100)
    page = Page(run_page.write(mlp_dir).read_text(encoding="utf-8"))
    assert page.figures["robustness"] == 1 and page.missing_in == set()
    text = page.text("robustness")
    assert "100 test digits" in text and "FGSM at epsilon 0.3" in text
    assert all(c.title in text for c in rb.CORRUPTIONS.values())


def test_a_damaged_card_is_named_and_the_rest_renders(mlp_dir):
    metrics = json.loads((mlp_dir / "metrics.json").read_text())
    metrics["robustness"] = {"n": 5}
    (mlp_dir / "metrics.json").write_text(json.dumps(metrics))
    page = Page(run_page.write(mlp_dir).read_text(encoding="utf-8"))
    assert page.missing_in == {"robustness"} and "cannot be read" in page.text("robustness")
    assert {"templates", "attribution", "embedding"} <= set(page.figures)


def test_a_cnn_report_shows_its_filters(tmp_path_factory):
    page = Page(run_page.render(small_run(tmp_path_factory, "cnn")))
    assert page.missing_in == set()
    assert "4 filters of the first conv layer (3\u00d73)" in page.text("templates")
    assert "trapezoid rule" in page.text("attribution")
    assert "hidden layer 1: 12 relu" in page.text("embedding") or page.figures["embedding"] == 1


def test_the_cost_benchmark_runs(tmp_path_factory):
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "bench" / "report_cost.py"
    run = small_run(tmp_path_factory, "mlp")
    proc = subprocess.run(
        [sys.executable, str(bench), str(run), "--reps", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("machine: ") and "the look inside adds" in proc.stdout
