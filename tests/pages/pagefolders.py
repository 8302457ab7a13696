"""Small real folders of every kind ``mnistlab report`` draws, made the way the commands make
them: a run (fit), a search (three trials of a two-field space), an explore (the sample), and a
compare folder holding a leaderboard."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

from mnistlab import datasets
from mnistlab.recipe import Recipe

SPACE = """
name = "tiny"
[base]
hidden = [8]
epochs = 2
batch_size = 64
threads = 1
[space]
lr = { low = 1e-3, high = 0.1, log = true }
optimizer = { choices = ["sgd", "adam"] }
"""


def small_sample(n: int = 800):
    ds = datasets.load("mnist-sample")
    return dataclasses.replace(ds, x_train=ds.x_train[:n], y_train=ds.y_train[:n])


def make_run(out: Path, recipe: Recipe, n: int = 800) -> Path:
    from mnistlab.training.fit import fit

    fit(recipe, small_sample(n), out=out, quiet=True)
    return out


def make_search(out: Path, trials: int = 3) -> Path:
    from mnistlab.experiments import search as srch
    from mnistlab.experiments.compare import slice_dataset

    space = srch.parse_space(tomllib.loads(SPACE), source="space", default_name="tiny")
    tiny = slice_dataset(datasets.load("mnist-sample"), 600, 200)
    srch.search(space, trials, out=out, dataset=tiny)
    return out


def make_explore(out: Path) -> Path:
    from mnistlab import exploration

    exploration.write_files(exploration.explore("mnist-sample"), out)
    return out


def make_compare(out: Path) -> Path:
    """A compare folder as `mnistlab compare` leaves it, without its runs (the page says so)."""
    variant = {
        "name": "notebook",
        "recipe": Recipe().to_dict(),
        "runs": [],
        "val_accuracy": {"mean": 0.95, "std": 0.0},
        "test_accuracy": {"mean": 0.94, "std": 0.0},
        "seconds": {"mean": 3.0, "std": 0.0},
        "rank": 1,
    }
    out.mkdir(parents=True)
    board = {"baseline": "notebook", "seeds": [0], "variants": [variant]}
    (out / "leaderboard.json").write_text(json.dumps(board), encoding="utf-8")
    return out


def make_trained_comparison(out: Path, *models: Path) -> Path:
    """What `mnistlab compare RUN_A RUN_B --out DIR` writes: comparison.json and .csv."""
    from mnistlab.experiments.paired import compare_trained

    compare_trained(list(models), out=out)
    return out
