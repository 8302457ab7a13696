"""check.data: the arrays as the tutorial shapes them, the class counts, the pixels' mean and
variance, each against the dataset itself."""

from __future__ import annotations

import numpy as np
import pytest

from mnistlab import check


def test_the_tutorial_answer_passes_one_hot_or_plain_labels(sample, flat, capsys):
    x_train, x_test = flat
    onehot = np.eye(10)[sample.y_train]
    r = check.data(
        x_train,
        onehot,
        x_test,
        np.eye(10)[sample.y_test],
        class_counts=onehot.sum(axis=0),
        mean=x_train.mean(),
        variance=x_train.var(),
    )
    assert r.passed and r.problems == [] and r.notes == []
    assert r.details["class_counts"] == np.bincount(sample.y_train).tolist()
    assert capsys.readouterr().out.startswith("✓ data: passed: mnist-sample, x_train (")
    # plain labels, float32 pixels, counts as a dict, statistics in float32
    r = check.data(
        x_train.astype(np.float32),
        sample.y_train,
        x_test,
        sample.y_test,
        class_counts=dict(zip(*np.unique(sample.y_train, return_counts=True))),
        mean=x_train.astype(np.float32).mean(),
        variance=x_train.astype(np.float32).var(),
    )
    assert r.passed, r.messages


def test_statistics_of_the_training_part_pass_with_a_note(flat, sample):
    x_train, x_test = flat
    part = x_train[: int(len(x_train) * 0.7)]
    r = check.data(
        x_train, sample.y_train, x_test, sample.y_test, mean=part.mean(), variance=part.var()
    )
    assert r.passed and r.notes == [
        "mean of the first 70 % of x_train (the part the network fits on)",
        "variance of the first 70 % of x_train (the part the network fits on)",
    ]
    per_pixel = check.data(x_train, sample.y_train, x_test, sample.y_test, mean=x_train.mean(0))
    assert per_pixel.passed and per_pixel.notes == ["mean per pixel of x_train"]


@pytest.mark.parametrize(
    "change, said",
    [
        ({"x_train": "square"}, "x_train has shape ("),
        ({"x_test": "unit"}, "x_test holds values 0..1"),
        ({"x_train": "shuffled"}, "x_train differs from mnist-sample's images"),
        ({"y_train": "shifted"}, "y_train differs from mnist-sample's labels"),
        ({"class_counts": "test"}, "class_counts are the test set's"),
        ({"class_counts": "wrong"}, "class_counts [1. 1. 1. 1. 1. 1. 1. 1. 1. 1.] are not"),
        ({"variance": "std"}, "variance: that is the standard deviation"),
        ({"mean": "unit"}, "mean: that is of pixels scaled to 0..1"),
        ({"mean": "test"}, "mean: that is the test set's"),
        ({"mean": "other"}, "mean 12 does not match the pixels of x_train"),
        ({"mean": "784"}, "mean has 3 values: give one number over all pixels"),
    ],
)
def test_typical_slips_are_named_with_a_hint(sample, flat, change, said):
    x_train, x_test = flat
    answer = {
        "x_train": x_train,
        "y_train": sample.y_train,
        "x_test": x_test,
        "y_test": sample.y_test,
        "class_counts": np.bincount(sample.y_train),
        "mean": x_train.mean(),
        "variance": x_train.var(),
    }
    wrong = {
        ("x_train", "square"): sample.x_train,
        ("x_test", "unit"): x_test / 255.0,
        ("x_train", "shuffled"): x_train[::-1],
        ("y_train", "shifted"): (sample.y_train + 1) % 10,
        ("class_counts", "test"): np.bincount(sample.y_test),
        ("class_counts", "wrong"): np.ones(10),
        ("variance", "std"): x_train.std(),
        ("mean", "unit"): (x_train / 255.0).mean(),
        ("mean", "test"): x_test.mean(),
        ("mean", "other"): 12.0,
        ("mean", "784"): [1.0, 2.0, 3.0],
    }
    ((key, how),) = change.items()
    answer[key] = wrong[key, how]
    r = check.data(
        answer.pop("x_train"),
        answer.pop("y_train"),
        answer.pop("x_test"),
        answer.pop("y_test"),
        **answer,
    )
    assert not r.passed and r.hint
    assert any(p.startswith(said) for p in r.problems), r.problems
    assert "mean" not in r.details or key != "mean"  # a wrong answer's truth is not handed out


def test_unreadable_or_unknown_inputs_get_not_yet_not_a_traceback(sample, flat):
    x_train, x_test = flat
    r = check.data("pixels", sample.y_train, x_test, sample.y_test)
    assert not r.passed and r.problems == ["x_train: expected numbers, got str of dtype <U6"]
    r = check.data(x_train, sample.y_train, 3.0, sample.y_test)
    assert r.problems[0].endswith("and x_test (): expected arrays of images")
    r = check.data(x_train[:123], sample.y_train, x_test[:45], sample.y_test)
    assert not r.passed and "match neither mnist-sample" in r.problems[0]
    assert "dataset=" in r.hint
    named = check.data(x_train, sample.y_train, x_test, sample.y_test, dataset=sample)
    assert named.passed
