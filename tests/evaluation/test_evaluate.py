"""evaluate: exact metrics on known cases, R² done right, merge-safe metrics.json, a real run."""

import json
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import r2_score
from typer.testing import CliRunner

from mnistlab.errors import RunError
from mnistlab.evaluation import evaluate as ev


def _onehot_proba(pred, n_classes, conf=1.0):
    """Probabilities putting ``conf`` on ``pred`` and the rest evenly on the other classes."""
    p = np.full((len(pred), n_classes), (1 - conf) / (n_classes - 1))
    p[np.arange(len(pred)), pred] = conf
    return p


def test_known_confusion_case_exact_values():
    # true:  0 0 0 0 1 1 1 2 2 2 ; predicted: 0 0 0 1 1 1 0 2 2 1
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 1, 0, 2, 2, 1])
    r = ev.evaluate_predictions(y, _onehot_proba(pred, 3, 0.8), ["a", "b", "c"])
    assert r["n"] == 10 and r["accuracy"] == pytest.approx(0.7)
    assert r["confusion_matrix"] == [[3, 1, 0], [1, 2, 0], [0, 1, 2]]
    a, b, c = (r["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["support"]) == (
        pytest.approx(3 / 4),
        pytest.approx(3 / 4),
        4,
    )
    assert (b["precision"], b["recall"], b["support"]) == (
        pytest.approx(2 / 4),
        pytest.approx(2 / 3),
        3,
    )
    assert (c["precision"], c["recall"], c["support"]) == (
        pytest.approx(1.0),
        pytest.approx(2 / 3),
        3,
    )
    assert b["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert r["macro_avg"]["precision"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert r["weighted_avg"]["recall"] == pytest.approx(0.7)  # weighted recall == accuracy
    assert r["loss"] == pytest.approx(-(0.7 * np.log(0.8) + 0.3 * np.log(0.1)))
    json.dumps(r)  # JSON-ready as returned


def test_never_predicted_class_has_zero_precision_not_a_warning():
    y = np.array([0, 1, 2, 2])
    r = ev.evaluate_predictions(y, _onehot_proba(np.array([0, 1, 1, 1]), 3, 0.9))
    assert r["per_class"]["2"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}


def test_probability_r2_is_one_minus_brier_over_target_variance_and_sklearn_agrees():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 2.0 * np.eye(4)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    onehot = np.eye(4)[y]
    brier = np.mean(np.sum((p - onehot) ** 2, axis=1))
    freq = np.bincount(y, minlength=4) / len(y)
    formula = 1 - brier / np.sum(freq * (1 - freq))
    got = ev.probability_r2(y, p)
    assert got["brier"] == pytest.approx(brier, rel=1e-12)
    assert got["r2"] == pytest.approx(formula, rel=1e-12)
    assert got["r2"] == pytest.approx(
        r2_score(onehot, p, multioutput="variance_weighted"), rel=1e-12
    )
    r = ev.evaluate_predictions(y, p)
    assert r["r2"]["probabilities_vs_onehot"] == pytest.approx(formula, rel=1e-12)
    assert r["r2"]["probabilities_vs_onehot"] != pytest.approx(r2_score(y, p.argmax(1)), abs=1e-3)
    # anchors of the reading line: class frequencies score 0, perfect confident predictions 1
    assert ev.probability_r2(y, np.tile(freq, (200, 1)))["r2"] == pytest.approx(0.0, abs=1e-12)
    assert ev.probability_r2(y, onehot)["r2"] == 1.0
    assert (
        ev.probability_r2(np.zeros(3, int), np.eye(2)[[0, 0, 0]])["r2"] is None
    )  # one class: undefined


def test_label_r2_rewards_a_nearby_wrong_digit_probability_r2_does_not():
    """The reason the output gives: on nominal labels, 4-for-5 scores better than 0-for-5."""
    y = np.array([5, 5, 1, 2, 3, 7, 8, 9, 0, 6])
    near, far = y.copy(), y.copy()
    near[0], far[0] = 4, 0
    assert r2_score(y, near) > r2_score(y, far)  # what R² on labels would claim
    r_near = ev.evaluate_predictions(y, _onehot_proba(near, 10, 0.9))
    r_far = ev.evaluate_predictions(y, _onehot_proba(far, 10, 0.9))
    assert r_near["accuracy"] == r_far["accuracy"]
    assert r_near["r2"]["probabilities_vs_onehot"] == pytest.approx(
        r_far["r2"]["probabilities_vs_onehot"]
    )
    assert "nominal" in r_near["r2"]["labels"] and "4 for a 5" in r_near["r2"]["labels"]
    assert "0 = no better than predicting the class frequencies" in r_near["r2"]["how_to_read"]


def test_most_confused_order_counts_then_index():
    cm = np.array([[50, 3, 7, 0], [3, 40, 0, 9], [1, 0, 30, 2], [0, 9, 0, 20]])
    top = ev.most_confused(cm, list("abcd"), top=5)
    assert [(t["true"], t["predicted"], t["count"]) for t in top] == [
        ("b", "d", 9),
        ("d", "b", 9),
        ("a", "c", 7),
        ("a", "b", 3),
        ("b", "a", 3),
    ]
    assert top[0]["share_of_true"] == pytest.approx(9 / 52)
    assert ev.most_confused(np.diag([5, 5]), ["x", "y"]) == []  # no mistakes, no pairs


def test_misclassified_most_confident_first():
    y = np.array([0, 1, 0, 1, 0])
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    assert ev.misclassified(y, p).tolist() == [1, 4, 2, 3]
    assert ev.misclassified(y, p, limit=2).tolist() == [1, 4]


@pytest.mark.parametrize(
    "y, p, match",
    [
        (np.array([0, 1]), np.array([[0.5, 0.5]]), "expected y_true"),
        (np.array([0, 2]), np.array([[0.5, 0.5], [0.5, 0.5]]), "0..1"),
        (np.array([0.0, 1.0]), np.array([[0.5, 0.5], [0.5, 0.5]]), "integer"),
        (np.array([0, 1]), np.array([[0.5, 0.9], [0.5, 0.5]]), "sum to 1"),
        (np.array([0, 1]), np.array([[np.nan, 1.0], [0.5, 0.5]]), "finite"),
    ],
)
def test_bad_inputs_are_named(y, p, match):
    with pytest.raises(ValueError, match=match):
        ev.evaluate_predictions(y, p)


def test_float32_softmax_rows_are_accepted_without_warnings(recwarn):
    p = np.array([[0.1, 0.2, 0.7000001], [0.3, 0.3, 0.4]], dtype=np.float32)
    ev.evaluate_predictions(np.array([2, 0]), p)
    assert not [w for w in recwarn if "sum to one" in str(w.message)]


def test_merge_keeps_other_writers_keys(tmp_path):
    (tmp_path / "metrics.json").write_text(
        json.dumps(
            {
                "train": {"loss": 0.1},
                "test": {"accuracy": 0.97},
                "evaluation": {"val": {"accuracy": 0.9}},
            }
        )
    )
    ev.merge_metrics(tmp_path, "test", {"accuracy": 0.5})
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc == {
        "train": {"loss": 0.1},
        "test": {"accuracy": 0.97},
        "evaluation": {"val": {"accuracy": 0.9}, "test": {"accuracy": 0.5}},
    }
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(RunError, match="metrics.json"):
        ev.merge_metrics(tmp_path, "test", {"accuracy": 0.5})
    assert (tmp_path / "metrics.json").read_text() == "{not json"  # refused, not overwritten


def test_figures_are_valid_pngs(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 300)
    p = _onehot_proba(np.where(rng.random(300) < 0.8, y, (y + 1) % 10), 10, 0.7)
    r = ev.evaluate_predictions(y, p)
    files = ev.write_figures(
        r, rng.integers(0, 256, (300, 28, 28), dtype=np.uint8), y, p, tmp_path, title="t"
    )
    assert set(files) == set(ev.FIGURES)
    for f in files.values():
        with Image.open(f) as im:
            assert im.format == "PNG" and 400 <= min(im.size) and max(im.size) <= 3000


def test_val_split_is_the_held_out_tail_of_the_recorded_dataset():
    from mnistlab import datasets
    from mnistlab.recipe import Recipe
    from mnistlab.rundir import DatasetRecord

    ds = datasets.load("mnist-sample")
    env = {
        "dataset": {
            "name": ds.name,
            "checksums": dict(ds.checksums),
            "data_dir": None,
            "train": len(ds.x_train),
        }
    }
    run = types.SimpleNamespace(
        path=Path("r"),
        recipe=Recipe(validation_split=0.3),
        dataset=DatasetRecord.from_environment(env, "environment.json"),
    )
    x, y = ev.split_data(run, "val")
    n_val = len(ds.x_train) - int(np.ceil(len(ds.x_train) * 0.7))
    np.testing.assert_array_equal(x, ds.x_train[-n_val:])
    np.testing.assert_array_equal(y, ds.y_train[-n_val:])
    x, y = ev.split_data(run, "test")
    assert len(x) == len(ds.x_test)
    env["dataset"]["train"] = 1000  # trained on a subset: its validation part is unknowable
    run.dataset = DatasetRecord.from_environment(env, "environment.json")
    with pytest.raises(RunError, match="cannot be rebuilt"):
        ev.split_data(run, "val")
    env["dataset"]["checksums"] = {k: "0" * 64 for k in ds.checksums}
    run.dataset = DatasetRecord.from_environment(env, "environment.json")
    with pytest.raises(RunError, match="checksums changed"):
        ev.split_data(run, "test")
    with pytest.raises(RunError, match="'test' or 'val'"):
        ev.split_data(run, "train")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One epoch of a small MLP on a 2,000-image slice of the bundled sample."""
    import dataclasses

    from mnistlab import datasets
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import fit

    ds = datasets.load("mnist-sample")
    small = dataclasses.replace(ds, x_train=ds.x_train[:2000], y_train=ds.y_train[:2000])
    out = tmp_path_factory.mktemp("runs") / "tiny"
    fit(Recipe(epochs=1, hidden=[32], seed=0), small, out=out, quiet=True)
    return out


def test_evaluate_run_end_to_end(tiny_run, tmp_path):
    from mnistlab.cli import app

    before = json.loads((tiny_run / "metrics.json").read_text())
    res = CliRunner().invoke(app, ["evaluate", str(tiny_run), "--out", str(tmp_path / "figs")])
    assert res.exit_code == 0, res.output
    for text in (
        "Per-class report",
        "macro avg",
        "Most confused pairs",
        "R² on class labels makes no sense",
    ):
        assert text in res.output
    doc = json.loads((tiny_run / "metrics.json").read_text())
    assert doc["train"] == before["train"] and doc["test"] == before["test"]  # train's keys kept
    got = doc["evaluation"]["test"]
    assert got["n"] == 2000 and got["split"] == "test" and got["dataset"] == "mnist-sample"
    # the same test set train scored at the end of fit: the numbers must agree
    assert got["accuracy"] == pytest.approx(before["test"]["accuracy"], abs=1e-6)
    assert got["loss"] == pytest.approx(before["test"]["loss"], rel=1e-4)
    assert got["accuracy"] > 0.5  # a model that learned, not a constant
    assert (
        sorted(p.name for p in (tmp_path / "figs").iterdir())
        == sorted(ev.figure_names("test").values())
        == ["confusion_matrix_test.png", "misclassified_test.png", "reliability_test.png"]
    )
    # the run trained on a slice: asking for its validation split is a clear refusal
    res = CliRunner().invoke(app, ["evaluate", str(tiny_run), "--split", "val"])
    assert isinstance(res.exception, RunError) and "cannot be rebuilt" in str(res.exception)


def test_cli_evaluate_missing_run_is_one_line_error(tmp_path):
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "mnistlab", "evaluate", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "nope" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_split_is_refused_before_the_run_is_read(tmp_path, monkeypatch, capsys):
    import sys

    from mnistlab.cli import main

    with pytest.raises(RunError, match=r"split \(--split\): expected 'test' or 'val', got 'train'"):
        ev.evaluate(tmp_path / "no-run", split="train")
    monkeypatch.setattr(
        sys, "argv", ["mnistlab", "evaluate", str(tmp_path / "no-run"), "--split", "train"]
    )
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "'train'" in err, err
