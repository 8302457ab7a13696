"""`mnistlab report FOLDER` writes the page that fits each kind of folder mnistlab makes (run,
compare of variants or of trained models, search, explore), tells kinds apart as `mnistlab runs`
does, and refuses anything else in one line with exit 2."""

from __future__ import annotations

import shutil
import sys

import pytest
from pagecheck import Page, check_self_contained
from pagefolders import (
    make_compare,
    make_explore,
    make_run,
    make_search,
    make_trained_comparison,
)

import mnistlab
from mnistlab import pages
from mnistlab.errors import RunError
from mnistlab.recipe import Recipe
from mnistlab.rundir import listing


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    run = make_run(root / "run", Recipe(name="tiny", epochs=1, hidden=[8]))
    twin = shutil.copytree(run, root / "twin")  # the same model: nothing to tell apart
    return {
        "run": run,
        "compare": make_compare(root / "compare"),
        "trained": make_trained_comparison(root / "trained", run, twin),
        "search": make_search(root / "search"),
        "explore": make_explore(root / "explore"),
    }


def _cli(monkeypatch, capsys, *args):
    from mnistlab.cli import main

    monkeypatch.setattr(sys, "argv", ["mnistlab", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


# each folder: (its kind, the first section of its page)
PAGE = {
    "run": ("run", "recipe"),
    "compare": ("compare", "accuracy"),
    "trained": ("compare", "models"),
    "search": ("search", "best"),
    "explore": ("explore", "classes"),
}


@pytest.mark.parametrize("name", list(PAGE))
def test_report_writes_the_page_of_each_kind(name, kinds, monkeypatch, capsys, tmp_path):
    folder, (kind, first) = kinds[name], PAGE[name]
    assert pages.kind(folder) == listing.kind_of(folder) == kind  # as `mnistlab runs` says
    out = tmp_path / f"{name}.html"
    code, stdout, err = _cli(monkeypatch, capsys, "report", folder, "--out", out)
    assert code == 0 and stdout == f"report: {out}\n", err
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert first in page.ids and f"<title>mnistlab {kind} " in text
    assert page.missing_in <= ({"runs"} if name == "compare" else set()), page.missing_in
    if name in ("run", "search", "explore"):  # the compare pages draw tables only here
        check_self_contained(page)
    assert mnistlab.report(folder) == folder / "report.html"  # Python, default place


def test_a_comparison_of_trained_models_has_its_page_and_its_row(kinds):
    page = Page(pages.write(kinds["trained"]).read_text(encoding="utf-8"))
    models = page.text("models")
    assert "baseline" in models and "not shown (p = 1)" in models  # a model against itself
    assert "run/report.html" in " ".join(page.links)  # each run's own page, linked
    entry = next(e for e in listing.listing(kinds["run"].parent) if e.name == "trained")
    assert entry.kind == "compare" and entry.health == "ok" and "2 trained models" in entry.changes


def test_every_kind_runs_lists_has_a_page():
    assert set(pages.PAGES) == set(listing.KINDS)


def _refused(monkeypatch, capsys, path) -> str:
    code, out, err = _cli(monkeypatch, capsys, "report", path)
    assert code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert not (path / "report.html").exists() if path.is_dir() else True
    return err


def test_other_paths_are_refused_in_one_line(tmp_path, monkeypatch, capsys, kinds):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not made by mnistlab")
    err = _refused(monkeypatch, capsys, plain)
    assert "not a folder mnistlab wrote" in err and "recipe.toml" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a folder mnistlab wrote" in _refused(monkeypatch, capsys, empty)
    assert "is a file" in _refused(monkeypatch, capsys, plain / "notes.txt")
    err = _refused(monkeypatch, capsys, tmp_path / "emtpy")
    assert "no such folder" in err and f"did you mean {tmp_path / 'empty'}" in err
    # the folder that holds the runs: point at one of them
    err = _refused(monkeypatch, capsys, kinds["run"].parent)
    assert "holds 6 mnistlab folders" in err and "mnistlab runs" in err
    with pytest.raises(RunError, match="not a folder mnistlab wrote"):
        mnistlab.report(plain)


def test_unfinished_compare_and_search_say_how_to_finish(tmp_path, monkeypatch, capsys):
    compare = tmp_path / "compare"
    (compare / "runs").mkdir(parents=True)  # trained runs, no leaderboard yet
    assert "run the same `mnistlab compare`" in _refused(monkeypatch, capsys, compare)
    search = tmp_path / "search"
    (search / "trials").mkdir(parents=True)
    (search / "study.db").write_bytes(b"")
    err = _refused(monkeypatch, capsys, search)
    assert "no trials.csv yet" in err and "run the same `mnistlab search`" in err


@pytest.mark.slow  # a headless browser start on a busy machine
def test_every_page_fits_a_phone_and_prints_its_folded_parts(kinds, tmp_path):
    from test_run_page import CHROMIUM, _browser_or_skip

    sync_playwright = _browser_or_skip()
    paths = {kind: pages.write(folder, tmp_path / f"{kind}.html") for kind, folder in kinds.items()}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            view = browser.new_page(viewport={"width": 390, "height": 844})
            for kind, path in paths.items():
                view.emulate_media(media="screen")
                view.goto(path.as_uri())
                assert view.evaluate("document.documentElement.scrollWidth") <= 390, kind
                assert view.evaluate(
                    "[...document.images].every(i => i.complete && i.naturalWidth > 0)"
                ), kind
                assert view.is_visible("nav.toc") or kind == "trained", kind  # one section
                if kind == "run":  # the folded fields: closed on screen, on paper when printed
                    assert not view.is_visible("details .grid")
                    view.emulate_media(media="print")
                    assert view.is_visible("details .grid") and not view.is_visible("nav.toc")
        finally:
            browser.close()
