"""Per-step learning rates: Keras' inverse-time decay and the schedules on top of it."""

import dataclasses

import numpy as np
import pytest

from mnistlab.recipe import Recipe
from mnistlab.training.schedules import learning_rates, steps_per_epoch


def test_steps_keep_the_last_partial_batch():
    assert steps_per_epoch(42000, 32) == 1313  # 1312 full batches + one of 16
    assert steps_per_epoch(64, 32) == 2


def test_keras_inverse_time_decay_per_step_across_epochs():
    r = Recipe(learning_rate=0.01, decay=1e-3)
    e0, e1 = learning_rates(r, 0, 10), learning_rates(r, 1, 10)
    t = np.arange(20)
    np.testing.assert_allclose(np.concatenate([e0, e1]), 0.01 / (1 + 1e-3 * t), rtol=0, atol=0)
    assert e0[0] == 0.01  # the first step uses the undecayed rate


def test_constant_without_decay_is_flat():
    assert np.all(learning_rates(Recipe(decay=0.0), 3, 7) == 0.01)


def test_step_schedule_drops_by_gamma():
    r = Recipe(decay=0.0, schedule="step", step_size=2, gamma=0.5, epochs=6)
    assert [learning_rates(r, e, 4)[0] for e in range(5)] == pytest.approx(
        [0.01, 0.01, 0.005, 0.005, 0.0025]
    )


def test_cosine_goes_from_lr_towards_zero():
    r = Recipe(decay=0.0, schedule="cosine", epochs=4)
    lrs = np.concatenate([learning_rates(r, e, 100) for e in range(4)])
    assert lrs[0] == pytest.approx(0.01) and lrs[-1] < 1e-6 and np.all(np.diff(lrs) <= 0)


def test_onecycle_rises_then_falls():
    r = Recipe(decay=0.0, schedule="onecycle", epochs=10, learning_rate=0.1)
    lrs = np.concatenate([learning_rates(r, e, 50) for e in range(10)])
    top = int(np.argmax(lrs))
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[top] == pytest.approx(0.1, rel=1e-2)
    assert 0.25 * len(lrs) < top < 0.35 * len(lrs) and lrs[-1] < 0.1 / 100


def test_warmup_ramps_linearly():
    r = Recipe(decay=0.0, warmup_epochs=1.0)
    lrs = learning_rates(r, 0, 10)
    np.testing.assert_allclose(lrs, 0.01 * np.arange(1, 11) / 10)
    assert np.all(learning_rates(r, 1, 10) == 0.01)


def test_exponential_decays_smoothly_by_gamma_per_step_size_epochs():
    r = Recipe(decay=0.0, schedule="exponential", gamma=0.5, step_size=2, epochs=6)
    lrs = np.concatenate([learning_rates(r, e, 4) for e in range(6)])
    np.testing.assert_allclose(lrs, 0.01 * 0.5 ** (np.arange(24) / 8), rtol=1e-12)
    assert lrs[8] == pytest.approx(0.005) and lrs[16] == pytest.approx(0.0025)
    assert np.all(np.diff(lrs) < 0)  # every step, not only at epoch boundaries


def _plateau(**kw):
    return Recipe(decay=0.0, schedule="plateau", plateau_factor=0.5, plateau_patience=2, **kw)


def test_plateau_drops_after_patience_stalled_epochs_and_not_before():
    r = _plateau()
    rows = [{"val_loss": v} for v in (1.0, 0.8, 0.8, 0.79995, 0.7, 0.7, 0.7, 0.7)]
    # epoch e's rate depends on rows[:e]; 0.8 and 0.79995 are stalls (min_delta 1e-4)
    got = [learning_rates(r, e, 3, rows)[0] / 0.01 for e in range(9)]
    assert got == pytest.approx([1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])
    assert np.all(learning_rates(r, 4, 3, rows) == learning_rates(r, 4, 3, rows)[0])  # per epoch


