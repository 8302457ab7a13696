"""compare --metric: the paired permutation test of ECE (exact statistic, valid under "no
difference", able to see a real one, and never calling two seeds of one recipe different),
ranking on the chosen metric, Wilson intervals on the leaderboard, end to end and on the page."""

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from pagecheck import Page

from mnistlab import datasets
from mnistlab.cli import main
from mnistlab.errors import MnistlabError
from mnistlab.evaluation import paired
from mnistlab.evaluation.calibration import ece
from mnistlab.evaluation.intervals import wilson
from mnistlab.experiments import compare as cmp
from mnistlab.experiments import leaderboard as lb
from mnistlab.recipe import Recipe


def _model(rng, n=2000, skill=2.0, overconfidence=1.0):
    """Per-image (confidence, correct) of a 10-class model on n images: logits drawn at random
    around the true class, confidence from softmax(logits * overconfidence), labels from the
    unscaled softmax (so overconfidence > 1 makes it miscalibrated)."""
    z = rng.normal(0, 1, (n, 10)) + skill * np.eye(10)[rng.integers(0, 10, n)]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = (rng.random((n, 1)) > np.cumsum(p, 1)).sum(1).clip(0, 9)
    q = np.exp((z - z.max(1, keepdims=True)) * overconfidence)
    q /= q.sum(1, keepdims=True)
    return {"confidence": q.max(1).astype(np.float32), "correct": q.argmax(1) == y}


# ---- the permutation test ------------------------------------------------------------------
def test_permuted_statistic_is_the_ece_difference_when_nothing_is_swapped():
    rng = np.random.default_rng(0)
    b, v = _model(rng), _model(rng, overconfidence=1.5)

    class NoSwap:
        @staticmethod
        def random(shape):
            return np.ones(shape)  # never < 0.5

    got = paired._swapped_ece_diffs(b, v, NoSwap, 3)
    want = ece(v["confidence"], v["correct"]) - ece(b["confidence"], b["correct"])
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_ece_test_holds_its_level_and_sees_a_real_difference():
    rng = np.random.default_rng(1)
    # "no difference": both models drawn the same way, 60 times; the test may call at most
    # a few of them real (5 % expected; 9 of 60 would be p ~ 0.01 for a valid test)
    calls = 0
    for i in range(60):
        pair = (_model(rng, n=1000), _model(rng, n=1000))
        p, _ = paired._ece_paired([pair], permutations=200, seed=i)
        calls += p < 0.05
    assert calls <= 8, calls
    # a clearly overconfident variant is found, with a positive ECE difference
    b, v = _model(rng), _model(rng, overconfidence=2.0)
    p, details = paired._ece_paired([(b, v)], permutations=400)
    assert p < 0.01 and details["diff"] > 0
    assert p == paired._ece_paired([(b, v)], permutations=400)[0]  # seeded: the same again


def test_two_seeds_of_one_recipe_are_not_called_different(tmp_path):
    from mnistlab.rundir import load_run
    from mnistlab.training.fit import fit

    ds = cmp.slice_dataset(datasets.load("mnist-sample"), 3000, 2000)
    records = []
    for seed in (0, 1):
        recipe = Recipe(epochs=2, hidden=[32], seed=seed)
        run = fit(recipe, ds, out=tmp_path / f"s{seed}", quiet=True)
        records.append(paired.METRICS["ece"].measure(load_run(run.path), ds.x_test, ds.y_test))
    assert not (records[0]["confidence"] == records[1]["confidence"]).all()  # two models
    p, details = paired.METRICS["ece"].paired([tuple(records)])
    assert p > 0.05, (p, details)


# ---- the leaderboard -------------------------------------------------------------------
def _records(n=1000):
    """Runs of three variants x two seeds: 'hot' overconfident, 'cold' like the baseline."""
    rng = np.random.default_rng(3)
    out = {}
    for name, over in (("base", 1.0), ("hot", 2.5), ("cold", 1.0)):
        for s in (0, 1):
            img = _model(rng, n=n, overconfidence=over)
            val = _model(rng, n=n, overconfidence=over)
            out[name, s] = {
                "val_accuracy": float(val["correct"].mean()),
                "test_accuracy": float(img["correct"].mean()),
                "seconds": 1.0,
                "correct": img["correct"],
                "val_ece": ece(val["confidence"], val["correct"]),
                "test_ece": ece(img["confidence"], img["correct"]),
                "per_image": img,
            }
    return out


