"""Runs you can tell apart: folders named after what their recipe changes, and ``mnistlab runs``,
a table of every run, compare, search and explore folder, a damaged one included."""

import dataclasses
import json
import os
import sys

import pytest

import mnistlab
from mnistlab import datasets, rundir
from mnistlab.recipe import Recipe, changes, differences, load_preset
from mnistlab.rundir.listing import describe, listing
from mnistlab.training.fit import fit


@pytest.fixture(scope="module")
def small():
    ds = datasets.load("mnist-sample")
    return dataclasses.replace(ds, x_train=ds.x_train[:600], y_train=ds.y_train[:600])


# ---- names ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "recipe,name",
    [
        (Recipe(), "notebook"),
        (Recipe(normalize="none"), "normalize-none"),
        (
            Recipe(optimizer="adam", lr=0.001, dropout=0.2, batch_norm=True),
            "adam-lr0.001-dropout0.2-bn",
        ),
        (Recipe(threads=2, data_dir="/data"), "notebook"),  # where and how fast: not what it learns
        (Recipe(optimizer="adam", momentum=0.0), "adam"),  # adam's own momentum is no change
        (load_preset("fast-mlp"), "fast-mlp"),
        (load_preset("fast-mlp").replace(epochs=5), "fast-mlp-epochs5"),
        (Recipe(name="mine", lr=0.1), "mine"),  # a name of its own wins
        (Recipe(hidden=[256, 128], kind="cnn", nesterov=False), "cnn-hidden256_128-no-nesterov"),
    ],
)
def test_a_run_is_named_after_what_it_changes(recipe, name):
    assert rundir.run_name(recipe) == name


def test_a_long_list_of_changes_is_cut_and_counted():
    r = Recipe(optimizer="adam", lr=0.001, dropout=0.2, batch_norm=True, l2=1e-4, epochs=12,
               batch_size=64, augment_shift=2.0, augment_rotate=10.0, seed=3)  # fmt: skip
    name = rundir.run_name(r)
    assert name.startswith("adam-lr0.001-dropout0.2-bn-l20.0001") and name.endswith("more")
    assert len(name) <= rundir.folder.NAME_WORDS + len("-10more")
    assert rundir.run_name(r) == name  # stable


def test_differences_are_what_changed_from_the_base():
    assert differences(Recipe(epochs=3)) == {"epochs": (5, 3)}
    assert differences(load_preset("notebook")) == {}  # its explicit weight_decay is sgd's own
    assert changes(Recipe(epochs=3), Recipe(epochs=3)) == []


def test_fit_names_the_folder_in_the_runs_folder(small, tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(tmp_path))
    plain = fit(Recipe(epochs=1, hidden=[8]), small, quiet=True)
    raw = fit(Recipe(epochs=1, hidden=[8], normalize="none"), small, quiet=True)
    assert plain.path.name.endswith("-hidden8-epochs1")
    assert raw.path.name.endswith("-normalize-none-hidden8-epochs1")
    assert plain.path.parent == raw.path.parent == tmp_path


# ---- the table --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory, small):
    root = tmp_path_factory.mktemp("runs")
    fit(Recipe(epochs=1, hidden=[8]), small, out=root / "b-plain", quiet=True)
    fit(Recipe(epochs=2, hidden=[8], optimizer="adam", lr=0.001), small, out=root / "a-adam",
        quiet=True)  # fmt: skip
    fit(Recipe(epochs=1, hidden=[8], normalize="none", lr=0.5), small, out=root / "c-raw",
              quiet=True)  # fmt: skip
    killed = fit(Recipe(epochs=2, hidden=[8]), small, out=root / "d-killed", quiet=True)
    (killed.path / rundir.MODEL).unlink()  # as if killed after its last checkpoint
    env = json.loads((killed.path / rundir.ENVIRONMENT).read_text())
    (killed.path / rundir.HISTORY).write_text((killed.path / rundir.HISTORY).read_text()
                                              .rsplit("\n", 2)[0] + "\n")  # fmt: skip
    broken = root / "e-broken"
    broken.mkdir()
    (broken / rundir.RECIPE).write_text("epochs = 'many'\n")
    bad_metrics = root / "f-bad-metrics"
    fit(Recipe(epochs=1, hidden=[8]), small, out=bad_metrics, quiet=True)
    (bad_metrics / rundir.METRICS).write_text('{"test": {"accuracy": "high"}}')
    compare = root / "g-compare"
    compare.mkdir()
    board = {
        "name": "x",
        "seeds": [0, 1],
        "dataset": {"name": "mnist-sample", "train": 600, "test": 2000},
        "variants": [
            {"name": "adam", "rank": 2, "test_accuracy": {"mean": 0.8, "std": 0.0}},
            {"name": "sgd", "rank": 1, "test_accuracy": {"mean": 0.9, "std": 0.0}},
        ],
    }
    (compare / "leaderboard.json").write_text(json.dumps(board))
    search = root / "h-search"
    search.mkdir()
    (search / "trials.csv").write_text(
        "number,state,val_accuracy\n0,COMPLETE,0.91\n1,PRUNED,0.5\n2,COMPLETE,0.93\n"
    )
    explore = root / "i-explore"
    explore.mkdir()
    (explore / "summary.json").write_text('{"dataset": "mnist-sample"}')
    (root / "not-mnistlab").mkdir()
    (root / "loose-file.txt").write_text("x")
    # dates: the runs by their start, the others by their files' time (all after the runs)
    for i, name in enumerate(["b-plain", "a-adam", "c-raw", "d-killed", "f-bad-metrics"]):
        env_file = root / name / rundir.ENVIRONMENT
        env = json.loads(env_file.read_text())
        env_file.write_text(json.dumps({**env, "started": f"2030-01-01T00:00:0{i}+00:00"}))
    for i, name in enumerate(["g-compare", "h-search", "i-explore", "e-broken"]):
        stamp = 4_000_000_000 + i
        for p in [root / name, *(root / name).iterdir()]:
            os.utime(p, (stamp, stamp))
    return root


