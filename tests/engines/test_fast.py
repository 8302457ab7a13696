"""The fast engine (both back ends) equals spec.py and the reference engine on every option and
optimizer, is deterministic, resumes bit for bit, and stays torch-free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from mnistlab.engines import fast, spec
from mnistlab.engines.fast import FastEngine, numba_available
from mnistlab.engines.init import init_weights
from mnistlab.engines.masks import dropout_keys, keep_mask
from mnistlab.engines.optim import Hyperparameters
from mnistlab.errors import RecipeError, RunError
from mnistlab.recipe import Recipe
from mnistlab.training.schedules import learning_rates, steps_per_epoch

BACKENDS = [
    "numpy",
    pytest.param(
        "numba", marks=pytest.mark.skipif(not numba_available(), reason="numba not installed")
    ),
]

# Recipes the fast engine runs, chosen to cover every branch of its maths. All have three hidden
# layers: the numba backend compiles once per network depth (~10-30 s on 2 cores, then cached).
CONFIGS = {
    "notebook": {},
    "l2-momentum": {"l2": 1e-3, "nesterov": False},
    "plain-sgd": {"momentum": 0.0, "learning_rate": 0.05},
    "adam": {"optimizer": "adam", "learning_rate": 1e-3},
    "adamw-l2": {"optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 0.01, "l2": 1e-4},
    # rmsprop divides by sqrt(g^2): at lr 1e-3 with momentum it turns float32 rounding of tiny
    # gradients into full steps, and two correct engines drift apart within 2 epochs
    "rmsprop": {"optimizer": "rmsprop", "learning_rate": 1e-4},
    "rmsprop-nomom": {"optimizer": "rmsprop", "learning_rate": 1e-3, "momentum": 0.0},
    "adagrad": {"optimizer": "adagrad"},
    "tanh-smooth": {"activation": "tanh", "label_smoothing": 0.1, "hidden": [32, 16, 16]},
    "sigmoid": {"activation": "sigmoid", "learning_rate": 0.1, "hidden": [24, 24, 16]},
    "nadam": {"optimizer": "nadam", "learning_rate": 1e-3},
    "gelu": {"activation": "gelu", "hidden": [32, 16, 16]},
    "adadelta": {"optimizer": "adadelta", "learning_rate": 1.0},
    "dropout": {"dropout": 0.2},
    "batch-norm": {"batch_norm": True},
    "max-norm": {"max_norm": 1.0, "learning_rate": 0.05},
    # adam on top of these amplifies float32 rounding near ReLU's kink (one weight in 1e5 off
    # by 1e-5 after 2 epochs); its maths is held to spec.py step by step instead
    "combined": {
        "dropout": 0.2,
        "batch_norm": True,
        "l2": 1e-4,
        "max_norm": 2.0,
        "label_smoothing": 0.1,
    },
}


@pytest.fixture(scope="module")
def data():
    """600 standardized training images of the bundled sample (19 steps of 32: the last has 24)."""
    from mnistlab import datasets

    ds = datasets.load("mnist-sample")
    x = ds.x_train[:600].reshape(600, -1).astype(np.float32)
    x = np.ascontiguousarray((x - x.mean()) / x.std())
    return x, ds.y_train[:600].astype(np.int64)


def run(engine, x, y, epochs, start=0):
    """Train ``epochs`` epochs as train.py does; returns the per-epoch (loss, accuracy)."""
    r = engine.recipe
    steps = steps_per_epoch(len(x), r.batch_size)
    out = []
    for epoch in range(start, start + epochs):
        order = np.random.default_rng([r.seed, epoch]).permutation(len(x))
        out.append(engine.train_epoch(x, y, order, learning_rates(r, epoch, steps), epoch))
    return out


# ---- against spec.py ------------------------------------------------------------------------
OPTIONS = {
    "relu": {},
    "l2": {"l2": 1e-2},
    "tanh-smooth": {"activation": "tanh", "label_smoothing": 0.2},
    "sigmoid-l2": {"activation": "sigmoid", "l2": 1e-3},
    "dropout": {"dropout": 0.3},
    "gelu-bn": {"activation": "gelu", "batch_norm": True},
    "batch-norm": {"batch_norm": True},
    "bn-dropout-tanh": {"batch_norm": True, "dropout": 0.2, "activation": "tanh"},
}
OPTIMIZERS = {
    "sgd": {},
    "sgd-plain": {"nesterov": False},
    "adam": {"optimizer": "adam"},
    "adamw-l2": {"optimizer": "adamw", "weight_decay": 0.05, "l2": 1e-3},
    "nadam": {"optimizer": "nadam"},
    "rmsprop": {"optimizer": "rmsprop"},
    "rmsprop-momentum": {"optimizer": "rmsprop", "momentum": 0.5},
    "adagrad": {"optimizer": "adagrad"},
    "adadelta": {"optimizer": "adadelta"},
    "max-norm": {"max_norm": 0.5},
    "bn-nadam": {"optimizer": "nadam", "batch_norm": True},
    "adam-everything": {
        "optimizer": "adam",
        "batch_norm": True,
        "dropout": 0.2,
        "l2": 1e-3,
        "max_norm": 1.0,
        "label_smoothing": 0.1,
    },
}


def _batch(n=16, seed=1):
    """Entries bounded away from 0: a gradient entry is then never a cancellation of float32
    noise (adam-like optimizers divide by its magnitude)."""
    rng = np.random.default_rng(seed)
    x = (rng.choice([-1, 1], (n, 784)) * rng.uniform(0.5, 1.5, (n, 784))).astype(np.float32)
    return x, rng.integers(0, 10, n)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(OPTIONS))
def test_gradients_equal_spec(backend, name, tolerance):
    """One plain-SGD step with lr 1 leaves -gradient in the momentum slot (v = 0*v - 1*g). Each
    tensor to ``G_REL`` of its largest entry: the bound the update test pushes through every
    optimizer (tests/engines/conftest.py)."""
    r = Recipe(
        momentum=0.0, nesterov=False, batch_size=16, hidden=[64, 32, 16], seed=2, **OPTIONS[name]
    )
    x, y = _batch()
    eng = FastEngine(r, init_weights(r), backend=backend)
    loss, _ = eng.train_epoch(x, y, np.arange(16), np.ones(1), epoch=0)
    h = Hyperparameters.of(r)
    p = {k: v.astype(np.float64) for k, v in init_weights(r).items()}
    keys = dropout_keys(h.seed, 0, 1, 3)
    masks = [keep_mask(keys[0, j], 16, w, h.dropout) for j, w in enumerate(r.hidden)]
    want_loss, grads, _ = spec.gradients(
        p, x.astype(np.float64), y, h, masks if h.dropout else None
    )
    assert loss == pytest.approx(want_loss, rel=tolerance.G_REL)
    ours = {
        k[len("opt.momentum.") :]: -v
        for k, v in eng.state().items()
        if k.startswith("opt.momentum.")
    }
    assert set(ours) == set(grads)
    for k, g in grads.items():
        np.testing.assert_allclose(
            ours[k], g, rtol=0, atol=tolerance.G_REL * np.abs(g).max(), err_msg=k
        )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_updates_equal_spec(backend, name, tolerance):
    """Two steps of each optimizer (and max-norm): every weight and slot within the tolerance
    spec.py derives for it from the gradients' float32 rounding (tests/engines/conftest.py)."""
    r = Recipe(batch_size=8, hidden=[32, 16, 16], **OPTIMIZERS[name]).resolved()
    x, y = _batch()
    lrs = np.array([1e-3, 5e-4])
    eng = FastEngine(r, init_weights(r), backend=backend)
    loss, _ = eng.train_epoch(x, y, np.arange(16), lrs, epoch=0)
    losses, want, u_product, tol = tolerance.envelope(r, x, y, lrs)
    assert loss == pytest.approx(np.mean(losses), rel=tolerance.G_REL)
    state = eng.state()
    assert set(state) - {"opt.iterations", "opt.u_product"} == set(want)
    tolerance.assert_within(state, want, tol)
    if r.optimizer == "nadam":
        assert float(state["opt.u_product"]) == pytest.approx(u_product, rel=1e-12)
    else:
        assert "opt.u_product" not in state