def test_plateau_watches_accuracy_upwards_and_respects_min_lr_and_cooldown():
    r = _plateau(plateau_monitor="val_accuracy", min_lr=0.003, plateau_cooldown=2)
    rows = [{"val_accuracy": a} for a in (0.9, 0.8, 0.85, 0.85, 0.85, 0.95, 0.9, 0.9, 0.9, 0.9)]
    got = [round(learning_rates(r, e, 1, rows)[0], 6) for e in range(11)]
    # falling accuracy is a stall: drop after rows 1-2; the cooldown swallows row 3 (Keras
    # counts the epoch that ends a cooldown of 2 already), so rows 3-4 are not two stalls;
    # 0.95 improves; rows 6-7 stall -> 0.0025, clipped to min_lr 0.003, and rows 8-9 cannot
    # go lower
    assert got == [0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.005, 0.005, 0.003, 0.003, 0.003]
    no_cooldown = dataclasses.replace(r, plateau_cooldown=0)
    assert learning_rates(no_cooldown, 5, 1, rows)[0] == pytest.approx(0.003)  # rows 3-4 count


def test_plateau_replays_from_history_only():
    r = _plateau()
    rows = [{"val_loss": 1.0}] * 5
    assert learning_rates(r, 3, 2, rows[:3])[0] == learning_rates(r, 3, 2, rows)[0]
    with pytest.raises(ValueError, match="history"):
        learning_rates(r, 3, 2, rows[:2])


def test_warmup_ramps_every_schedule_but_onecycle():
    for schedule in ("step", "exponential", "cosine", "plateau"):
        r = Recipe(decay=0.0, schedule=schedule, warmup_epochs=2.0, epochs=4, gamma=0.9)
        plain = Recipe(decay=0.0, schedule=schedule, epochs=4, gamma=0.9)
        for e in range(3):
            ramp = np.minimum(1.0, (np.arange(e * 5, e * 5 + 5) + 1) / 10)
            np.testing.assert_allclose(
                learning_rates(r, e, 5, [{"val_loss": 1.0}] * e),
                learning_rates(plain, e, 5, [{"val_loss": 1.0}] * e) * ramp,
            )


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("schedule", "linear", "one of constant, step, exponential"),
        ("plateau_monitor", "val_f1", "one of val_loss, val_accuracy"),
        ("plateau_factor", 0.0, "a number in (0, 1]"),
        ("plateau_patience", 0, "an integer from 1 to 10000"),
        ("plateau_cooldown", -1, "an integer from 0 to 10000"),
        ("plateau_min_delta", -1e-3, "a number in [0, 10]"),
        ("min_lr", -1.0, "a number in [0, 10]"),
    ],
)
def test_bad_schedule_fields_are_one_line_errors(field, value, expected):
    from mnistlab.errors import RecipeError

    with pytest.raises(
        RecipeError,
        match=f"field '{field}': expected {expected}".replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ) as err:
        Recipe(**{field: value}).validate()
    assert "\n" not in str(err.value)


def test_plateau_on_validation_numbers_needs_a_validation_split():
    from mnistlab.errors import RecipeError

    with pytest.raises(RecipeError, match="plateau_monitor.*validation_split is 0"):
        Recipe(schedule="plateau", validation_split=0.0).validate()
    Recipe(schedule="plateau", validation_split=0.0, plateau_monitor="loss").validate()


def test_plateau_run_resumes_bit_identical(tmp_path, monkeypatch):
    """A run interrupted after 2 epochs continues with the plateau factor its history implies."""
    from mnistlab import datasets
    from mnistlab.training import fit as train

    ds = datasets.load("mnist-sample")
    small = dataclasses.replace(ds, x_train=ds.x_train[:600], y_train=ds.y_train[:600])
    # min_delta 10: every epoch after the first is a stall, so the rate halves every epoch
    r = Recipe(
        hidden=[16],
        epochs=4,
        batch_size=32,
        schedule="plateau",
        plateau_patience=1,
        plateau_factor=0.5,
        plateau_min_delta=10.0,
        decay=0.0,
    )
    whole = train.fit(r, small, out=tmp_path / "whole", quiet=True)
    assert [row["learning_rate"] for row in whole.history] == pytest.approx(
        [0.01, 0.01, 0.005, 0.0025]
    )

    real = train.learning_rates

    def interrupt_at_epoch_2(recipe, epoch, steps, history=None):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(recipe, epoch, steps, history)

    monkeypatch.setattr(train, "learning_rates", interrupt_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.fit(r, small, out=tmp_path / "cut", quiet=True)
    monkeypatch.setattr(train, "learning_rates", real)
    resumed = train.fit(out=tmp_path / "cut", resume=True, quiet=True, dataset=small)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in whole.history]
    for k in whole.weights:
        np.testing.assert_array_equal(resumed.weights[k], whole.weights[k], err_msg=k)
