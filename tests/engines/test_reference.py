"""engines/__init__.py + engines/reference.py: engine choice, device choice, Keras-exact updates."""

import numpy as np
import pytest

pytest.importorskip("torch")

import mnistlab.engines as engines  # noqa: E402
from mnistlab.engines import choose_engine, cuda_present, device, make_engine, select_device  # noqa: E402
from mnistlab.engines.init import init_weights  # noqa: E402
from mnistlab.engines.protocol import Engine
from mnistlab.engines.reference import ReferenceEngine  # noqa: E402
from mnistlab.errors import RecipeError  # noqa: E402
from mnistlab.recipe import Recipe  # noqa: E402

RNG = np.random.default_rng(1)
# Entries bounded away from 0: a gradient entry is then never a cancellation of float32 noise
# (Adam divides by its magnitude, so a near-zero entry would test rounding, not formulas).
X = (RNG.choice([-1, 1], size=(4, 784)) * RNG.uniform(0.5, 1.5, size=(4, 784))).astype(np.float32)
Y = np.array([3, 1, 4, 1], dtype=np.int64)


@pytest.mark.parametrize(
    "kw",
    [
        {"optimizer": "sgd", "nesterov": True},
        {"optimizer": "sgd", "nesterov": False},
        {"optimizer": "adam"},
        {"optimizer": "adamw", "weight_decay": 0.05, "l2": 1e-3},
        {"optimizer": "nadam"},
        {"optimizer": "rmsprop"},
        {"optimizer": "rmsprop", "momentum": 0.5},
        {"optimizer": "adagrad"},
        {"optimizer": "adadelta"},
        {"max_norm": 0.5},
        {"optimizer": "adam", "dropout": 0.3, "batch_norm": True, "label_smoothing": 0.1},
        {"kind": "cnn", "conv_channels": [2], "dropout": 0.2, "max_norm": 0.5},
    ],
    ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()),
)
def test_two_steps_equal_spec(kw, tolerance):
    """Two steps against spec.py, every weight and slot within the tolerance spec.py derives for
    it from float32 gradients (tests/engines/conftest.py). CNNs: the Dense part's maths is
    spec's, the conv part is torch's own, so a CNN is checked for finite, moving weights and
    max-norm only."""
    r = Recipe(hidden=[8], batch_size=2, shuffle=False, **kw).resolved()
    lrs = np.array([0.01, 0.005])
    eng = ReferenceEngine(r, init_weights(r), device="cpu")
    eng.train_epoch(X, Y, np.arange(4), lrs, epoch=0)
    assert int(eng.state()["opt.iterations"]) == 2
    got = eng.state()
    if r.kind == "cnn":
        w0 = init_weights(r)
        assert all(np.isfinite(v).all() for v in got.values())
        assert not np.array_equal(got["conv_0.kernel"], w0["conv_0.kernel"])
        assert np.linalg.norm(got["dense_0.kernel"], axis=0).max() <= 0.5 + 1e-6
        return
    _, want, _, tol = tolerance.envelope(r, X, Y, lrs)
    assert set(got) - {"opt.iterations", "opt.u_product"} == set(want)
    tolerance.assert_within(got, want, tol)


def test_reported_loss_is_sample_weighted_mean_of_batch_losses_plus_l2():
    r = Recipe(hidden=[], batch_size=3, l2=0.01)
    eng = ReferenceEngine(r, init_weights(r), device="cpu")
    w = init_weights(r)
    loss, _ = eng.train_epoch(X, Y, np.arange(4), np.zeros(2), epoch=0)  # lr 0: weights fixed
    z = X.astype(np.float64) @ w["dense_0.kernel"]
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    ce = -logp[np.arange(4), Y]
    penalty = 0.01 * (w["dense_0.kernel"].astype(np.float64) ** 2).sum()
    want = (3 * (ce[:3].mean() + penalty) + 1 * (ce[3] + penalty)) / 4
    assert loss == pytest.approx(want, rel=1e-5)
    ev_loss, _ = eng.evaluate(X, Y)
    assert ev_loss == pytest.approx(ce.mean() + penalty, rel=1e-5)


def test_state_round_trip_continues_identically():
    r = Recipe(hidden=[8], optimizer="adam", batch_size=2, dropout=0.2)
    a = ReferenceEngine(r, init_weights(r), device="cpu")
    lrs = np.full(2, 1e-3)
    a.train_epoch(X, Y, np.arange(4), lrs, epoch=0)
    b = ReferenceEngine(r, init_weights(r), device="cpu")
    b.load_state(a.state())
    ra = a.train_epoch(X, Y, np.array([3, 2, 1, 0]), lrs, epoch=1)
    rb = b.train_epoch(X, Y, np.array([3, 2, 1, 0]), lrs, epoch=1)
    assert ra == rb
    for k, v in a.state().items():
        np.testing.assert_array_equal(v, b.state()[k], err_msg=k)


def test_dropout_masks_depend_on_seed_and_epoch_only():
    r = Recipe(hidden=[32], dropout=0.5, batch_size=4)

    def run(epoch):
        eng = ReferenceEngine(r, init_weights(r), device="cpu")
        eng.train_epoch(X, Y, np.arange(4), np.full(1, 0.1), epoch=epoch)
        return eng.weights()["dense_0.kernel"]

    np.testing.assert_array_equal(run(0), run(0))
    assert not np.array_equal(run(0), run(1))