def test_envelope_still_catches_a_wrong_update(tolerance):
    """The derived tolerance is no blanket: spec's own steps with the learning rate 1 % off, or
    without Adam's bias correction (lr * sqrt(1-b2)/(1-b1) = lr * 0.32 at step 1), fall
    outside it on most entries."""
    x, y = _batch()
    lrs = np.array([1e-3, 5e-4])
    for name in ("sgd", "adam", "rmsprop", "adam-everything"):
        r = Recipe(batch_size=8, hidden=[32, 16, 16], **OPTIMIZERS[name]).resolved()
        _, want, _, tol = tolerance.envelope(r, x, y, lrs)
        _, off, _ = tolerance.spec_run(r, x, y, lrs * 1.01)
        outside = np.mean(
            np.abs(off["dense_0.kernel"] - want["dense_0.kernel"]) > tol["dense_0.kernel"]
        )
        assert outside > 0.5, (name, outside)
    r = Recipe(batch_size=8, hidden=[32, 16, 16], optimizer="adam").resolved()
    _, want, _, tol = tolerance.envelope(r, x, y, lrs)
    _, off, _ = tolerance.spec_run(r, x, y, lrs * np.sqrt(1 - 0.999) / (1 - 0.9))
    with pytest.raises(pytest.fail.Exception, match="derived tolerance"):
        tolerance.assert_within(off, want, tol)


