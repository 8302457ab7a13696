"""Subnormal floats as a class: the flush-to-zero mode is set while an engine computes and
restored after, no optimizer slot or weight is ever subnormal (with the hardware mode and, where
a CPU has none, in software), and the run records which it was.

Wall time is never measured: a state that holds no subnormal after each epoch is what keeps an
Intel core's epochs from growing (each subnormal operand costs it a microcode assist).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mnistlab.engines import fpmode
from mnistlab.engines.fast import FastEngine, numba_available
from mnistlab.engines.init import init_weights
from mnistlab.recipe import Recipe
from mnistlab.training.schedules import learning_rates, steps_per_epoch

BACKENDS = [
    "numpy",
    pytest.param(
        "numba", marks=pytest.mark.skipif(not numba_available(), reason="numba not installed")
    ),
]
X86_NUMBA = pytest.mark.skipif(
    fpmode.architecture() != "x86_64" or not numba_available(),
    reason="reads MXCSR through numba on x86-64",
)
FLUSH = 0x8040  # MXCSR's FTZ and DAZ


def _mxcsr() -> int:
    """MXCSR read by numba's stmxcsr: independent of the way fpmode writes it."""
    from mnistlab.engines import fpmode_numba

    return int(fpmode_numba.read_mxcsr())


def _mode() -> int:
    """MXCSR without its sticky exception flags (status, not mode)."""
    return _mxcsr() & ~0x3F


@pytest.fixture(scope="module")
def sample():
    """The bundled sample's 10,000 training images, standardized as fit does: 313 steps of 32
    an epoch."""
    from mnistlab import datasets

    ds = datasets.load("mnist-sample")
    x = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float32)
    return np.ascontiguousarray((x - x.mean()) / x.std()), ds.y_train.astype(np.int64)


def _epochs(engine, x, y, epochs):
    """Train as fit does and yield after each epoch."""
    r = engine.recipe
    steps = steps_per_epoch(len(x), r.batch_size)
    for epoch in range(epochs):
        order = np.random.default_rng([r.seed, epoch]).permutation(len(x))
        engine.train_epoch(x, y, order, learning_rates(r, epoch, steps), epoch)
        yield epoch


def _subnormal_counts(state: dict[str, np.ndarray]) -> dict[str, int]:
    counts = {k: fpmode.count_subnormal(v) for k, v in state.items() if v.dtype == np.float32}
    return {k: n for k, n in counts.items() if n}


def _engine(kind: str, recipe: Recipe):
    if kind == "reference":
        pytest.importorskip("torch")
        from mnistlab.engines.reference import ReferenceEngine

        return ReferenceEngine(recipe, init_weights(recipe), device="cpu")
    return FastEngine(recipe, init_weights(recipe), backend=kind)


@pytest.fixture
def no_hardware_mode(monkeypatch):
    """A CPU whose flush-to-zero mode cannot be set (fpmode finds no control)."""
    monkeypatch.setattr(fpmode, "control", lambda: None)
    monkeypatch.setattr(fpmode.platform, "machine", lambda: "riscv64")


# ---- the mode itself ------------------------------------------------------------------------
def test_count_and_flush_in_place():
    a = np.array([0.0, 1e-39, -1e-40, 1.2e-38, -2.0, np.nan, np.inf], np.float32)
    assert fpmode.count_subnormal(a) == 2
    fpmode.flush_in_place(a, np.empty_like(a))
    assert fpmode.count_subnormal(a) == 0
    np.testing.assert_array_equal(a[[0, 1, 2, 3, 4]], np.float32([0, 0, 0, 1.2e-38, -2]))
    assert np.isnan(a[5]) and a[6] == np.inf


def test_flushing_flushes_results_and_operands_then_restores():
    if fpmode.control() is None:
        pytest.skip(f"no flush-to-zero here: {fpmode.unavailable()}")
    small, sub = np.float32(1e-38), np.float32(1e-40)
    assert small * np.float32(0.01) > 0 and sub * np.float32(1e30) > 0  # IEEE before
    with fpmode.flushing() as on:
        assert on and fpmode.is_flushing()
        assert small * np.float32(0.01) == 0  # subnormal result -> 0 (FTZ)
        assert sub * np.float32(1e30) == 0  # subnormal operand read as 0 (DAZ)
        with fpmode.flushing():
            pass
        assert fpmode.is_flushing()  # an inner block restores the outer one's setting
    assert not fpmode.is_flushing()
    assert small * np.float32(0.01) > 0
    with pytest.raises(RuntimeError), fpmode.flushing():
        raise RuntimeError("boom")
    assert not fpmode.is_flushing()  # restored on the way out of an exception too