def test_engines_follow_the_protocol():
    r = Recipe(hidden=[4])
    eng = make_engine(r.replace(engine="reference"), init_weights(r))
    assert isinstance(eng, Engine) and eng.backend == "torch" and eng.reason


def test_cnn_and_batch_norm_train_and_predict():
    for r in (
        Recipe(kind="cnn", conv_channels=[2], hidden=[8], batch_size=2),
        Recipe(hidden=[8], batch_norm=True, batch_size=2, optimizer="rmsprop"),
    ):
        eng = make_engine(r.replace(engine="reference"), init_weights(r))
        assert eng.name == "reference"
        loss, acc = eng.train_epoch(X, Y, np.arange(4), np.full(2, 0.01), epoch=0)
        assert np.isfinite(loss) and 0 <= acc <= 1
        p = eng.predict_proba(X)
        assert p.shape == (4, 10) and np.allclose(p.sum(1), 1, atol=1e-5)


def test_cnn_on_two_threads_is_reproducible_and_chunked_evaluation_is_exact():
    """CPU kernels need no deterministic-algorithms flag: two runs on 2 threads agree bit for
    bit; evaluation in CONV_EVAL_BATCH chunks gives the one-batch answer."""
    from mnistlab.engines import reference

    r = Recipe(kind="cnn", conv_channels=[4, 8], hidden=[16], batch_size=8, threads=2)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 784)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    runs = []
    for _ in range(2):
        eng = ReferenceEngine(r, init_weights(r), device="cpu")
        fit = eng.train_epoch(x, y, np.arange(64), np.full(8, 0.01), epoch=0)
        runs.append((fit, eng.state()))
    assert runs[0][0] == runs[1][0]
    for k, v in runs[0][1].items():
        np.testing.assert_array_equal(v, runs[1][1][k], err_msg=k)
    xe = rng.normal(size=(reference.CONV_EVAL_BATCH + 37, 784)).astype(np.float32)
    chunked = eng.predict_proba(xe)
    eng.net.eval()
    import torch

    with torch.no_grad():
        whole = torch.softmax(eng.net(torch.from_numpy(xe)), 1).numpy()
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


# ---- device and engine choice -----------------------------------------------------------
def test_device_defaults_to_cpu_without_cuda(monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert cuda_present() is False
    assert select_device(None) == "cpu"
    assert ReferenceEngine(Recipe(hidden=[]), init_weights(Recipe(hidden=[]))).device == "cpu"
    with pytest.raises(RecipeError, match="no CUDA device"):
        select_device("cuda")
    with pytest.raises(RecipeError, match="expected 'cpu'"):
        select_device("tpu")


def test_cuda_is_chosen_once_when_present(monkeypatch):
    monkeypatch.setattr(engines, "cuda_present", lambda: True)
    monkeypatch.setattr(device, "cuda_present", lambda: True)
    assert select_device(None) == "cuda"
    assert select_device("cpu") == "cpu"
    name, why = choose_engine(Recipe())
    assert name == "reference"
    if engines._fast_module() is not None:
        assert why == "auto: a CUDA device is present"
    eng = make_engine(Recipe(hidden=[4]), init_weights(Recipe(hidden=[4])), device="cpu")
    assert eng.device == "cpu"  # an explicit device wins over the detected one


def test_cuda_visible_devices_empty_means_no_cuda(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert cuda_present() is False


def test_engine_choice(monkeypatch):
    monkeypatch.setattr(engines, "cuda_present", lambda: False)
    cnn = Recipe(kind="cnn")
    for kw in (
        {"dropout": 0.2},
        {"batch_norm": True},
        {"optimizer": "nadam"},
        {"optimizer": "adadelta"},
        {"max_norm": 2.0},
    ):
        assert choose_engine(Recipe(**kw))[0] == ("fast" if engines._fast_module() else "reference")
    assert choose_engine(cnn)[0] == ("fast" if engines._fast_module() else "reference")
    assert choose_engine(Recipe(engine="reference"))[0] == "reference"
    if engines._fast_module() is None:
        assert choose_engine(Recipe())[0] == "reference"
        with pytest.raises(RecipeError, match="not installed"):
            choose_engine(Recipe(engine="fast"))
    else:
        assert choose_engine(Recipe()) == (
            "fast",
            "auto: fast engine supports this recipe on the CPU",
        )
        # a CNN trains on the fast engine's numba back end only: without numba, the reference
        monkeypatch.setattr(engines._fast_module(), "numba_available", lambda: False)
        name, why = choose_engine(cnn)
        assert name == "reference" and "fast engine not used" in why and "numba" in why
        with pytest.raises(RecipeError, match="engine'.*cnn"):
            choose_engine(cnn.replace(engine="fast"))


def test_missing_fast_module_makes_auto_pick_reference(monkeypatch):
    monkeypatch.setattr(engines, "_fast_module", lambda: None)
    assert choose_engine(Recipe()) == (
        "reference",
        "auto: fast engine not used (the fast engine is not installed)",
    )
    eng = make_engine(Recipe(hidden=[4]), init_weights(Recipe(hidden=[4])))
    assert eng.name == "reference" and "not installed" in eng.reason