# ---- equality with the reference engine ---------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_epochs_equal_reference_engine(data, backend, name, tolerance):
    pytest.importorskip("torch")
    from mnistlab.engines.reference import ReferenceEngine

    x, y = data
    r = Recipe(**CONFIGS[name])
    w = init_weights(r)
    ours, ref = FastEngine(r, w, backend=backend), ReferenceEngine(r, w, device="cpu")
    np.testing.assert_allclose(run(ours, x, y, 2), run(ref, x, y, 2), atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.evaluate(x, y), ref.evaluate(x, y), atol=1e-5, rtol=0)
    # relative 1e-4 too: after 38 float32 steps, moving means of size ~1 and adam's steps
    # differ in their last digits
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-5, rtol=1e-4)
    steps = steps_per_epoch(len(x), r.batch_size)
    lrs = np.concatenate([learning_rates(r, epoch, steps) for epoch in range(2)])
    tolerance.engines_agree(ours.state(), ref.state(), r, lrs)


def test_engines_agree_still_catches(data, tolerance):
    """A 1 % larger learning rate is no stray: it moves most entries, and the comparison fails.
    One entry a full step off is a stray for Adam, not for plain SGD."""
    x, y = data
    r = Recipe(**CONFIGS["adam"])
    steps = steps_per_epoch(len(x), r.batch_size)
    lrs = np.concatenate([learning_rates(r, epoch, steps) for epoch in range(2)])
    a = FastEngine(r, init_weights(r))
    b = FastEngine(r.replace(learning_rate=1.01e-3), init_weights(r))
    run(a, x, y, 2), run(b, x, y, 2)
    with pytest.raises(pytest.fail.Exception, match="entries beyond"):
        tolerance.engines_agree(b.state(), a.state(), r, lrs)
    tolerance.engines_agree(a.state(), a.state(), r, lrs)  # and equal states pass
    stray = {k: v.copy() for k, v in a.state().items()}
    stray["dense_0.kernel"][300, 5] += 2 * r.learning_rate
    tolerance.engines_agree(stray, a.state(), r, lrs)
    with pytest.raises(pytest.fail.Exception, match="at most 0 may stray"):
        tolerance.engines_agree(stray, a.state(), r.replace(optimizer="sgd"), lrs)
    stray["dense_0.kernel"][300, 5] += 2 * float(np.sum(lrs))  # further than steps can reach
    with pytest.raises(pytest.fail.Exception, match="by at most"):
        tolerance.engines_agree(stray, a.state(), r, lrs)


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
@pytest.mark.parametrize(
    "name", ["notebook", "adamw-l2", "tanh-smooth", "dropout", "batch-norm", "combined"]
)
def test_numba_backend_equals_numpy_backend(data, name):
    x, y = data
    r = Recipe(**CONFIGS[name])
    a = FastEngine(r, init_weights(r), backend="numpy")
    b = FastEngine(r, init_weights(r), backend="numba")
    np.testing.assert_allclose(run(a, x, y, 2), run(b, x, y, 2), atol=1e-6, rtol=0)
    for k, v in a.state().items():  # adam's m/sqrt(v) lifts rounding of tiny gradients
        np.testing.assert_allclose(b.state()[k], v, atol=1e-5, err_msg=k)


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_numba_adamw_takes_the_l2_gradient_before_the_decay():
    """adamw + l2: the L2 gradient is 2*l2*w of the weights the loss saw (before the decoupled
    decay), as autograd and the numpy backend have it. A decay large enough to show (5 % a step):
    taking it after the decay moved weights by ~4e-2 in two steps."""
    r = Recipe(optimizer="adamw", learning_rate=0.01, weight_decay=5.0, l2=0.05, batch_size=16)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 784)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    a = FastEngine(r, init_weights(r), backend="numpy")
    b = FastEngine(r, init_weights(r), backend="numba")
    for eng in (a, b):
        eng.train_epoch(x, y, np.arange(32), np.full(2, 0.01), epoch=0)
    for k, v in a.state().items():
        np.testing.assert_allclose(b.state()[k], v, atol=1e-4, err_msg=k)