def _setup(n=1000):
    variants = SimpleNamespace(
        name="t",
        baseline="base",
        recipes={k: Recipe(hidden=[8], name=k) for k in ("base", "hot", "cold")},
    )
    ds = SimpleNamespace(
        name="synthetic",
        x_train=np.zeros(10),
        x_test=np.zeros(n),
        y_test=np.zeros(n),
        class_names=list("0123456789"),
    )
    return variants, ds


def test_leaderboard_ranks_and_tests_on_ece_with_wilson_intervals():
    records = _records()
    variants, ds = _setup()
    board = lb.leaderboard(records, variants, [0, 1], ds, "ece")
    assert board["metric"] == "ece" and "permutation" in board["test"]["method"]
    vals = [v["val_ece"]["mean"] for v in board["variants"]]
    assert vals == sorted(vals)  # lower is better: the best rank has the lowest ECE
    by = {v["name"]: v for v in board["variants"]}
    assert by["hot"]["rank"] == 3 and by["hot"]["verdict"] == "real: worse"
    assert by["cold"]["verdict"] == "not shown"
    assert by["hot"]["diff_test"] == pytest.approx(
        by["hot"]["test_ece"]["mean"] - by["base"]["test_ece"]["mean"]
    )
    for v in board["variants"]:
        counts = [int(records[v["name"], s]["correct"].sum()) for s in (0, 1)]
        for r, k in zip(v["runs"], counts):
            assert (r["test_accuracy_ci"]["low"], r["test_accuracy_ci"]["high"]) == wilson(k, 1000)
            assert "per_image" not in r and "correct" not in r
            if v["name"] != "base":
                assert r["paired"]["p_value"] > 0 and "diff" in r["paired"]
        ci = v["test_accuracy_ci"]  # around the mean count, on the 1,000 images, not 2,000
        assert (ci["low"], ci["high"]) == wilson(sum(counts) / 2, 1000)
    json.dumps(lb._json_safe(board))
    with pytest.raises(MnistlabError, match="--metric: expected one of accuracy, ece"):
        lb.leaderboard(records, variants, [0, 1], ds, "speed")


def test_accuracy_board_keeps_mcnemar_and_adds_the_intervals():
    records = _records()
    variants, ds = _setup()
    board = lb.leaderboard(records, variants, [0, 1], ds)
    hot = next(v for v in board["variants"] if v["name"] == "hot")
    d = hot["discordant"]
    assert hot["p_value"] == pytest.approx(lb.mcnemar(d["baseline_only"], d["variant_only"]))
    assert set(hot["runs"][0]["mcnemar"]) == {"baseline_only", "variant_only", "p_value"}
    assert "val_ece" not in hot and "test_accuracy_ci" in hot and board["metric"] == "accuracy"


def test_per_image_records_travel_through_a_study_unchanged():
    rec = _records(50)["hot", 0]
    back = cmp._unpack(json.loads(json.dumps(cmp._pack(rec))), 50)
    assert (back["correct"] == rec["correct"]).all()
    np.testing.assert_array_equal(back["per_image"]["confidence"], rec["per_image"]["confidence"])
    assert back["per_image"]["correct"].dtype == bool
    assert (back["per_image"]["correct"] == rec["per_image"]["correct"]).all()


# ---- end to end --------------------------------------------------------------------------
def test_compare_metric_ece_end_to_end_and_on_the_page(tmp_path, monkeypatch, capsys):
    (tmp_path / "v.toml").write_text(
        '[base]\nhidden = [16]\nepochs = 1\nbatch_size = 64\ndataset = "mnist-sample"\n'
        "[variants.small]\n[variants.smooth]\nlabel_smoothing = 0.2\n"
    )
    out = tmp_path / "c"
    argv = ["mnistlab", "compare", str(tmp_path / "v.toml"), "--seeds", "1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv + ["--train-images", "1500", "--metric", "ece", "-q"])
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "ranked by validation ece" in printed and "permutation" in printed
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["metric"] == "ece"
    smooth = next(v for v in board["variants"] if v["name"] == "smooth")
    assert smooth["test_ece"]["mean"] > 0 and "paired" in smooth["runs"][0]
    header = (out / "leaderboard.csv").read_text().splitlines()[0]
    assert header.endswith("val_ece_mean,val_ece_std,test_ece_mean,test_ece_std")
    assert "test_ci_low,test_ci_high" in header
    page = Page((out / "report.html").read_text(encoding="utf-8"))
    table = page.text("leaderboard")
    assert "val ECE" in table and "test accuracy, 95 % CI" in table
    assert "ranked by validation ECE" in page.text("accuracy")
    monkeypatch.setattr(sys, "argv", argv + ["--metric", "speed"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "--metric: expected one of" in capsys.readouterr().err