@X86_NUMBA
def test_mxcsr_bits_set_inside_and_restored_after():
    before = _mode()
    assert before & FLUSH == 0
    with fpmode.flushing():
        assert _mxcsr() & FLUSH == FLUSH
    assert _mode() == before


@X86_NUMBA
def test_the_numba_way_sets_and_restores_mxcsr_too():
    """The way used where the C library has no fesetmode (macOS, Windows, musl)."""
    c = fpmode._numba_control("x86_64")
    assert c.how == "numba" and c.label == "FTZ+DAZ"
    before = c.read()
    c.write(before | c.bits)
    try:
        assert _mxcsr() & FLUSH == FLUSH and np.float32(1e-38) * np.float32(0.01) == 0
    finally:
        c.write(before)
    assert _mode() == before & ~0x3F


def test_a_one_thread_product_reads_subnormal_operands_as_zero():
    """At 1 BLAS thread (the default) sgemm runs on the calling thread: covered."""
    if fpmode.control() is None:
        pytest.skip(f"no flush-to-zero here: {fpmode.unavailable()}")
    from threadpoolctl import threadpool_limits

    a = np.full((64, 64), 1e-39, np.float32)
    b = np.full((64, 64), 1e30, np.float32)
    with threadpool_limits(1, user_api="blas"):
        assert (a @ b).min() > 0
        with fpmode.flushing():
            assert not (a @ b).any()


def test_status_lines():
    c = fpmode.control()
    if c is not None:
        assert fpmode.status(1) == f"flushed ({c.label})"
        assert fpmode.status(2) == (
            f"flushed ({c.label}) on the training thread; its BLAS worker thread keeps its own"
        )
        assert "its 3 torch worker threads keep their own" in fpmode.status(4, "torch")
    assert fpmode.status(2, "torch", "FTZ+DAZ by torch").startswith("flushed (FTZ+DAZ by torch)")


def test_a_cpu_without_the_mode_says_so(no_hardware_mode):
    assert fpmode.status(1) == "not flushed: riscv64 has no flush-to-zero mode known to mnistlab"
    with fpmode.flushing() as on:
        assert on is False
    r = Recipe(hidden=[8])
    eng = FastEngine(r, init_weights(r), backend="numpy")
    assert eng.subnormals.startswith("not flushed: riscv64")
    assert "flush the state's subnormals in software" in eng.subnormals


# ---- the engines set it while they compute ----------------------------------------------------
@X86_NUMBA
@pytest.mark.parametrize("kind", [*BACKENDS, "reference"])
def test_the_mode_is_set_while_training_and_evaluating_and_restored_after(kind, monkeypatch):
    r = Recipe(hidden=[16], batch_size=4)
    eng = _engine(kind, r)
    x = np.random.default_rng(0).standard_normal((8, 784)).astype(np.float32)
    y = np.arange(8) % 10
    seen = []
    before = _mode()
    eng.train_epoch(
        x, y, np.arange(8), np.full(2, 0.01), 0, on_progress=lambda *a: seen.append(_mxcsr())
    )
    assert seen and all(m & FLUSH == FLUSH for m in seen)
    assert _mode() == before
    # evaluation and prediction: read the register from inside their forward pass
    inside = []
    if kind == "reference":
        forward = eng.net.forward
        monkeypatch.setattr(
            eng.net, "forward", lambda xb: (inside.append(_mxcsr()), forward(xb))[1]
        )
    else:
        from mnistlab.engines import fast_numpy

        logits = fast_numpy.logits
        monkeypatch.setattr(
            fast_numpy, "logits", lambda *a: (inside.append(_mxcsr()), logits(*a))[1]
        )
    eng.evaluate(x, y)
    eng.predict_proba(x)
    assert len(inside) >= 2 and all(m & FLUSH == FLUSH for m in inside)
    assert _mode() == before