@pytest.mark.skipif(not numba_available(), reason="numba not installed")
def test_numba_products_via_numpy_blas_equal_numba_np_dot(data):
    """Both product routes of the numba backend: NumPy's OpenBLAS (ctypes), scipy's (np.dot)."""
    from mnistlab.engines import fast_numba

    if fast_numba.NUMPY_SGEMM is None:
        pytest.skip("NumPy's OpenBLAS cblas_sgemm64_ not found: numba uses scipy's BLAS only")
    x, y = data
    r = Recipe(l2=1e-4)
    a = FastEngine(r, init_weights(r), backend="numba")
    b = FastEngine(r, init_weights(r), backend="numba", numpy_blas=False)
    np.testing.assert_allclose(run(a, x, y, 2), run(b, x, y, 2), atol=1e-6, rtol=0)
    for k, v in a.state().items():
        np.testing.assert_allclose(b.state()[k], v, atol=1e-5, err_msg=k)


# ---- determinism and state ------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_two_runs_identical_bit_for_bit(data, backend):
    x, y = data
    r = Recipe(optimizer="adam", learning_rate=1e-3, l2=1e-4)
    runs = [FastEngine(r, init_weights(r), backend=backend) for _ in range(2)]
    assert run(runs[0], x, y, 2) == run(runs[1], x, y, 2)
    s0, s1 = runs[0].state(), runs[1].state()
    assert all(np.array_equal(s0[k], s1[k]) for k in s0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["notebook", "rmsprop", "nadam", "dropout", "batch-norm"])
def test_state_round_trip_resumes_exactly(data, backend, name):
    x, y = data
    r = Recipe(**CONFIGS[name])
    straight = FastEngine(r, init_weights(r), backend=backend)
    history = run(straight, x, y, 2)
    first = FastEngine(r, init_weights(r), backend=backend)
    assert run(first, x, y, 1) == history[:1]
    resumed = FastEngine(r, init_weights(Recipe(seed=5, **CONFIGS[name])), backend=backend)
    resumed.load_state(first.state())
    assert run(resumed, x, y, 1, start=1) == history[1:]
    assert all(np.array_equal(v, resumed.state()[k]) for k, v in straight.state().items())
    assert int(straight.state()["opt.iterations"]) == 2 * steps_per_epoch(len(x), 32)


def test_state_moves_to_the_reference_engine(data):
    pytest.importorskip("torch")
    from mnistlab.engines.reference import ReferenceEngine

    x, y = data
    r = Recipe(optimizer="adam", learning_rate=1e-3)
    ours = FastEngine(r, init_weights(r), backend="numpy")
    run(ours, x, y, 1)
    ref = ReferenceEngine(r, init_weights(Recipe(seed=3)), device="cpu")
    ref.load_state(ours.state())
    np.testing.assert_allclose(run(ours, x, y, 1, start=1), run(ref, x, y, 1, start=1), atol=1e-5)


