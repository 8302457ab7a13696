"""One verdict function for every comparison: a difference the paired test does not show is
"not shown" with its p-value in the variants leaderboard, the trained-models comparison and the
compare page alike; the leaderboard's training seconds are the epochs' own, with each worker's
engine loaded before any run's clock starts."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from pagefolders import make_run, small_sample

from mnistlab import rundir
from mnistlab.evaluation.significance import ALPHA, stated, verdict
from mnistlab.experiments.compare import Variants, run_record
from mnistlab.experiments.leaderboard import leaderboard
from mnistlab.experiments.paired import paired_rows
from mnistlab.pages.compare_page import verdict as page_verdict
from mnistlab.recipe import Recipe


def test_the_verdict_words():
    assert verdict(0.01, ALPHA / 2) == "real: better" and verdict(-0.01, 0.0) == "real: worse"
    assert verdict(0.01, ALPHA) == "not shown" and verdict(0.01, None) == "untested"
    assert stated(-0.002, 0.4) == "not shown (Holm p = 0.4)"


def test_leaderboard_and_trained_comparison_say_not_shown_with_the_same_function():
    ds = small_sample(100)
    correct = np.ones(20, bool)
    almost = correct.copy()
    almost[:2] = False  # 2 discordant images: p = 0.5
    records = {
        (name, 0): {
            "val_accuracy": 0.9,
            "test_accuracy": hit.mean(),
            "seconds": 1.0,
            "correct": hit,
        }
        for name, hit in (("base", correct), ("other", almost))
    }
    variants = Variants("v", "base", {"base": Recipe(hidden=[8]), "other": Recipe(hidden=[9])})
    board = leaderboard(records, variants, [0], ds)
    other = next(v for v in board["variants"] if v["name"] == "other")
    assert other["verdict"] == "not shown" == verdict(other["diff_test"], other["p_holm"])
    rows = paired_rows({"base": correct, "other": almost}, "base")
    assert rows[1]["verdict"] == "not shown" and rows[1]["p_holm"] == other["p_holm"]
    mark, sentence = page_verdict(other, "base")
    assert mark == "not shown" and f"p = {other['p_holm']:.3g}" in sentence
    assert "noise" not in json.dumps(board) + sentence


def test_leaderboard_seconds_are_the_epochs_own(tmp_path):
    run = make_run(tmp_path / "r", Recipe(epochs=2, hidden=[8]), n=400)
    history = rundir.read_history(run / rundir.HISTORY)
    record = run_record(run, small_sample(400))
    assert record["seconds"] == pytest.approx(sum(row["seconds"] for row in history))


def test_warm_up_loads_the_compiled_engine_and_writes_nothing(tmp_path):
    pytest.importorskip("numba")
    script = (
        "from mnistlab import datasets\n"
        "from mnistlab.recipe import Recipe\n"
        "from mnistlab.experiments.compare import warm_up\n"
        "from mnistlab.engines import fast_numba\n"
        "before = len(fast_numba._steps.signatures)\n"
        "warm_up([Recipe(hidden=[8]), Recipe(hidden=[8], seed=3)], datasets.load('mnist-sample'))\n"
        "print(before, len(fast_numba._steps.signatures))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["0", "1"], out.stderr
    assert list(tmp_path.iterdir()) == []
