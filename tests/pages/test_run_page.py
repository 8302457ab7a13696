"""report: every section and figure on the page, strict HTML, nothing fetched, missing pieces
named in their section while the rest renders; the train command writes it."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from pagecheck import RUN_FIGURES, Page, check_self_contained

from mnistlab import datasets, rundir
from mnistlab.errors import RunError
from mnistlab.pages import run_page as report
from mnistlab.recipe import Recipe
from mnistlab.training.fit import fit


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    ds = datasets.load("mnist-sample")
    small = dataclasses.replace(ds, x_train=ds.x_train[:1500], y_train=ds.y_train[:1500])
    out = tmp_path_factory.mktemp("report") / "tiny"
    fit(Recipe(name="tiny", epochs=2, hidden=[16]), small, out=out, quiet=True)
    return out


@pytest.fixture
def copy_run(run_dir, tmp_path):
    def make(name="run"):
        dest = tmp_path / name
        shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("report.html"))
        return dest

    return make


def test_report_has_every_section_and_figure(run_dir):
    path = report.write(run_dir)
    assert path == run_dir / "report.html"
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert set(report.SECTIONS) <= set(page.ids)
    assert RUN_FIGURES <= set(page.figures), page.figures
    assert page.missing_in == set()
    check_self_contained(page)
    # phone and print: viewport meta and a print stylesheet
    assert 'name="viewport"' in text and "@media print" in text and "@media (max-width" in text

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"{metrics['test']['accuracy']:.2%}" in text  # the headline number
    assert "784 \u2192 16 relu \u2192 10 softmax" in page.text("recipe")
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert name in page.text("dataset")
    sums = json.loads((run_dir / "environment.json").read_text())["dataset"]["checksums"]
    assert all(h in page.text("dataset") for h in sums.values())
    assert "Healthy" in page.text("health")
    assert "labels are nominal" in page.text("r2") and "Brier score" in page.text("r2")
    # the R² shown is the evaluation's, recomputed from the model
    from mnistlab.evaluation.evaluate import evaluate_predictions

    run = rundir.load_run(run_dir)
    ds = datasets.load("mnist-sample")
    r2 = evaluate_predictions(ds.y_test, run.predict_proba(ds.x_test))["r2"][
        "probabilities_vs_onehot"
    ]
    assert f"{r2:.4f}" in page.text("r2")
    assert page.figures["pair"] >= 1 and "\u2192" in page.text("confused-pairs")
    assert "most confident" in page.text("mistakes") and "pred " in page.text("mistakes")
    assert "training" in page.text("environment") and "engine" in page.text("environment")


def test_missing_history_and_damaged_metrics_are_named_and_the_rest_renders(copy_run):
    run = copy_run()
    (run / "history.csv").unlink()
    (run / "metrics.json").write_text("{not json", encoding="utf-8")
    page = Page(report.write(run).read_text(encoding="utf-8"))
    assert page.missing_in == {"learning-curves", "health", "environment"}
    assert "history.csv" in page.text("learning-curves") and "file is missing" in page.text(
        "learning-curves"
    )
    assert "metrics.json" in page.text("health") and "not valid JSON" in page.text("health")
    assert {"confusion", "per-class", "gallery"} <= set(page.figures)
    assert not {"loss", "accuracy", "learning-rate"} & set(page.figures)
    check_self_contained(page)


def test_unusable_model_falls_back_to_the_stored_evaluation_and_says_so(copy_run):
    from mnistlab.evaluation.evaluate import evaluate

    run = copy_run()
    evaluate(run, split="test", out=run / "figs")  # stores "evaluation"."test" in metrics.json
    data = bytearray((run / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (run / "model.safetensors").write_bytes(bytes(data))
    page = Page(report.write(run).read_text(encoding="utf-8"))
    # numbers from metrics.json: figures present, with a line naming the damaged file
    assert {"confusion", "per-class", "loss"} <= set(page.figures)
    assert "model.safetensors" in page.text("confusion") and "metrics.json" in page.text(
        "confusion"
    )
    # images need the model: the gallery says so, the pairs are listed without examples
    assert page.missing_in == {"mistakes"} and "gallery" not in page.figures
    assert "examples need the model" in page.text("confused-pairs")


def test_diverged_model_and_missing_everything_but_the_recipe(copy_run):
    run = copy_run("diverged")
    model = rundir.read_model(run / "model.safetensors")
    weights = {k: np.full_like(v, np.nan) for k, v in model["weights"].items()}
    rundir.write_model(
        run / "model.safetensors",
        weights,
        model["mean"],
        model["std"],
        model["class_names"],
        model["recipe"],
        model["dataset"],
    )
    page = Page(report.write(run).read_text(encoding="utf-8"))
    assert "NaN" in page.text("confusion") and "diverged" in page.text("confusion")
    from mnistlab.pages.run_sections import _num

    assert (
        _num(8131101244742864.0) == "8.131e+15"
        and _num(0.25) == "0.2500"
        and _num(None) == "\u2014"
    )
    # the reason is given once; later sections point back to it
    assert "NaN" not in page.text("per-class") and "see the confusion matrix section" in page.text(
        "r2"
    )
    assert {"confusion", "per-class", "confused-pairs", "mistakes", "r2"} <= page.missing_in
    assert "labels are nominal" in page.text("r2")  # the discussion stands without numbers

    for name in ("metrics.json", "environment.json", "history.csv", "model.safetensors"):
        (run / name).unlink()
    page = Page(report.write(run).read_text(encoding="utf-8"))
    assert page.missing_in == set(report.SECTIONS) - {"recipe"}
    assert "16" in page.text("recipe")


def test_text_from_the_run_folder_is_escaped(copy_run):
    run = copy_run()
    env = json.loads((run / "environment.json").read_text())
    env["dataset"]["note"] = '<script>alert("x")</script> & <b>'
    (run / "environment.json").write_text(json.dumps(env))
    text = report.write(run).read_text(encoding="utf-8")
    page = Page(text)
    assert "script" not in page.tags and "<script>" not in text
    assert '<script>alert("x")</script> & <b>' in page.text("dataset")


def test_not_a_run_folder_is_one_line(tmp_path):
    with pytest.raises(RunError, match="no such run folder"):
        report.write(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="expected a run folder"):
        report.render(tmp_path / "file")


def _cli(monkeypatch, capsys, *args):
    from mnistlab.cli import main

    monkeypatch.setattr(sys, "argv", ["mnistlab", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_report_and_train_writes_it_unless_no_report(monkeypatch, capsys, tmp_path, copy_run):
    run = copy_run()
    code, out, err = _cli(
        monkeypatch, capsys, "report", str(run), "--out", str(tmp_path / "r.html")
    )
    assert code == 0 and out.strip() == f"report: {tmp_path / 'r.html'}", err
    Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert not (run / "report.html").exists()
    code, _, err = _cli(monkeypatch, capsys, "report", str(tmp_path / "nope"))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1

    flags = [
        "--dataset",
        "mnist-sample",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--validation-split",
        "0.9",
    ]
    code, out, err = _cli(monkeypatch, capsys, "train", *flags, "--out", str(tmp_path / "a"))
    assert code == 0, err
    assert f"report: {tmp_path / 'a' / 'report.html'}" in out
    page = Page((tmp_path / "a" / "report.html").read_text(encoding="utf-8"))
    assert RUN_FIGURES <= set(page.figures)
    code, out, err = _cli(
        monkeypatch, capsys, "train", *flags, "-q", "--no-report", "--out", str(tmp_path / "b")
    )
    assert code == 0 and out == f"{tmp_path / 'b'}\n", err  # --quiet: the run folder alone
    assert (tmp_path / "b" / "model.safetensors").is_file() and not (
        tmp_path / "b" / "report.html"
    ).exists()


CHROMIUM = Path("/usr/bin/chromium")


def _browser_or_skip():
    """Playwright driving Debian's Chromium; skipped when absent unless services are required."""
    import os

    required = os.environ.get("MNISTLAB_REQUIRE_SERVICES") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            raise
        pytest.skip("playwright is not installed")
    if not CHROMIUM.is_file():
        if required:
            pytest.fail(f"{CHROMIUM} is missing and MNISTLAB_REQUIRE_SERVICES=1")
        pytest.skip(f"{CHROMIUM} is missing")
    return sync_playwright


@pytest.mark.slow  # a headless browser start on a busy machine
def test_page_renders_on_a_phone_and_in_print(run_dir):
    sync_playwright = _browser_or_skip()
    path = run_dir / "report.html"
    if not path.exists():
        report.write(run_dir)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(path.as_uri())
            # every embedded image decoded, and nothing wider than the phone: wide tables scroll
            # inside their own box, figures shrink
            assert page.evaluate(
                "[...document.images].every(i => i.complete && i.naturalWidth > 0)"
            )
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            widest = page.evaluate(
                "Math.max(...[...document.images].map(i => i.getBoundingClientRect().right))"
            )
            assert widest <= 390
            assert page.is_visible("nav.toc")
            page.emulate_media(media="print")
            assert not page.is_visible("nav.toc")
            assert (
                page.evaluate("getComputedStyle(document.querySelector('figure')).breakInside")
                == "avoid"
            )
        finally:
            browser.close()
