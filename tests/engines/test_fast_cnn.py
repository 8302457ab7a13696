"""The fast engine's CNN equals spec.py (gradients, then each optimizer's update given the same
gradient) and the torch engine (whole epochs, same dropout masks), is deterministic for a given
thread count, resumes bit for bit, and trains, evaluates and predicts without torch.

Tolerances follow from float32: a gradient is a sum of up to ~10^4 float32 products, ~1e-7
relative each, so the fast engine's gradients are held to 1e-5 of each tensor's largest entry;
an update given the same gradient is a few float32 operations per weight, so weights and slots
are held to 1e-6 of their own size (plus the step's). The inputs are continuous and checked to
keep every pool window's winner and every relu's sign far (1e-5 relative) from a tie, where
float32 rounding could route a gradient elsewhere than float64 does.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mnistlab.engines import fast, fast_conv, spec
from mnistlab.engines.fast import FastEngine, numba_available
from mnistlab.engines.init import init_weights
from mnistlab.engines.masks import dropout_keys, keep_mask
from mnistlab.engines.optim import Hyperparameters
from mnistlab.errors import RunError
from mnistlab.recipe import Recipe
from mnistlab.training.schedules import learning_rates, steps_per_epoch

pytestmark = pytest.mark.skipif(not numba_available(), reason="a CNN trains on numba only")
fast_conv_numba = pytest.importorskip("mnistlab.engines.fast_conv_numba")

SMALL = {"kind": "cnn", "conv_channels": [4, 6], "hidden": [16], "batch_size": 8}
SPARSE = fast_conv_numba.SPARSE_MIN_CHANNELS  # input channels from which a block scatters
# Every branch of the conv blocks: kernel sizes odd and even, an odd side (7 -> 3 -> 1),
# one input channel after the first block, two threads, both backward passes (dZ's products
# below SPARSE input channels, the scatter from it); with the Dense layers' options.
OPTIONS = {
    "3x3": {},
    "two-threads": {"threads": 2},
    "odd-side": {"conv_channels": [3, 4, 5]},
    "5x5": {"kernel_size": 5, "conv_channels": [3, 5, 4]},
    "5x5-one-channel": {"kernel_size": 5, "conv_channels": [1, 3]},
    "scatter-odd-side": {"conv_channels": [SPARSE, SPARSE + 1, 5]},
    "scatter-5x5-two-threads": {"kernel_size": 5, "conv_channels": [SPARSE, 3], "threads": 2},
    "dropout-bn-smooth": {"dropout": 0.3, "batch_norm": True, "label_smoothing": 0.1},
    "tanh-l2-max-norm": {"activation": "tanh", "l2": 1e-2, "max_norm": 0.5},
}
OPTIMIZERS = {
    "sgd": {"optimizer": "sgd"},
    "sgd-plain": {"optimizer": "sgd", "nesterov": False},
    "adam": {"optimizer": "adam"},
    "adamw-l2": {"optimizer": "adamw", "weight_decay": 0.05, "l2": 1e-3},
    "nadam": {"optimizer": "nadam"},
    "rmsprop": {"optimizer": "rmsprop"},
    "rmsprop-momentum": {"optimizer": "rmsprop", "momentum": 0.5},
    "adagrad": {"optimizer": "adagrad"},
    "adadelta": {"optimizer": "adadelta", "learning_rate": 1.0},
    "max-norm-bn": {"optimizer": "adam", "max_norm": 0.3, "batch_norm": True},
}


def _batch(n=16, seed=1):
    """Continuous inputs bounded away from 0 (as the MLP tests' batches)."""
    rng = np.random.default_rng(seed)
    x = (rng.choice([-1, 1], (n, 784)) * rng.uniform(0.5, 1.5, (n, 784))).astype(np.float32)
    return x, rng.integers(0, 10, n)


def _f64(weights: dict) -> dict:
    return {k: np.asarray(v, np.float64) for k, v in weights.items()}


def far_from_ties(p: dict, x: np.ndarray) -> bool:
    """Whether every pool window's largest conv output leads the next by 1e-5 of the block's
    scale and every pooled value is 1e-5 of it away from relu's kink: float32 rounding (~1e-7 of
    it here) then routes each gradient where float64 does."""
    caches: list = []
    spec.conv_features(p, x.astype(np.float64), caches)
    for j, c in enumerate(caches):
        kernel = p[f"conv_{j}.kernel"]
        z = c["col"] @ kernel.reshape(-1, kernel.shape[3]) + p[f"conv_{j}.bias"]
        b, side, _, ch = z.shape
        half = side // 2
        w = z[:, : 2 * half, : 2 * half].reshape(b, half, 2, half, 2, ch)
        top = np.sort(w.transpose(0, 1, 3, 5, 2, 4).reshape(-1, 4), axis=1)
        margin = min((top[:, 3] - top[:, 2]).min(), np.abs(top[:, 3]).min())
        if margin <= 1e-5 * np.abs(z).max():
            return False
    return True


def untied_batch(weights: dict, n: int = 8, start: int = 1):
    """(x, y, next seed): the first seeded batch from ``start`` on that keeps the network
    ``weights`` far from ties."""
    p = _f64(weights)
    for seed in range(start, start + 200):
        x, y = _batch(n, seed)
        if far_from_ties(p, x):
            return x, y, seed + 1
    raise AssertionError("no batch far from ties")


def _masks(h: Hyperparameters, r: Recipe, rows: int, step: int = 0, epoch: int = 0):
    if not h.dropout:
        return None
    keys = dropout_keys(h.seed, epoch, step + 1, len(r.hidden))
    return [keep_mask(keys[step, j], rows, w, h.dropout) for j, w in enumerate(r.hidden)]


def gradient_of(r: Recipe, weights: dict, x, y) -> dict:
    """The fast engine's gradient at ``weights``: one plain-SGD step at lr 1 leaves -gradient in
    the momentum slot (v = 0*v - 1*g)."""
    sgd = r.replace(optimizer="sgd", momentum=0.0, nesterov=False, max_norm=0.0)
    eng = FastEngine(sgd, weights)
    eng.train_epoch(x, y, np.arange(len(x)), np.ones(1), epoch=0)
    pre = "opt.momentum."
    return {k[len(pre) :]: -v for k, v in eng.state().items() if k.startswith(pre)}


# ---- against spec.py ------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(OPTIONS))
def test_gradients_equal_spec(name):
    r = Recipe(**{**SMALL, "seed": 2, **OPTIONS[name]})
    p = _f64(init_weights(r))
    x, y, _ = untied_batch(p)
    h = Hyperparameters.of(r)
    want_loss, grads, _ = spec.gradients(p, x.astype(np.float64), y, h, _masks(h, r, 8))
    eng = FastEngine(r.replace(optimizer="sgd", momentum=0.0, nesterov=False), init_weights(r))
    loss, _ = eng.train_epoch(x, y, np.arange(8), np.ones(1), epoch=0)
    assert loss == pytest.approx(want_loss, rel=1e-6)
    ours = gradient_of(r, init_weights(r), x, y)
    assert set(ours) == set(grads)
    for k, g in grads.items():
        scale = np.abs(g).max()
        assert np.abs(ours[k] - g).max() <= 1e-5 * scale, k


def _close(got: np.ndarray, want: np.ndarray, before: np.ndarray, what: str) -> None:
    """Within a few float32 roundings of the value and of the step that made it."""
    tol = 1e-6 * (np.abs(want) + np.abs(want - before)) + np.finfo(np.float32).tiny
    assert (np.abs(got - want) <= tol).all(), (what, np.abs(got - want).max())


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_updates_equal_spec_given_the_same_gradient(name):
    """Two steps of each optimizer; before each, the fast engine's own gradient at its current
    weights goes through spec.update in float64, from the fast engine's slots."""
    r = Recipe(**{**SMALL, "learning_rate": 1e-3, **OPTIMIZERS[name]}).resolved()
    x, y = _batch(8)
    h = Hyperparameters.of(r)
    eng = FastEngine(r, init_weights(r))
    state = eng.state()
    for step, lr in enumerate([1e-3, 5e-4]):
        weights = {k: v for k, v in state.items() if not k.startswith("opt.")}
        g = _f64(gradient_of(r, weights, x, y))
        p = _f64(weights)
        slots = {s: {k: state[f"opt.{s}.{k}"].astype(np.float64) for k in g} for s in eng.st.slots}
        slots["u_product"] = float(state.get("opt.u_product", 1.0))
        spec.update(p, g, slots, step + 1, float(np.float32(lr)), h)
        eng.train_epoch(x, y, np.arange(8), np.array([lr]), epoch=step)
        after = eng.state()
        for k in g:
            _close(after[k], p[k], weights[k], k)
            for s in eng.st.slots:
                _close(after[f"opt.{s}.{k}"], slots[s][k], state[f"opt.{s}.{k}"], f"{s}.{k}")
        state = after


@pytest.mark.parametrize("k, channels", [(3, [3, 4, 5]), (1, [1, 4]), (5, [SPARSE, 2, 3])])
def test_inference_equals_spec_in_chunks(monkeypatch, k, channels):
    """evaluate / predict_proba (the compiled forward pass) and the predictor's NumPy forward
    pass (moving statistics, no dropout) equal spec's inference, also image by image."""
    r = Recipe(**{**SMALL, "kernel_size": k, "conv_channels": channels})
    r = r.replace(batch_norm=True, dropout=0.5)
    x, y = _batch(24)
    eng = FastEngine(r, init_weights(r))
    eng.train_epoch(x, y, np.arange(24), np.full(3, 0.01), epoch=0)
    w = eng.weights()
    want = spec.predict_proba(_f64(w), x.astype(np.float64), Hyperparameters.of(r))
    np.testing.assert_allclose(eng.predict_proba(x), want, rtol=1e-5, atol=1e-7)
    monkeypatch.setattr(fast_conv, "EVAL_FLOATS", 1)  # one image per chunk
    assert fast_conv.eval_batch(w) == 1
    np.testing.assert_allclose(fast.predict_proba(r, w, x), want, rtol=1e-5, atol=1e-7)
    loss, acc = eng.evaluate(x, y)
    assert loss == pytest.approx(-np.log(want[np.arange(24), y]).mean(), rel=1e-6)
    assert acc == np.mean(want.argmax(1) == y)


# ---- against the torch engine ---------------------------------------------------------------
# Over many steps, a pool window whose two best values lie within float32 rounding of each other
# (or a pooled value at relu's kink) sends a gradient wherever the engine's rounding decides: two
# correct engines then part by ~1e-4 and drift (on MNIST's digits, about once in two epochs of
# 600 images). The comparisons across engines and thread counts therefore train in lockstep on
# continuous inputs, each batch chosen to keep every such decision 1e-5 clear of a tie for the
# weights of that step, so they hold on any CPU.
def lockstep(engines, steps=8, n=16):
    """Train ``engines`` on the same one-step epochs k = 0, 1, ... (dropout keyed by k); returns
    each engine's (loss, accuracy) per step."""
    out: list[list] = [[] for _ in engines]
    seed = 100
    for k in range(steps):
        x, y, seed = untied_batch(engines[0].weights(), n, start=seed)
        for eng, history in zip(engines, out):
            lr = np.array([eng.recipe.learning_rate])
            history.append(eng.train_epoch(x, y, np.arange(n), lr, epoch=k))
    return out


CONFIGS = {  # conv [4, 8] unless given: block 1 through dZ's products
    "sgd": {},
    "adam-two-threads-scatter": {
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "threads": 2,
        "conv_channels": [SPARSE, SPARSE],
    },
    "dropout-smooth-odd-scatter": {
        "dropout": 0.3,
        "label_smoothing": 0.1,
        "conv_channels": [SPARSE, SPARSE, 10],
    },
    "nadam-5x5": {"optimizer": "nadam", "learning_rate": 3e-4, "kernel_size": 5},
    "bn-l2-max-norm-5x5": {"batch_norm": True, "l2": 1e-3, "max_norm": 2.0, "kernel_size": 5},
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_steps_equal_the_torch_engine(name, tolerance):
    """The same eight steps (same dropout masks) on both engines: losses, accuracies, weights,
    optimizer slots, moving statistics and inference to 1e-5."""
    pytest.importorskip("torch")
    from mnistlab.engines.reference import ReferenceEngine

    r = Recipe(**{**SMALL, "batch_size": 16, "conv_channels": [4, 8], **CONFIGS[name]})
    w = init_weights(r)
    ours, ref = FastEngine(r, w), ReferenceEngine(r.replace(threads=1), w, device="cpu")
    mine, theirs = lockstep([ours, ref])
    np.testing.assert_allclose(mine, theirs, atol=1e-5, rtol=0)
    x, y, _ = untied_batch(ours.weights(), 32, start=7)
    np.testing.assert_allclose(ours.evaluate(x, y), ref.evaluate(x, y), atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-5, rtol=1e-4)
    # checkpoint names and HWIO layouts are shared
    tolerance.engines_agree(ours.state(), ref.state(), r, np.full(8, r.learning_rate))


def test_state_moves_between_the_engines():
    pytest.importorskip("torch")
    from mnistlab.engines.reference import ReferenceEngine

    r = Recipe(**{**SMALL, "batch_size": 16, "optimizer": "adam", "learning_rate": 1e-3})
    ours = FastEngine(r, init_weights(r))
    lockstep([ours], steps=3)
    ref = ReferenceEngine(r.replace(threads=1), init_weights(r.replace(seed=3)), device="cpu")
    ref.load_state(ours.state())
    back = FastEngine(r, init_weights(r.replace(seed=4)))
    back.load_state(ref.state())
    assert int(back.state()["opt.iterations"]) == 3
    mine, theirs = lockstep([back, ref], steps=3)
    np.testing.assert_allclose(mine, theirs, atol=1e-5, rtol=0)
    for k, v in ref.state().items():
        np.testing.assert_allclose(back.state()[k], v, atol=1e-5, rtol=1e-4, err_msg=k)


def test_thread_counts_agree_within_rounding():
    r = Recipe(**{**SMALL, "batch_size": 16})
    one, three = (FastEngine(r.replace(threads=t), init_weights(r)) for t in (1, 3))
    np.testing.assert_allclose(*lockstep([one, three]), atol=1e-6, rtol=0)
    for k, v in one.weights().items():
        np.testing.assert_allclose(three.weights()[k], v, atol=1e-6, err_msg=k)


# ---- determinism, state ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    """600 standardized images of the bundled sample: 19 steps of 32, the last one 24."""
    from mnistlab import datasets

    ds = datasets.load("mnist-sample")
    x = ds.x_train[:600].reshape(600, -1).astype(np.float32)
    x = np.ascontiguousarray((x - x.mean()) / x.std())
    return x, ds.y_train[:600].astype(np.int64)


def run(engine, x, y, epochs, start=0):
    r = engine.recipe
    steps = steps_per_epoch(len(x), r.batch_size)
    out = []
    for epoch in range(start, start + epochs):
        order = np.random.default_rng([r.seed, epoch]).permutation(len(x))
        out.append(engine.train_epoch(x, y, order, learning_rates(r, epoch, steps), epoch))
    return out


@pytest.mark.parametrize("threads", [1, 2])
def test_two_runs_identical_bit_for_bit_and_resume_exactly(data, threads):
    x, y = data
    r = Recipe(**{**SMALL, "batch_size": 32, "optimizer": "adam", "dropout": 0.2})
    r = r.replace(learning_rate=1e-3, threads=threads)
    straight = FastEngine(r, init_weights(r))
    history = run(straight, x, y, 2)
    first = FastEngine(r, init_weights(r))
    assert run(first, x, y, 1) == history[:1]
    resumed = FastEngine(r, init_weights(r.replace(seed=5)))
    resumed.load_state(first.state())
    assert run(resumed, x, y, 1, start=1) == history[1:]
    for k, v in straight.state().items():
        assert np.array_equal(v, resumed.state()[k]), k


def test_bad_state_is_a_clear_error():
    r = Recipe(**SMALL)
    eng = FastEngine(r, init_weights(r))
    state = eng.state()
    assert {"conv_1.kernel", "opt.momentum.conv_0.bias"} <= set(state)
    assert state["conv_1.kernel"].shape == (3, 3, 4, 6)  # HWIO, as Keras
    del state["opt.momentum.conv_0.bias"]
    with pytest.raises(RunError, match="opt.momentum.conv_0.bias"):
        eng.load_state(state)
    bad = init_weights(r)
    bad["conv_0.kernel"] = bad["conv_0.kernel"][:, :, :, :3]
    with pytest.raises(RunError, match="conv_0.kernel"):
        FastEngine(r, bad)


def test_inputs_that_do_not_fit_are_errors():
    r = Recipe(**SMALL)
    eng = FastEngine(r, init_weights(r))
    x, y = _batch(8)
    with pytest.raises(ValueError, match=r"expected \(N, 784\)"):
        eng.train_epoch(x[:, :700], y, np.arange(8), np.ones(1), epoch=0)
    assert eng.iterations == 0


# ---- the engine choice and no torch ---------------------------------------------------------
def test_auto_picks_the_fast_engine_for_a_cnn_on_the_cpu(monkeypatch):
    import mnistlab.engines as engines

    monkeypatch.setattr(engines, "cuda_present", lambda: False)
    for preset in ("fast-cnn", "best-cnn"):
        from mnistlab.recipe import load_preset

        assert engines.choose_engine(load_preset(preset))[0] == "fast"
    eng = engines.make_engine(Recipe(**SMALL), init_weights(Recipe(**SMALL)))
    assert eng.name == "fast" and eng.backend == "numba"


def test_a_cnn_trains_evaluates_and_predicts_without_torch():
    code = (
        "import sys, numpy as np\n"
        "from mnistlab.engines import predictor\n"
        "from mnistlab.engines.fast import FastEngine\n"
        "from mnistlab.engines.init import init_weights\n"
        "from mnistlab.recipe import Recipe\n"
        "r = Recipe(kind='cnn', conv_channels=[2, 3], hidden=[8], batch_size=4)\n"
        "x = np.ones((8, 784), np.float32)\n"
        "p = predictor(r, init_weights(r))(x)\n"
        "assert p.shape == (8, 10) and 'numba' not in sys.modules, 'numba for inference'\n"
        "e = FastEngine(r, init_weights(r))\n"
        "e.train_epoch(x, np.arange(8), np.arange(8), np.full(2, 0.01), 0)\n"
        "e.evaluate(x, np.arange(8)); e.predict_proba(x)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_both_product_routes_train_the_same():
    """The conv products through NumPy's OpenBLAS (ctypes sgemm, accumulating in place) and
    through numba's np.dot (a scratch product added on): the same steps."""
    from mnistlab.engines import fast_numba

    if fast_numba.NUMPY_SGEMM is None:
        pytest.skip("NumPy's OpenBLAS cblas_sgemm64_ not found: numba uses scipy's BLAS only")
    r = Recipe(**{**SMALL, "batch_size": 16, "optimizer": "adam", "learning_rate": 1e-3})
    a = FastEngine(r, init_weights(r))
    b = FastEngine(r, init_weights(r), numpy_blas=False)
    mine, theirs = lockstep([a, b], steps=4)
    np.testing.assert_allclose(mine, theirs, atol=1e-6, rtol=0)
    for k, v in a.state().items():
        np.testing.assert_allclose(b.state()[k], v, atol=1e-6, rtol=1e-5, err_msg=k)