def test_every_folder_is_one_entry_sorted_by_date(runs_folder):
    root = runs_folder
    entries = {e.name: e for e in listing(root)}
    assert set(entries) == {
        "a-adam", "b-plain", "c-raw", "d-killed", "e-broken", "f-bad-metrics", "g-compare",
        "h-search", "i-explore",
    }  # fmt: skip
    order = [e.name for e in listing(root)]
    assert order.index("b-plain") < order.index("a-adam") < order.index("c-raw")
    assert order[-4:] == ["g-compare", "h-search", "i-explore", "e-broken"]

    adam, plain = entries["a-adam"], entries["b-plain"]
    assert (adam.kind, adam.dataset, adam.epochs, adam.health) == ("run", "mnist-sample", 2, "ok")
    assert adam.changes == "adam lr0.001 hidden8 epochs2" and 0 < adam.test_accuracy <= 1
    assert plain.changes == "hidden8 epochs1"
    assert entries["c-raw"].health in ("diverged", "stuck")
    killed = entries["d-killed"]
    assert killed.health.startswith("incomplete") and (killed.epochs, killed.planned_epochs) == (
        1,
        2,
    )
    assert killed.test_accuracy is None


def test_a_damaged_folder_is_one_line_saying_why(runs_folder):
    root = runs_folder
    entries = {e.name: e for e in listing(root)}
    broken, bad = entries["e-broken"], entries["f-bad-metrics"]
    assert broken.kind == "run" and broken.health.startswith("damaged: ")
    assert "recipe.toml" in broken.health and "'epochs'" in broken.health
    assert bad.health.startswith("damaged: ") and "['test']['accuracy']" in bad.health
    assert "\n" not in broken.health + bad.health


def test_compare_search_and_explore_folders(runs_folder):
    root = runs_folder
    entries = {e.name: e for e in listing(root)}
    cmp, search, ex = entries["g-compare"], entries["h-search"], entries["i-explore"]
    assert (cmp.kind, cmp.dataset, cmp.test_accuracy) == ("compare", "mnist-sample", 0.9)
    assert cmp.changes == "2 variants x 2 seeds; best: sgd"
    assert search.kind == "search" and search.changes == "3 trials; best val 0.9300 (trial 2)"
    assert search.test_accuracy is None  # a search never looks at the test set
    assert (ex.kind, ex.dataset) == ("explore", "mnist-sample")


def test_the_python_verb_and_the_cli_table_and_json(runs_folder, monkeypatch, capsys):
    root = runs_folder
    assert [e.name for e in mnistlab.runs(root)] == [e.name for e in listing(root)]
    from mnistlab.cli import main

    for args in (["runs", str(root), "--json"], ["runs", str(root)]):
        monkeypatch.setenv("COLUMNS", "250")
        monkeypatch.setattr(sys, "argv", ["mnistlab", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        out, err = capsys.readouterr()
        assert exc.value.code == 0 and err == "" and "Traceback" not in out
        if "--json" in args:
            rows = json.loads(out)
            assert [r["name"] for r in rows] == [e.name for e in listing(root)]
            assert {r["kind"] for r in rows} == {"run", "compare", "search", "explore"}
        else:
            for words in ("a-adam", "adam lr0.001", "damaged:", "compare", "search", "explore"):
                assert words in out, words


def test_an_empty_or_missing_runs_folder(tmp_path, monkeypatch, capsys):
    from mnistlab.cli import main

    assert listing(tmp_path) == []
    monkeypatch.setattr(sys, "argv", ["mnistlab", "runs", str(tmp_path / "nope")])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and "no such run folder" in err


def test_describe_names_a_preset_first():
    assert describe(load_preset("fast-mlp")) == "fast-mlp"
    assert describe(load_preset("fast-mlp").replace(epochs=5)) == "fast-mlp epochs5"
    assert describe(Recipe(name="mine")) == "notebook"
