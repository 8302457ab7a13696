"""The robustness card: seeded, deterministic corruptions that grow with their severity, an
FGSM attack that stays within epsilon and brings the accuracy down as epsilon grows, the card in
metrics.json and its figure, and the command that writes it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from insiderun import small_run

from mnistlab import datasets
from mnistlab.errors import MnistlabError
from mnistlab.evaluation import inside
from mnistlab.evaluation import robustness as rb
from mnistlab.rundir import load_run


@pytest.fixture(scope="module")
def digits():
    ds = datasets.load("mnist-sample")
    return ds.x_test[:200], ds.y_test[:200]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return load_run(small_run(tmp_path_factory, "mlp"))


# ---- corruptions ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(rb.CORRUPTIONS))
def test_each_corruption_is_seeded_and_grows_with_severity(name, digits):
    x = digits[0][:60]
    change = []
    for severity in rb.SEVERITIES:
        a = rb.corrupt(x, name, severity, seed=3)
        assert a.shape == x.shape and a.dtype == np.uint8
        np.testing.assert_array_equal(a, rb.corrupt(x, name, severity, seed=3))  # deterministic
        change.append(np.abs(a.astype(float) - x).mean())
    assert 0 < change[0] < change[1] < change[2], change  # stronger at each severity
    if name not in ("blur", "scale", "contrast", "brightness"):  # the random ones
        assert not np.array_equal(rb.corrupt(x, name, 2, seed=3), rb.corrupt(x, name, 2, seed=4))


def test_a_corruption_does_not_depend_on_the_other_images_for_its_parameters(digits):
    """Each image's randomness comes from the generator in order: the first images of a batch
    are corrupted the same way whatever follows them."""
    x = digits[0][:20]
    np.testing.assert_array_equal(
        rb.corrupt(x, "rotate", 2, seed=1)[:10], rb.corrupt(x[:10], "rotate", 2, seed=1)
    )


def test_geometric_corruptions_keep_the_ink_and_move_it(digits):
    x = digits[0][:40].astype(float)
    rotated = rb.corrupt(digits[0][:40], "rotate", 1).astype(float)
    assert abs(rotated.sum() / x.sum() - 1) < 0.05  # bilinear resampling keeps the ink
    shifted = rb.corrupt(digits[0][:40], "translate", 3).astype(float)
    rows = np.arange(28)

    def centre(a):
        m = a.sum(axis=(1, 2))
        return np.stack([(a.sum(2) * rows).sum(1) / m, (a.sum(1) * rows).sum(1) / m], 1)

    moved = np.linalg.norm(centre(shifted) - centre(x), axis=1)
    assert np.median(moved) > 4  # 6 px, less where the digit is cut at the edge


def test_unknown_corruption_or_severity_is_one_line(digits):
    with pytest.raises(MnistlabError, match="expected one of shot_noise"):
        rb.corrupt(digits[0], "snow", 1)
    with pytest.raises(MnistlabError, match="expected 1, 2 or 3"):
        rb.corrupt(digits[0], "fog", 4)


# ---- FGSM -----------------------------------------------------------------------------------
def test_fgsm_stays_within_epsilon_raises_the_loss_and_breaks_the_model(run, digits):
    x, y = digits
    model = inside.Model.of(run)
    attacked = rb.fgsm(model, x, y)
    assert list(attacked) == list(rb.EPSILONS)
    np.testing.assert_array_equal(attacked[0.0], x)
    for e, a in attacked.items():
        assert np.abs(a.astype(float) - x).max() <= e * 255 + 0.5
    p0, p1 = run.predict_proba(x), run.predict_proba(attacked[0.05])
    rows = np.arange(len(y))
    assert np.mean(-np.log(p1[rows, y]) > -np.log(p0[rows, y])) > 0.9  # the loss goes up
    acc = [np.mean(run.predict_proba(a).argmax(1) == y) for a in attacked.values()]
    assert acc[0] > 0.8 and acc[-1] < 0.1
    assert all(b <= a + 0.01 for a, b in zip(acc, acc[1:]))  # falls with epsilon


# ---- the card -------------------------------------------------------------------------------
def test_the_card(run):
    card = rb.card(run, images=150, seed=0)
    json.dumps(card, allow_nan=False)
    assert card["n"] == 150 and card["of"] == 2000
    assert list(card["corruptions"]) == list(rb.CORRUPTIONS)
    accs = np.array([c["accuracy"] for c in card["corruptions"].values()])
    assert accs.shape == (12, 3) and card["robust_accuracy"] == pytest.approx(accs.mean())
    means = accs.mean(axis=1)
    assert [list(rb.CORRUPTIONS)[i] for i in np.argsort(means, kind="stable")[:3]] == card["worst"]
    assert card["fgsm"]["accuracy"][0] == card["clean_accuracy"] > 0.8
    assert card["fgsm"]["accuracy"][-1] < 0.1
    assert card["corruptions"]["rotate"]["levels"] == [
        "15 degrees either way",
        "30 degrees either way",
        "45 degrees either way",
    ]
    assert rb.card(run, images=150, seed=0) == card  # the same card every time


def test_the_subset_is_seeded_sorted_and_whole_when_small():
    a = rb.subset(10_000, 2000, seed=0)
    assert len(a) == 2000 == len(set(a.tolist())) and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, rb.subset(10_000, 2000, seed=0))
    assert a.max() > 5000  # not just the test set's first, easier half
    np.testing.assert_array_equal(rb.subset(300, 2000), np.arange(300))


def test_per_image_scores_pair_across_runs(run, digits):
    x, y = digits[0][:50], digits[1][:50]
    hits = rb.corruption_hits(run, x, y, seed=5)
    assert hits.shape == (12, 3, 50) and hits.dtype == bool
    scores = rb.robust_scores(run, x, y, seed=5)
    np.testing.assert_allclose(scores, hits.mean(axis=(0, 1)))
    for i, name in enumerate(rb.CORRUPTIONS):  # each row is that corruption's own accuracy
        pred = run.predict_proba(rb.corrupt(x, name, 2, seed=5)).argmax(1)
        np.testing.assert_array_equal(hits[i, 1], pred == y)


def test_evaluate_robustness_stores_the_card_and_draws_it(tmp_path_factory):
    import shutil

    from mnistlab.rundir import read_metrics

    src = small_run(tmp_path_factory, "mlp")
    path = tmp_path_factory.mktemp("robust") / "run"
    shutil.copytree(src, path)
    before = read_metrics(path / "metrics.json")
    card = rb.evaluate_robustness(path, images=100)
    metrics = read_metrics(path / "metrics.json")
    assert metrics["robustness"]["robust_accuracy"] == card["robust_accuracy"]
    assert metrics["test"] == before["test"]  # other keys kept
    png = (path / "robustness.png").read_bytes()
    assert png.startswith(b"\x89PNG") and card["figure"] == str(path / "robustness.png")


def test_evaluate_command_with_robustness(tmp_path_factory, capsys, monkeypatch):
    import shutil
    import sys

    from mnistlab.cli import main

    path = tmp_path_factory.mktemp("robust-cli") / "run"
    shutil.copytree(small_run(tmp_path_factory, "mlp"), path)
    args = ["mnistlab", "evaluate", str(path), "--robustness", "--robustness-images", "80"]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr().out
    assert exc.value.code in (0, None), out
    assert "Where it breaks" in out and "FGSM" in out and 'saved under "robustness"' in out
    card = json.loads((path / "metrics.json").read_text())["robustness"]
    assert card["n"] == 80 and "evaluation" in json.loads((path / "metrics.json").read_text())


# ---- compare --metric robust_accuracy -------------------------------------------------------
def _scores(rng, n=800, skill=0.7):
    """Per-image shares of 36 corrupted versions right, drawn around ``skill``."""
    return {
        "score": (
            rng.binomial(36, np.clip(rng.beta(8 * skill, 8 * (1 - skill), n), 0, 1)) / 36
        ).astype(np.float32)
    }


def test_the_sign_flip_test_holds_its_level_and_sees_a_real_difference():
    from mnistlab.evaluation import paired

    rng = np.random.default_rng(0)
    calls = 0
    for i in range(60):  # no difference: at most a few false calls (5 % expected)
        pair = (_scores(rng), _scores(rng))
        p, _ = paired._robust_paired([pair], permutations=200, seed=i)
        calls += p < 0.05
    assert calls <= 8, calls
    b = _scores(rng)
    v = {"score": np.clip(b["score"] + rng.normal(0.03, 0.05, len(b["score"])), 0, 1)}
    p, details = paired._robust_paired([(b, v)], permutations=400)
    assert p < 0.01 and details["diff"] > 0
    assert paired._robust_paired([(b, b)], permutations=100)[0] == 1.0  # no difference at all

    class NoFlip:
        @staticmethod
        def random(shape):
            return np.ones(shape)  # never < 0.5

    got = paired._flipped_mean_diffs(b, v, NoFlip, 3)
    np.testing.assert_allclose(got, np.mean(np.float64(v["score"]) - b["score"]), rtol=1e-12)


def test_robust_accuracy_is_a_compare_metric_with_the_cards_number(run):
    from mnistlab.evaluation import paired

    ds = datasets.load("mnist-sample")
    m = paired.metric("robust_accuracy")
    record = m.measure(run, ds.x_test[:300], ds.y_test[:300])
    assert record["score"].shape == (300,) and record["score"].dtype == np.float32
    hits = rb.corruption_hits(run, ds.x_test[:300], ds.y_test[:300])
    assert m.value(record) == pytest.approx(hits.mean(), abs=1e-6) and m.higher_is_better
    assert m.value(record) < float(
        np.mean(run.predict_proba(ds.x_test[:300]).argmax(1) == ds.y_test[:300])
    )  # harder than the clean images


def test_a_leaderboard_ranks_on_robust_accuracy():
    from types import SimpleNamespace

    from mnistlab.experiments import leaderboard as lb
    from mnistlab.recipe import Recipe

    rng = np.random.default_rng(4)
    records = {}
    for name, skill in (("base", 0.6), ("sturdy", 0.75), ("same", 0.6)):
        for s in (0, 1):
            test, val = _scores(rng, skill=skill), _scores(rng, skill=skill)
            records[name, s] = {
                "val_accuracy": 0.9,
                "test_accuracy": 0.9,
                "seconds": 1.0,
                "correct": rng.random(800) < 0.9,
                "val_robust_accuracy": float(val["score"].mean()),
                "test_robust_accuracy": float(test["score"].mean()),
                "per_image": test,
            }
    variants = SimpleNamespace(
        name="t",
        baseline="base",
        recipes={k: Recipe(hidden=[8], name=k) for k in ("base", "sturdy", "same")},
    )
    ds = SimpleNamespace(
        name="s",
        x_train=np.zeros(10),
        x_test=np.zeros(800),
        y_test=np.zeros(800),
        class_names=list("0123456789"),
    )
    board = lb.leaderboard(records, variants, [0, 1], ds, "robust_accuracy")
    by = {v["name"]: v for v in board["variants"]}
    assert board["metric"] == "robust_accuracy" and "sign-flip" in board["test"]["method"]
    assert by["sturdy"]["rank"] == 1 and by["sturdy"]["verdict"] == "real: better"
    assert by["same"]["verdict"] == "not shown"


def test_compare_metric_robust_accuracy_end_to_end(tmp_path, monkeypatch, capsys):
    import sys

    from mnistlab.cli import main

    (tmp_path / "v.toml").write_text(
        '[base]\nhidden = [16]\nepochs = 1\nbatch_size = 64\ndataset = "mnist-sample"\n'
        "[variants.small]\n[variants.wider]\nhidden = [48]\n"
    )
    out = tmp_path / "c"
    argv = ["mnistlab", "compare", str(tmp_path / "v.toml"), "--seeds", "1", "--out", str(out)]
    argv += ["--train-images", "1500", "--metric", "robust_accuracy", "-q"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    assert "ranked by validation robust_accuracy" in capsys.readouterr().out
    board = json.loads((out / "leaderboard.json").read_text())
    wider = next(v for v in board["variants"] if v["name"] == "wider")
    assert 0 < wider["test_robust_accuracy"]["mean"] < wider["test_accuracy"]["mean"]
    assert "p_value" in wider["runs"][0]["paired"]
    assert "val robust accuracy" in (out / "report.html").read_text(encoding="utf-8")


def test_robustness_of_bare_predictions_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    import sys

    from mnistlab.cli import main

    labels = datasets.load("mnist-sample").y_test
    np.save(tmp_path / "preds.npy", labels)
    argv = ["mnistlab", "evaluate", str(tmp_path / "preds.npy"), "--dataset", "mnist-sample"]
    monkeypatch.setattr(sys, "argv", [*argv, "--robustness"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--robustness needs a run folder" in err and "\n" == err[-1]
