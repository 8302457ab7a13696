"""The search page: the best trial and its recipe, validation accuracy per trial over the search
and per epoch, the parameter importance the search stored (importance.json, Optuna's fANOVA),
and the trials table; it reads the folder's files only, and a missing piece is named in its
section."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from pagecheck import Page, check_self_contained
from pagefolders import make_search

from mnistlab.errors import RunError
from mnistlab.pages import search_page


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    return make_search(tmp_path_factory.mktemp("search") / "s", trials=4)


@pytest.fixture
def copy(search_dir, tmp_path):
    dest = tmp_path / "s"
    shutil.copytree(search_dir, dest, ignore=shutil.ignore_patterns("report.html"))
    return dest


def _rows(folder):
    with open(folder / "trials.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_search_stores_the_importance_of_each_searched_field(search_dir):
    doc = json.loads((search_dir / "importance.json").read_text())
    complete = [r for r in _rows(search_dir) if r["state"] == "COMPLETE"]
    assert doc["study"] == "tiny" and doc["complete_trials"] == len(complete) >= 2
    assert doc["method"].startswith("fANOVA") and doc["seed"] == 0 and doc["problem"] is None
    shares = doc["importances"]
    assert set(shares) == {"learning_rate", "optimizer"}
    assert sum(shares.values()) == pytest.approx(1.0) and all(v >= 0 for v in shares.values())


def test_importance_needs_two_complete_trials_and_some_variance(tmp_path):
    import optuna

    from mnistlab.experiments.search import Param, Space, write_importance
    from mnistlab.recipe import Recipe

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = Space("s", Recipe(), {"dropout": Param("dropout", "float", 0.0, 0.5)})
    study = optuna.create_study(direction="maximize", study_name="s")
    study.optimize(lambda t: 0.9 + 0 * t.suggest_float("dropout", 0.0, 0.5), n_trials=1)
    doc = json.loads(write_importance(study, space, tmp_path / "i.json").read_text())
    assert doc["importances"] is None and "needs at least 2" in doc["problem"]
    study.optimize(lambda t: 0.9 + 0 * t.suggest_float("dropout", 0.0, 0.5), n_trials=2)
    doc = json.loads(write_importance(study, space, tmp_path / "i.json").read_text())
    assert doc["importances"] is None and "same validation accuracy" in doc["problem"]


def test_search_page_shows_best_history_importance_and_trials(copy):
    path = search_page.write(copy, run_reports=True)
    assert path == copy / "report.html"
    page = Page(path.read_text(encoding="utf-8"))
    check_self_contained(page)
    assert set(search_page.SECTIONS) <= set(page.ids) and page.missing_in == set()
    assert page.figures == {"search-history": 1, "trial-curves": 1, "importance": 1}
    rows = _rows(copy)
    best = max(
        (r for r in rows if r["state"] == "COMPLETE"),
        key=lambda r: (float(r["val_accuracy"]), -int(r["number"])),
    )
    text = page.text("best")
    assert f"trial {best['number']} validation accuracy {float(best['val_accuracy']):.2%}" in text
    assert "mnistlab train --recipe" in text and 'name = "tiny-best"' in text
    # the best trial's run page is written and linked, relative to the search page
    link = f"trials/trial-{int(best['number']):04d}/report.html"
    assert link in page.links and (copy / link).is_file()
    importance = json.loads((copy / "importance.json").read_text())["importances"]
    for field, share in importance.items():
        assert f"{field} {share:.3f}" in page.text("importance")
    table = page.text("trials")
    assert all(f"trials/trial-{int(r['number']):04d}" in table for r in rows)
    assert "validation accuracy only" in page.text("history")


def test_missing_pieces_are_named_in_their_section(copy):
    (copy / "importance.json").unlink()
    shutil.rmtree(copy / "trials")
    page = Page(search_page.render(copy))
    assert page.missing_in == {"importance", "history"}
    assert "run the same search command again" in page.text("importance")
    assert "no trial's run folder has a history" in page.text("history")
    assert page.figures == {"search-history": 1}  # drawn from trials.csv alone
    assert "no run folder" in page.text("best")

    doc = {"study": "tiny", "importances": None, "problem": "1 complete trial(s); needs 2"}
    (copy / "importance.json").write_text(json.dumps(doc))
    assert "1 complete trial(s); needs 2" in Page(search_page.render(copy)).text("importance")


def test_a_damaged_trials_file_is_one_line(copy):
    (copy / "trials.csv").write_text("number,state\n0,COMPLETE\n")
    with pytest.raises(RunError, match=r"trials.csv: expected the columns .*; missing val_acc"):
        search_page.render(copy)
    rows = "number,state,val_accuracy,epochs,seconds,run\nx,COMPLETE,0.5,1,1,r\n"
    (copy / "trials.csv").write_text(rows)
    with pytest.raises(RunError, match=r"trials.csv: line 2: invalid literal"):
        search_page.render(copy)
