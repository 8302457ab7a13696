"""Per-step learning rates: Keras' inverse-time decay and the schedules on top of it."""

import numpy as np
import pytest

from mnistlab.recipe import Recipe
from mnistlab.schedules import learning_rates, steps_per_epoch


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
    assert [learning_rates(r, e, 4)[0] for e in range(5)] == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])


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
