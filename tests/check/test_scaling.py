"""check.standardization: which (x - mean) / std made the learner's arrays, found from the
arrays alone, and whether its statistics leak the test set."""

from __future__ import annotations

import numpy as np
import pytest

from mnistlab import check


def _std(x, mean, std):
    return ((x - mean) / std).astype(np.float32)


def test_training_part_statistics_pass(flat):
    x_train, x_test = flat
    part = x_train[: int(len(x_train) * 0.7)].astype(np.float64)
    m, s = part.mean(), part.std()
    r = check.standardization(_std(x_train, m, s), _std(x_test, m, s))
    assert r.passed and r.notes == []
    assert r.details["train"] == "statistics of the training part (the first 70 % of x_train)"
    assert abs(r.details["fit_mean"]) < 1e-4 and abs(r.details["fit_std"] - 1) < 1e-4
    # only the training part handed in, and torch's unbiased std in float32
    torch = pytest.importorskip("torch")
    t = torch.tensor(part, dtype=torch.float32)
    tm, ts = t.mean(), t.std()
    r = check.standardization(
        (torch.tensor(x_train[: len(part)], dtype=torch.float32) - tm) / ts,
        (torch.tensor(x_test, dtype=torch.float32) - tm) / ts,
    )
    assert r.passed, r.messages


def test_per_pixel_scaling_of_the_training_part_passes(flat):
    from sklearn.preprocessing import StandardScaler

    x_train, x_test = flat
    scaler = StandardScaler().fit(x_train[: int(len(x_train) * 0.7)])
    r = check.standardization(scaler.transform(x_train), scaler.transform(x_test))
    assert r.passed and r.details["train"].startswith("per-pixel statistics of the training")


def test_x_train_statistics_pass_with_a_note_on_the_validation_images(flat):
    x_train, x_test = flat
    m, s = x_train.mean(), x_train.std()
    r = check.standardization(_std(x_train, m, s), _std(x_test, m, s))
    assert r.passed and r.notes[0].startswith("x_train includes validation images")


@pytest.mark.parametrize(
    "which, said",
    [
        ("test", "x_train_std was made with statistics of the test set: that leaks"),
        ("all", "x_train_std was made with statistics of train and test together: that leaks"),
        ("own", "x_test_std was made with statistics of the test set, not the statistics of"),
        ("raw-test", "x_test_std was made with raw pixels, not scaled, not the statistics"),
        ("unit", "x_train_std is not standardized (pixels divided by 255)"),
        ("variance", "x_train_std is not standardized: on the training part its mean is 0"),
    ],
)
def test_leaks_and_mismatches_are_told_why(flat, which, said):
    x_train, x_test = flat
    part = x_train[: int(len(x_train) * 0.7)]
    everything = np.concatenate([x_train, x_test])
    m, s = part.mean(), part.std()
    answers = {
        "test": tuple(_std(x, x_test.mean(), x_test.std()) for x in (x_train, x_test)),
        "all": tuple(_std(x, everything.mean(), everything.std()) for x in (x_train, x_test)),
        "own": (_std(x_train, m, s), _std(x_test, x_test.mean(), x_test.std())),
        "raw-test": (_std(x_train, m, s), x_test.astype(np.float32)),
        "unit": (x_train / 255.0, x_test / 255.0),
        "variance": (_std(x_train, m, s**2), _std(x_test, m, s**2)),
    }
    r = check.standardization(*answers[which])
    assert not r.passed and r.problems[0].startswith(said), r.problems
    assert r.hint
    if which in ("test", "all"):
        assert "the test accuracy is no longer an honest estimate" in r.problems[0]


def test_unreadable_arrays_get_not_yet(flat):
    x_train, x_test = flat
    r = check.standardization(x_train, x_test)  # integers: nothing was divided
    assert not r.passed and "holds uint8 values" in r.problems[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        nan = (x_train - x_train.mean(0)) / x_train.std(0)
    r = check.standardization(nan, nan[: len(x_test)])
    assert not r.passed and "NaN" in r.problems[0] and "standard deviation of 0" in r.hint
    r = check.standardization(x_train[:100] * 1.0, x_test * 1.0)
    assert "x_train_std has 100 rows" in r.problems[0]