@X86_NUMBA
def test_fast_predict_proba_function_flushes_too(monkeypatch):
    """The torch-free predictor (serve, evaluate of a saved run) runs under the mode."""
    from mnistlab.engines import fast, fast_numpy

    inside = []
    logits = fast_numpy.logits
    monkeypatch.setattr(fast_numpy, "logits", lambda *a: (inside.append(_mxcsr()), logits(*a))[1])
    r = Recipe(hidden=[8])
    before = _mode()
    fast.predict_proba(r, init_weights(r), np.zeros((3, 784), np.float32))
    assert inside and inside[0] & FLUSH == FLUSH and _mode() == before


# ---- no subnormal in the state, epoch after epoch ---------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("kind", [*BACKENDS, "reference"])
def test_no_subnormal_in_slots_or_weights_after_hundreds_of_steps(sample, kind, optimizer):
    """939 steps on the sample: the weights of dead ReLU units get a zero gradient, and their
    slots decay by 0.9 a step into the subnormals (~350 of them under IEEE arithmetic)."""
    x, y = sample
    eng = _engine(
        kind, Recipe(optimizer=optimizer, learning_rate=1e-3 if optimizer == "adam" else 0.01)
    )
    for _ in _epochs(eng, x, y, 3):
        pass
    assert eng.iterations == 939
    assert _subnormal_counts(eng.state()) == {}


@pytest.mark.parametrize("kind", [*BACKENDS, "reference"])
def test_without_the_hardware_mode_the_state_still_holds_no_subnormal(
    sample, kind, no_hardware_mode
):
    """Software flushing in the update kernels (fast engine), torch's switch (reference): the
    saved state is the same on every CPU."""
    x, y = sample
    eng = _engine(kind, Recipe(optimizer="adam", learning_rate=1e-3))
    if kind == "reference" and not eng._torch_flush:
        pytest.skip("torch has no flush-to-zero switch on this CPU")
    for _ in _epochs(eng, x, y, 3):
        pass
    assert _subnormal_counts(eng.state()) == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_software_flushing_gives_the_same_numbers_within_float32_rounding(
    sample, backend, monkeypatch
):
    x, y = sample[0][:3000], sample[1][:3000]
    r = Recipe(optimizer="adam", learning_rate=1e-3, batch_norm=True)
    hw = FastEngine(r, init_weights(r), backend=backend)
    for _ in _epochs(hw, x, y, 2):
        pass
    monkeypatch.setattr(fpmode, "control", lambda: None)
    sw = FastEngine(r, init_weights(r), backend=backend)
    for _ in _epochs(sw, x, y, 2):
        pass
    for k, v in hw.state().items():
        np.testing.assert_allclose(sw.state()[k], v, atol=1e-5, rtol=1e-4, err_msg=k)


VARIANTS = {  # bench/variants.py's "try to beat this" list at Keras' default rates
    "adam": {"optimizer": "adam", "learning_rate": 1e-3},
    "adamw": {"optimizer": "adamw", "learning_rate": 1e-3},
    "nadam": {"optimizer": "nadam", "learning_rate": 1e-3},
    "rmsprop": {"optimizer": "rmsprop", "learning_rate": 1e-3},
    "adagrad": {"optimizer": "adagrad", "learning_rate": 1e-3},
    "adadelta": {"optimizer": "adadelta", "learning_rate": 1e-3},
    "all": {
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "l2": 1e-4,
        "dropout": 0.2,
        "batch_norm": True,
    },
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_no_epoch_leaves_a_subnormal_behind(sample, name):
    """The drift criterion without a clock: an epoch costs the same on any CPU as long as the
    state it starts from holds no subnormal. Counted after each of 4 epochs (1,252 steps)."""
    x, y = sample
    eng = FastEngine(Recipe(**VARIANTS[name]), init_weights(Recipe(**VARIANTS[name])))
    counts = [sum(_subnormal_counts(eng.state()).values()) for _ in _epochs(eng, x, y, 4)]
    assert counts == [0, 0, 0, 0]


def test_the_run_records_how_subnormals_were_handled(tmp_path):
    from mnistlab.training.fit import fit

    run = fit(
        Recipe(epochs=1, hidden=[8], batch_size=256), "mnist-sample", out=tmp_path / "r", quiet=True
    )
    env = json.loads((tmp_path / "r" / "environment.json").read_text())
    c = fpmode.control()
    assert env["subnormals"] == (f"flushed ({c.label})" if c else env["subnormals"])
    assert env["subnormals"].startswith(("flushed", "not flushed: "))
    assert run.engine == "fast"
