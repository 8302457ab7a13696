"""The compare page: accuracy +- std per variant, real or "not shown" with the Holm p (one verdict
function with the leaderboard and the trained-models comparison), training seconds without a
worker's warm-up, the validation-only rule, and working relative links to each run's report."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

# tests/ is on sys.path: pytest's rootdir-based import of test modules
from pagecheck import Page, check_self_contained

from mnistlab import datasets
from mnistlab.errors import RunError
from mnistlab.pages.compare_page import read_leaderboard, render_compare, write_compare
from mnistlab.pages.run_page import write as write_run_report
from mnistlab.recipe import Recipe
from mnistlab.training.fit import fit

SEEDS = [0, 1]


def _variant(name, recipe, val, test, rank, diff=None, p=None, holm=None, significant=None):
    runs = [
        {
            "seed": s,
            "path": f"runs/{name}-s{s}",
            "val_accuracy": val[i],
            "test_accuracy": test[i],
            "seconds": 3.0 + i,
        }
        for i, s in enumerate(SEEDS)
    ]

    def ms(v):
        mean = sum(v) / len(v)
        return {"mean": mean, "std": (sum((x - mean) ** 2 for x in v) / (len(v) - 1)) ** 0.5}

    return {
        "name": name,
        "recipe": recipe,
        "params": 109386,
        "runs": runs,
        "val_accuracy": ms(val),
        "test_accuracy": ms(test),
        "seconds": ms([3.0, 4.0]),
        "diff_test": diff,
        "p_value": p,
        "p_holm": holm,
        "significant": significant,
        "rank": rank,
    }


def _board():
    base = {"name": "baseline", "optimizer": {"optimizer": "sgd", "learning_rate": 0.01}}
    return {
        "baseline": "baseline",
        "seeds": SEEDS,
        "selection": "validation",
        "variants": [
            _variant("baseline", base, [0.951, 0.953], [0.948, 0.950], 3),
            _variant(
                "adam",
                {"name": "adam", "optimizer": {"optimizer": "adam", "learning_rate": 0.001}},
                [0.972, 0.974],
                [0.970, 0.969],
                1,
                diff=0.0205,
                p=0.004,
                holm=0.008,
                significant=True,
            ),
            _variant(
                "dropout",
                {**base, "name": "dropout", "model": {"dropout": 0.2}},
                [0.955, 0.957],
                [0.949, 0.952],
                2,
                diff=0.0015,
                p=0.31,
                holm=0.31,
                significant=False,
            ),
        ],
    }


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    ds = datasets.load("mnist-sample")
    small = dataclasses.replace(ds, x_train=ds.x_train[:800], y_train=ds.y_train[:800])
    out = tmp_path_factory.mktemp("cmp") / "tiny"
    fit(Recipe(name="tiny", epochs=1, hidden=[8]), small, out=out, quiet=True)
    write_run_report(out)
    return out


def _compare_dir(tmp_path: Path, board: dict, tiny_run: Path | None = None, with_report=()) -> Path:
    root = tmp_path / "cmp"
    root.mkdir()
    (root / "leaderboard.json").write_text(json.dumps(board))
    for v in board["variants"]:
        for r in v.get("runs", []):
            folder = root / r["path"]
            if tiny_run is not None:
                os.makedirs(folder.parent, exist_ok=True)
                os.symlink(tiny_run, folder)  # a real run folder, shared
            elif r["path"] in with_report:
                folder.mkdir(parents=True)
                (folder / "report.html").write_text("<!DOCTYPE html><title>run</title>")
    return root


def test_compare_page_sections_marks_and_links(tmp_path):
    board = _board()
    root = _compare_dir(tmp_path, board, with_report=("runs/adam-s0", "runs/adam-s1"))
    path = write_compare(root)
    assert path == root / "report.html"
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert {"accuracy", "leaderboard", "significance", "runs"} <= set(page.ids)
    assert page.figures == {"accuracy": 1}
    check_self_contained(page)
    assert 'name="viewport"' in text and "@media print" in text

    rule = page.text("accuracy")
    assert "ranked by validation accuracy only" in rule and "never used to choose" in rule
    table = page.text("leaderboard")
    # rank order, mean +- std, the test difference and both p-values
    assert table.index(" 1 adam ") < table.index(" 2 dropout ") < table.index(" 3 baseline ")
    assert (
        "97.30% \u00b1 0.14%" in table
        and "+2.05%" in table
        and "0.008" in table
        and "0.31" in table
    )
    sig = page.text("significance")
    assert "real: better adam : a real difference: better (Holm-corrected p = 0.008)" in sig
    assert "not shown dropout : not shown by the paired test (Holm-corrected p = 0.31)" in sig
    assert "noise" not in text.lower()  # a test that shows nothing does not prove equality
    assert "not shown (p = 0.31)" in table  # the leaderboard says it with its p-value too
    assert "p (Holm) trainable parameters training s 1 adam" in table  # the column's header
    assert "3.5 \u00b1 0.7 " in table and "start-up" in table
    assert "optimizer=adam, learning_rate=0.001" in sig and "dropout=0.2" in sig
    assert "Holm" in sig and "paired" in sig

    # links: relative, to the existing reports only; the others say how to make theirs
    assert sorted(page.links[-2:]) == ["runs/adam-s0/report.html", "runs/adam-s1/report.html"]
    assert all((root / href).is_file() for href in page.links if not href.startswith("#"))
    assert "no report yet: mnistlab report runs/baseline-s0" in page.text("runs")


def test_run_reports_are_written_and_links_follow_the_page(tmp_path, tiny_run):
    board = _board()
    board["variants"] = board["variants"][:1]
    root = _compare_dir(tmp_path, board, tiny_run)
    (tiny_run / "report.html").unlink()
    out = tmp_path / "elsewhere" / "page.html"
    write_compare(root, out, run_reports=True)
    assert (tiny_run / "report.html").is_file()
    page = Page(out.read_text(encoding="utf-8"))
    hrefs = [h for h in page.links if not h.startswith("#")]
    assert hrefs == ["../cmp/runs/baseline-s0/report.html", "../cmp/runs/baseline-s1/report.html"]
    assert all((out.parent / h).is_file() for h in hrefs)


def test_partial_entries_render_and_bad_boards_are_one_line(tmp_path):
    board = {
        "baseline": "a",
        "variants": [{"name": "a"}, {"name": "b", "rank": 1, "val_accuracy": {"mean": 0.9}}],
    }
    root = _compare_dir(tmp_path, board)
    page = Page(render_compare(root))
    assert "untested" in page.text("significance") and "no runs recorded" in page.text("runs")
    assert page.text("leaderboard").index(" 1 b ") < page.text("leaderboard").index(" \u2014 a ")

    (root / "leaderboard.json").write_text(json.dumps({"variants": []}))
    with pytest.raises(RunError, match=r"leaderboard.json: expected 'variants', a non-empty list"):
        read_leaderboard(root)
    (root / "leaderboard.json").write_text(json.dumps({"variants": [{"rank": 1}]}))
    with pytest.raises(RunError, match=r"variants\[0\] must be an object with a 'name'"):
        write_compare(root)
    (root / "leaderboard.json").unlink()
    with pytest.raises(RunError, match="leaderboard.json: file is missing"):
        write_compare(root)


def test_cli_report_detects_a_compare_folder(tmp_path, monkeypatch, capsys):
    from mnistlab.cli import main

    root = _compare_dir(tmp_path, _board())
    monkeypatch.setattr(sys, "argv", ["mnistlab", "report", str(root)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert (
        exc.value.code == 0 and capsys.readouterr().out.strip() == f"report: {root / 'report.html'}"
    )
    assert "Which differences are real?" in (root / "report.html").read_text(encoding="utf-8")
