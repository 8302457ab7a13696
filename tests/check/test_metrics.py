"""check.metrics: precision and recall against scikit-learn's on the same predictions, and R²
answered with its reason."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_score, r2_score, recall_score

from mnistlab import check


@pytest.fixture(scope="module")
def answers(runs, sample):
    proba = runs["bn0"].predict_proba(sample.x_test)
    return sample.y_test, proba, proba.argmax(axis=1)


@pytest.mark.parametrize("average", [None, "macro", "weighted"])
def test_sklearns_precision_and_recall_pass(answers, average, capsys):
    y, proba, pred = answers
    r = check.metrics(
        y,
        pred,
        precision=precision_score(y, pred, average=average),
        recall=recall_score(y, pred, average=average),
        proba=proba,
    )
    assert r.passed
    out = capsys.readouterr().out
    assert out.startswith("✓ metrics: passed: macro precision ")
    assert "R² on class labels makes no sense" in out and "1 - Brier score" in out


def test_one_hot_truth_and_probabilities_as_predictions_are_read(answers):
    y, proba, pred = answers
    per_class = precision_score(y, pred, average=None)
    r = check.metrics(
        np.eye(10)[y], proba, precision=list(per_class), recall=recall_score(y, pred, average=None)
    )
    assert r.passed


def test_precision_as_accuracy_and_swapped_metrics_are_named(answers):
    y, proba, pred = answers
    r = check.metrics(
        y,
        pred,
        precision=accuracy_score(y, pred),
        recall=precision_score(y, pred, average="macro"),
        proba=proba,
    )
    assert r.problems[0].startswith("your precision is the accuracy (")
    assert "micro" in r.problems[0]
    assert r.problems[1] == "your recall is the precision (macro): the two are swapped"
    assert r.hint.startswith("precision answers 'when the model says k, how often is it k?'")
    r = check.metrics(y, pred, precision=0.5, recall=recall_score(y, pred, average="macro"))
    assert r.problems == [
        "your precision 0.5000 matches neither scikit-learn's per class, macro nor weighted"
    ]


def test_r2_is_answered_with_its_reason(answers):
    y, proba, pred = answers
    right = {
        "precision": precision_score(y, pred, average="macro"),
        "recall": recall_score(y, pred, average="macro"),
    }
    r = check.metrics(y, pred, r2=r2_score(y, pred), proba=proba, **right)
    assert not r.passed and r.problems[0].startswith("your R² ")
    assert "is computed on the labels: R² on class labels makes no sense" in r.problems[0]
    assert r.hint == "R² compares quantities; is a digit's label a quantity?"
    onehot = np.eye(10)[y]
    for value in (
        r2_score(onehot, proba, multioutput="variance_weighted"),
        r2_score(onehot, proba),
    ):
        r = check.metrics(y, pred, r2=value, proba=proba, **right)
        assert r.passed and "1 - Brier score / variance of the targets" in r.notes[0]
    r = check.metrics(y, pred, r2=0.123, proba=proba, **right)
    assert r.problems == ["your R² 0.1230 is neither on the labels nor on the probabilities"]


def test_predictions_of_another_length_get_not_yet(answers):
    y, _, pred = answers
    r = check.metrics(y, pred[:10], precision=1.0, recall=1.0)
    assert r.problems == [f"y_pred has 10 labels for {len(y):,} images"]
