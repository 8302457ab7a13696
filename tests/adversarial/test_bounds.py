"""Counts a user gives (seeds, jobs, trials, images to show) are bounded and checked before
anything is built: one line naming the bound, instead of gigabytes or minutes."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from PIL import Image

from mnistlab import plots
from mnistlab.errors import MnistlabError, RecipeError
from mnistlab.experiments import compare as cmp
from mnistlab.experiments import search as srch

VARIANTS = "[base]\nepochs = 1\n[variants.a]\n[variants.b]\nlr = 0.1\n"


@pytest.mark.parametrize("seeds", [10**11, 0, True, 2.5])
def test_compare_seeds_out_of_bounds_are_one_line_before_anything_is_built(tmp_path, seeds):
    (tmp_path / "v.toml").write_text(VARIANTS)
    variants = cmp.load_variants(tmp_path / "v.toml")
    t0 = time.monotonic()
    with pytest.raises(MnistlabError, match=r"--seeds: expected an integer from 1 to 1,000"):
        cmp.compare(variants, seeds=seeds, out=tmp_path / "c", dataset="mnist-sample")
    assert time.monotonic() - t0 < 1 and not (tmp_path / "c").exists()


@pytest.mark.parametrize("value", ["100000000000", "1e20"])
def test_seeds_in_a_variants_file_are_bounded(tmp_path, value):
    (tmp_path / "v.toml").write_text(f"seeds = {value}\n" + VARIANTS)
    with pytest.raises(RecipeError, match=r"v\.toml: seeds: expected an integer from 1 to"):
        cmp.load_variants(tmp_path / "v.toml")


def test_a_plan_of_more_runs_than_a_compare_trains_is_refused(tmp_path):
    table = "".join(f"[variants.v{i}]\nlr = {0.01 + i / 1e4}\n" for i in range(20))
    (tmp_path / "v.toml").write_text("[base]\nepochs = 1\n" + table)
    variants = cmp.load_variants(tmp_path / "v.toml")
    with pytest.raises(MnistlabError, match=r"20 variants x 600 seeds is 12,000 runs; .* 10,000"):
        cmp.compare(variants, seeds=600, out=tmp_path / "c", dataset="mnist-sample")


def test_jobs_and_trials_are_bounded(tmp_path):
    (tmp_path / "v.toml").write_text(VARIANTS)
    with pytest.raises(MnistlabError, match=r"--jobs: expected an integer from 1 to 256"):
        cmp.compare(cmp.load_variants(tmp_path / "v.toml"), jobs=10**9, out=tmp_path / "c")
    space = srch.parse_space(
        {"base": {"epochs": 1}, "space": {"dropout": {"low": 0.0, "high": 0.5}}},
        source="s.toml",
        default_name="s",
    )
    with pytest.raises(MnistlabError, match=r"--trials: expected an integer from 1 to 10,000"):
        srch.search(space, 10**11, out=tmp_path / "s")


def test_predict_show_draws_a_bounded_figure(tmp_path):
    from mnistlab.use.predict import Prediction, show

    rng = np.random.default_rng(0)
    results = [
        Prediction(f"img-{i}.png", rng.integers(0, 255, (28, 28), np.uint8), p, [(0, "0", p[0])])
        for i, p in enumerate(rng.dirichlet(np.ones(10), 500))
    ]
    t0 = time.monotonic()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        path = show(results, [str(i) for i in range(10)], tmp_path / "fig.png")
    assert time.monotonic() - t0 < 60  # was over 11 minutes
    assert [str(w.message) for w in seen] == [
        f"{path}: shows the first 40 of the 500 predicted images (a figure of more would "
        "take minutes to draw)"
    ]
    rows = plots.PREDICTIONS_SHOWN // 2
    assert Image.open(path).size[1] <= (2.0 * rows + 1) * plots.DPI