def test_bad_state_and_weights_are_clear_errors():
    r = Recipe()
    eng = FastEngine(r, init_weights(r), backend="numpy")
    state = eng.state()
    del state["opt.momentum.dense_2.bias"]
    with pytest.raises(RunError, match="opt.momentum.dense_2.bias"):
        eng.load_state(state)
    with pytest.raises(RunError, match="opt.iterations"):
        eng.load_state({k: v for k, v in eng.state().items() if k != "opt.iterations"})
    bad = init_weights(r)
    bad["dense_1.kernel"] = bad["dense_1.kernel"][:, :5]
    with pytest.raises(RunError, match="dense_1.kernel"):
        FastEngine(r, bad, backend="numpy")
    with pytest.raises(RunError, match="missing"):
        FastEngine(Recipe(hidden=[128, 128, 128, 64]), init_weights(r), backend="numpy")


@pytest.mark.parametrize("backend", BACKENDS)
def test_inconsistent_inputs_are_errors_not_memory_reads(data, backend):
    x, y = data
    eng = FastEngine(Recipe(), init_weights(Recipe()), backend=backend)
    order, lrs = np.arange(len(x)), np.full(19, 0.01)
    with pytest.raises(ValueError, match="learning rates"):
        eng.train_epoch(x, y, order, lrs[:3], epoch=0)
    with pytest.raises(ValueError, match="order"):
        eng.train_epoch(x, y, order + 1, lrs, epoch=0)
    with pytest.raises(ValueError, match="labels"):
        eng.train_epoch(x, np.where(y == 3, 10, y), order, lrs, epoch=0)
    with pytest.raises(ValueError, match="expected"):
        eng.train_epoch(x[:, :700], y, order, lrs, epoch=0)
    assert eng.iterations == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_pixels_diverge_to_nan_as_in_keras(backend):
    """The notebook's failure: unscaled pixels (std 78) at lr 0.01 give a NaN loss in epoch 1."""
    from mnistlab import datasets

    ds = datasets.load("mnist-sample")
    x = np.ascontiguousarray(ds.x_train[:2000].reshape(2000, -1), dtype=np.float32)
    y = ds.y_train[:2000].astype(np.int64)
    r = Recipe(normalize="none")
    eng = FastEngine(r, init_weights(r), backend=backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning noise on the way
        loss, acc = run(eng, x, y, 1)[0]
        val_loss, _ = eng.evaluate(x, y)
    assert np.isnan(loss) and np.isnan(val_loss) and acc < 0.2


@pytest.mark.slow
@pytest.mark.parametrize("option", ["--dropout=0.2", "--batch-norm"])
def test_resume_after_sigkill_is_bit_identical(tmp_path, option):
    """A run killed mid-epoch and resumed ends with the very weights (batch norm's moving
    statistics included) and history of an uninterrupted one: dropout masks replay."""
    from mnistlab import rundir
    from mnistlab.training.fit import fit

    flags = [
        "--dataset",
        "mnist-sample",
        "--hidden",
        "128",
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--engine",
        "fast",
        "--validation-split",
        "0.3",
        option,
        "--quiet",
    ]
    run_dir = tmp_path / "killed"
    env = {**os.environ, "MNISTLAB_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnistlab", "train", *flags, "--out", str(run_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ckpt = run_dir / rundir.CHECKPOINT
    deadline = time.monotonic() + 120
    try:
        while not ckpt.exists():  # written atomically: existing means complete
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (run_dir / rundir.MODEL).exists(), "the run finished before the kill"
    resumed = fit(out=run_dir, resume=True, quiet=True)
    whole = fit(
        Recipe(
            hidden=[128],
            epochs=4,
            batch_size=8,
            engine="fast",
            dataset="mnist-sample",
            **({"dropout": 0.2} if "dropout" in option else {"batch_norm": True}),
        ),
        out=tmp_path / "whole",
        quiet=True,
    )
    assert resumed.environment["resumed"][0]["after_epoch"] >= 1
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in whole.history]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in resumed.history] == strip
    assert sorted(resumed.weights) == sorted(whole.weights)
    for k, v in whole.weights.items():
        np.testing.assert_array_equal(resumed.weights[k], v, err_msg=k)
    assert resumed.metrics["test"] == whole.metrics["test"]


# ---- what the engine refuses, what each option adds ------------------------------------------
def test_unsupported_recipes_say_why(monkeypatch):
    """A CNN trains on the numba back end only: without numba the fast engine refuses it (and
    says why), yet still predicts with it (NumPy inference)."""
    monkeypatch.setattr(fast, "numba_available", lambda: False)
    r, words = Recipe(kind="cnn"), "kind 'cnn'"
    reason = FastEngine.unsupported(r)
    assert reason is not None and words in reason and "numba" in reason
    assert FastEngine.unsupported(r, inference=True) is None
    with pytest.raises(RecipeError, match=words):
        FastEngine(r, init_weights(r))
    from mnistlab.engines import make_engine

    with pytest.raises(RecipeError, match=words):
        make_engine(r.replace(engine="fast"), init_weights(r))
    monkeypatch.undo()
    with pytest.raises(RecipeError, match="numba back end only"):
        FastEngine(r, init_weights(r), backend="numpy")


def test_cli_engine_fast_on_cuda_is_a_one_line_error(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnistlab",
            "train",
            "--kind",
            "cnn",
            "--engine",
            "fast",
            "--device",
            "cuda",
            "--dataset",
            "mnist-sample",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MNISTLAB_HOME": str(tmp_path / "home")},
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    assert "engine" in p.stderr and "CPU only" in p.stderr


@pytest.mark.parametrize(
    "kw, added",
    [
        ({}, set()),
        ({"dropout": 0.5}, set()),
        ({"max_norm": 3.0}, set()),
        (
            {"batch_norm": True},
            {
                f"bn_{i}.{p}"
                for i in range(2)
                for p in ("gamma", "beta", "moving_mean", "moving_variance")
            }
            | {f"opt.momentum.bn_{i}.{p}" for i in range(2) for p in ("gamma", "beta")},
        ),
        ({"optimizer": "nadam", "momentum": 0.0}, {"opt.u_product"}),
    ],
)
def test_each_option_adds_the_state_it_declares(kw, added):
    base = Recipe(hidden=[6, 5])
    r = base.replace(**kw)
    eng = FastEngine(r, init_weights(r), backend="numpy")
    plain = set(FastEngine(base, init_weights(base), backend="numpy").state())
    if r.optimizer == "nadam":
        plain = {k.replace("opt.momentum.", "opt.m.") for k in plain} | {
            k.replace("opt.momentum.", "opt.v.") for k in plain if "momentum" in k
        }
    assert set(eng.state()) - plain == added
    assert set(eng.weights()) == set(init_weights(r))
    n_params = sum(v.size for k, v in eng.weights().items() if "moving" not in k)
    want = sum(
        v.size
        for v in spec.init_slots({k: v for k, v in init_weights(r).items()}, Hyperparameters.of(r))[
            "m" if r.optimizer == "nadam" else "momentum"
        ].values()
    )
    assert n_params == want == eng.st.theta.size


@pytest.mark.parametrize("backend", BACKENDS)
def test_inference_has_no_dropout_and_uses_moving_statistics(data, backend):
    x, y = data
    r = Recipe(hidden=[32, 16], dropout=0.5, batch_norm=True, l2=1e-3, label_smoothing=0.1)
    eng = FastEngine(r, init_weights(r), backend=backend)
    run(eng, x, y, 1)
    w = eng.weights()
    assert not np.all(w["bn_0.moving_mean"] == 0) and not np.all(w["bn_0.moving_variance"] == 1)
    p = {k: v.astype(np.float64) for k, v in w.items()}
    want = spec.predict_proba(p, x.astype(np.float64), Hyperparameters.of(r))
    np.testing.assert_allclose(eng.predict_proba(x), want, atol=1e-5)
    np.testing.assert_allclose(fast.predict_proba(r, w, x), want, atol=1e-5)
    loss, acc = eng.evaluate(x, y)
    logits_loss = spec.loss_and_dlogits(np.log(want), y, p, Hyperparameters.of(r))[0]
    assert loss == pytest.approx(logits_loss, abs=1e-5)
    assert acc == np.mean(want.argmax(1) == y)
    assert eng.evaluate(x, y) == (loss, acc)  # deterministic: no mask drawn


def test_batch_size_larger_than_the_data_allocates_for_the_data():
    r = Recipe(hidden=[8], batch_size=60_000)
    x, y = _batch(20)
    eng = FastEngine(r, init_weights(r), backend="numpy")
    eng.train_epoch(x, y, np.arange(20), np.full(1, 0.01), epoch=0)
    assert eng._ws.rows == 20 and eng._ws.h_flat.nbytes < 1e6


def test_fast_engine_follows_the_protocol():
    from mnistlab.engines import Engine, make_engine

    eng = make_engine(Recipe(hidden=[4], engine="fast"), init_weights(Recipe(hidden=[4])))
    assert isinstance(eng, Engine) and eng.reason == "asked for in the recipe"
    assert eng.backend in ("numpy", "numba") and eng.threads == 1 and eng.device == "cpu"


def test_default_backend_is_numba_for_small_batches_only():
    small, large = Recipe(batch_size=32), Recipe(batch_size=128)
    assert FastEngine(small, init_weights(small)).backend == (
        "numba" if numba_available() else "numpy"
    )
    assert FastEngine(large, init_weights(large)).backend == "numpy"
    with pytest.raises(ValueError, match="backend"):
        FastEngine(small, init_weights(small), backend="cuda")


def test_supported_recipes_have_no_reason():
    for kw in CONFIGS.values():
        assert FastEngine.unsupported(Recipe(**kw)) is None
    with pytest.raises(RecipeError, match="CPU only"):
        FastEngine(Recipe(), init_weights(Recipe()), device="cuda")


# ---- inference -----------------------------------------------------------------------------
def test_predict_proba_is_a_stable_softmax():
    r = Recipe(hidden=[8])
    w = init_weights(r)
    w["dense_1.bias"][:] = np.array([1e4, -1e4] + [0] * 8, np.float32)  # would overflow exp
    x = np.random.default_rng(0).standard_normal((25, 784)).astype(np.float32)
    p = fast.predict_proba(r, w, x, batch_size=10)  # several batches, ragged end
    assert p.dtype == np.float32 and p.shape == (25, 10)
    assert np.isfinite(p).all() and np.allclose(p.sum(axis=1), 1)
    assert (p.argmax(axis=1) == 0).all()


def test_evaluate_counts_l2_and_accuracy(data):
    x, y = data
    r = Recipe(l2=0.01)
    eng = FastEngine(r, init_weights(r), backend="numpy")
    loss, acc = eng.evaluate(x, y)
    p = eng.predict_proba(x).astype(np.float64)
    ce = -np.log(p[np.arange(len(y)), y]).mean()
    assert loss == pytest.approx(ce + 0.01 * eng.l2_penalty(), abs=1e-5)
    assert acc == np.mean(p.argmax(axis=1) == y)


def test_importing_and_training_does_not_import_torch():
    backend = "numba" if numba_available() else "numpy"
    code = (
        "import sys, numpy as np\n"
        "from mnistlab.engines import fast\n"
        "from mnistlab.recipe import Recipe\n"
        "from mnistlab.engines.init import init_weights\n"
        "r = Recipe(hidden=[8, 8, 8], batch_size=4)\n"
        f"e = fast.FastEngine(r, init_weights(r), backend={backend!r})\n"
        "x = np.ones((8, 784), np.float32)\n"
        "e.train_epoch(x, np.arange(8), np.arange(8), np.full(2, 0.01), 0)\n"
        "e.evaluate(x, np.arange(8)); fast.predict_proba(r, e.weights(), x)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
