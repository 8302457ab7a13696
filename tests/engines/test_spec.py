"""engines/spec.py, the oracle: its gradients equal torch autograd, its updates equal torch.optim
where the two define the same arithmetic, and base.py's shared pieces (masks, state).

Both sides compute in float64 here (unit roundoff 1.1e-16), so the tolerances below hold on any
CPU: 1e-10 on O(1) gradients is ~1e6 ulps of slack for summation order, and the optimizers'
1e-6 relative is where epsilon sits (inside or outside a square root), a formula difference,
not rounding. The float32 engines are held to spec by tests/engines/conftest.py's derived
tolerances instead."""

from __future__ import annotations

import numpy as np
import pytest

from mnistlab.engines import spec
from mnistlab.engines.init import init_weights
from mnistlab.engines.masks import dropout_keep, dropout_keys, keep_mask
from mnistlab.engines.optim import Hyperparameters, step_scalars
from mnistlab.engines.state import State, Workspace
from mnistlab.errors import RunError
from mnistlab.recipe import Recipe
from mnistlab.recipe.optimizers import OPTIMIZERS

RNG = np.random.default_rng(3)
X = RNG.standard_normal((16, 784))
Y = RNG.integers(0, 10, 16)


def _params(r: Recipe, seed: int = 0) -> dict:
    p = {k: v.astype(np.float64) for k, v in init_weights(r).items()}
    rng = np.random.default_rng(seed)
    for k in p:  # non-trivial biases and batch norm parameters
        if k.endswith((".bias", ".beta")):
            p[k] = rng.normal(0, 0.1, p[k].shape)
        elif k.endswith(".gamma"):
            p[k] = rng.uniform(0.5, 1.5, p[k].shape)
    return p


OPTIONS = {
    "relu": {},
    "l2": {"l2": 1e-2},
    "tanh-smoothing": {"activation": "tanh", "label_smoothing": 0.2},
    "sigmoid": {"activation": "sigmoid"},
    "gelu": {"activation": "gelu"},
    "dropout": {"dropout": 0.3},
    "batch-norm": {"batch_norm": True},
    "all": {"batch_norm": True, "dropout": 0.2, "l2": 1e-3, "label_smoothing": 0.1},
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_gradients_equal_torch_autograd(name):
    torch = pytest.importorskip("torch")
    r = Recipe(hidden=[24, 12], **OPTIONS[name])
    h = Hyperparameters.of(r)
    p = _params(r)
    masks = (
        [dropout_keep(0, 0, 0, j, 16, w, h.dropout) for j, w in enumerate(r.hidden)]
        if h.dropout
        else None
    )
    loss, grads, stats = spec.gradients(p, X, Y, h, masks)

    t = {k: torch.tensor(v, requires_grad="moving" not in k) for k, v in p.items()}
    act = {
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "gelu": torch.nn.functional.gelu,
    }[r.activation]
    z = torch.tensor(X)
    for i in range(3):
        z = z @ t[f"dense_{i}.kernel"] + t[f"dense_{i}.bias"]
        if i == 2:
            break
        if h.batch_norm:  # torch's own batch norm, training mode (biased variance inside)
            z = torch.nn.functional.batch_norm(
                z, None, None, t[f"bn_{i}.gamma"], t[f"bn_{i}.beta"], training=True, eps=1e-3
            )
        z = act(z)
        if masks is not None:
            z = z * torch.tensor(masks[i]) / (1 - h.dropout)
    ref = torch.nn.functional.cross_entropy(z, torch.tensor(Y), label_smoothing=h.label_smoothing)
    ref = ref + h.l2 * sum((t[f"dense_{i}.kernel"] ** 2).sum() for i in range(3))
    ref.backward()
    assert loss == pytest.approx(ref.item(), abs=1e-10)
    assert set(grads) == {k for k in p if "moving" not in k}
    for k, g in grads.items():
        np.testing.assert_allclose(g, t[k].grad.numpy(), atol=1e-10, err_msg=k)
    if h.batch_norm:
        pre = X @ p["dense_0.kernel"] + p["dense_0.bias"]
        np.testing.assert_allclose(stats[0][0], pre.mean(0))
        np.testing.assert_allclose(stats[0][1], pre.var(0))  # biased, as Keras


def _torch_optimizer(torch, name, params, lr):
    o = torch.optim
    return {
        "sgd": lambda: o.SGD(params, lr=lr, momentum=0.9, nesterov=True),
        "adam": lambda: o.Adam(params, lr=lr, eps=1e-7),
        "adamw": lambda: o.AdamW(params, lr=lr, eps=1e-7, weight_decay=0.004),
        # momentum_decay=1 makes torch's schedule Keras' 0.96**t
        "nadam": lambda: o.NAdam(params, lr=lr, eps=1e-7, momentum_decay=1.0),
        "rmsprop": lambda: o.RMSprop(params, lr=lr, alpha=0.9, eps=1e-7),
        "adagrad": lambda: o.Adagrad(params, lr=lr, initial_accumulator_value=0.1, eps=1e-7),
        "adadelta": lambda: o.Adadelta(params, lr=lr, rho=0.95, eps=1e-7),
    }[name]()


@pytest.mark.parametrize("name", list(OPTIMIZERS))  # a new row needs its torch twin above
def test_updates_equal_torch_optim(name):
    """Three steps on O(1) gradients. torch.optim defines the same arithmetic as Keras for these
    settings, except where epsilon sits (inside or outside a sqrt / bias correction), which
    moves results by ~1e-7 relative here."""
    torch = pytest.importorskip("torch")
    h = Hyperparameters.of(Recipe(optimizer=name))
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((5, 4))
    grads = [rng.choice([-1, 1], (5, 4)) * rng.uniform(0.5, 2, (5, 4)) for _ in range(3)]
    p = {"dense_0.kernel": w0.copy()}
    slots = spec.init_slots(p, h)
    tw = torch.tensor(w0.copy(), requires_grad=True)
    opt = _torch_optimizer(torch, name, [tw], lr=0.01)
    for t, g in enumerate(grads, start=1):
        spec.update(p, {"dense_0.kernel": g}, slots, t, 0.01, h)
        tw.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(p["dense_0.kernel"], tw.detach().numpy(), rtol=1e-6, atol=1e-9)


def test_max_norm_equals_torch_renorm_on_columns():
    torch = pytest.importorskip("torch")
    h = Hyperparameters.of(Recipe(max_norm=1.0, momentum=0.0))
    w = np.random.default_rng(0).standard_normal((50, 6)) * np.array([0.01, 0.1, 0.2, 1, 2, 3])
    p = {"dense_0.kernel": w.copy()}
    spec.update(p, {"dense_0.kernel": np.zeros_like(w)}, spec.init_slots(p, h), 1, 0.0, h)
    want = torch.renorm(torch.tensor(w), p=2, dim=1, maxnorm=1.0).numpy()
    np.testing.assert_allclose(p["dense_0.kernel"], want, rtol=1e-5)
    assert np.linalg.norm(p["dense_0.kernel"], axis=0).max() <= 1.0


def test_batch_norm_moving_statistics_and_inference():
    r = Recipe(hidden=[8], batch_norm=True, dropout=0.5)
    h = Hyperparameters.of(r)
    p = _params(r)
    masks = [np.ones((16, 8), bool)]
    spec.step(p, spec.init_slots(p, h), X, Y, 1, 0.0, h, masks)  # lr 0: only the moving stats
    pre = X @ p["dense_0.kernel"] + p["dense_0.bias"]
    np.testing.assert_allclose(p["bn_0.moving_mean"], 0.01 * pre.mean(0))
    np.testing.assert_allclose(p["bn_0.moving_variance"], 0.99 + 0.01 * pre.var(0))
    # inference: the moving statistics, no dropout (deterministic, no masks needed)
    hidden = np.maximum(
        (pre - p["bn_0.moving_mean"]) / np.sqrt(p["bn_0.moving_variance"] + 1e-3) * p["bn_0.gamma"]
        + p["bn_0.beta"],
        0,
    )
    logits = hidden @ p["dense_1.kernel"] + p["dense_1.bias"]
    want = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(spec.predict_proba(p, X, h), want / want.sum(1, keepdims=True))


# ---- base.py: masks, scalars, state, workspace --------------------------------------------
def test_dropout_masks_are_a_function_of_seed_epoch_step_layer():
    a = dropout_keep(1, 2, 3, 0, 32, 128, 0.2)
    assert np.array_equal(a, dropout_keep(1, 2, 3, 0, 32, 128, 0.2))
    for other in [(0, 2, 3, 0), (1, 1, 3, 0), (1, 2, 4, 0), (1, 2, 3, 1)]:
        assert not np.array_equal(a, dropout_keep(*other, 32, 128, 0.2))
    keys = dropout_keys(1, 2, 10, 3)
    assert keys.shape == (10, 3) and keys.dtype == np.uint64 and len(set(keys.ravel())) == 30
    assert np.array_equal(keep_mask(keys[3, 0], 32, 128, 0.2), a)
    big = keep_mask(keys[0, 0], 1000, 100, 0.2)
    assert abs(big.mean() - 0.8) < 0.01  # keep rate 1 - rate
    # a smaller last batch takes the leading rows of the full mask (row-major counter)
    assert np.array_equal(keep_mask(keys[0, 0], 7, 100, 0.2), big[:7])


def test_step_scalars_nadam_product_continues_across_calls():
    h = Hyperparameters.of(Recipe(optimizer="nadam"))
    lrs = np.full(6, 0.001, np.float32)
    whole, prods = step_scalars(h, lrs, 0, 1.0)
    first, p1 = step_scalars(h, lrs[:3], 0, 1.0)
    second, _ = step_scalars(h, lrs[3:], 3, float(p1[-1]))
    np.testing.assert_array_equal(whole, np.vstack([first, second]))
    assert prods[0] == pytest.approx(0.9 * (1 - 0.5 * 0.96))


def test_state_names_sizes_and_round_trip():
    r = Recipe(hidden=[6, 5], batch_norm=True, optimizer="nadam")
    s = State.for_recipe(r)
    w = init_weights(r)
    assert set(s.all_names()) == set(w)
    s.load_weights(w)
    s.theta += 1.0
    s.iterations, s.u_product = 7, 0.25
    state = s.state()
    assert {"opt.m.bn_1.gamma", "opt.v.dense_2.kernel", "opt.u_product"} <= set(state)
    t = State.for_recipe(r)
    t.load_state(state)
    assert np.array_equal(t.theta, s.theta) and t.iterations == 7 and t.u_product == 0.25
    with pytest.raises(RunError, match="u_product"):
        t.load_state({k: v for k, v in state.items() if k != "opt.u_product"})
    with pytest.raises(RunError, match="bn_0.moving_mean"):
        t.load_weights({k: v for k, v in w.items() if k != "bn_0.moving_mean"})


def test_workspace_views_do_not_overlap():
    ws = Workspace([10, 6, 5, 3], rows=4, n_params=1, dropout=True)
    views = [ws.h(i, 4) for i in range(4)] + [ws.a(i, 4) for i in range(2)]
    for v in views:
        v[...] = 0
    for k, v in enumerate(views):
        v[...] = k + 1
    assert [int(v.mean()) for v in views] == list(range(1, 7))
    plain = Workspace([10, 6, 5, 3], rows=4, n_params=1, dropout=False)
    assert np.shares_memory(plain.a(0, 4), plain.h(1, 4))  # without dropout a IS the output


# ---- conv blocks ----------------------------------------------------------------------------
CONV_OPTIONS = {
    "3x3": {"conv_channels": [3, 4]},
    "odd-side-bn-dropout": {
        "conv_channels": [2, 3, 2],
        "batch_norm": True,
        "dropout": 0.3,
        "label_smoothing": 0.1,
        "l2": 1e-2,
    },
    "kernel-5": {"conv_channels": [3, 2], "kernel_size": 5},
    "5x5-tanh": {"conv_channels": [2, 2], "kernel_size": 5, "activation": "tanh"},
}


@pytest.mark.parametrize("name", list(CONV_OPTIONS))
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_conv_gradients_equal_torch_autograd(name):
    """Conv 'same' (odd and even kernels), 2x2 max-pool (odd sides floor), relu, (h, w, c)
    flatten, then the Dense layers: loss and every gradient as torch autograd has them."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    r = Recipe(kind="cnn", hidden=[12], **CONV_OPTIONS[name])
    h = Hyperparameters.of(r)
    p = _params(r)
    masks = [dropout_keep(0, 0, 0, 0, 16, 12, h.dropout)] if h.dropout else None
    loss, grads, _ = spec.gradients(p, X, Y, h, masks)

    t = {k: torch.tensor(v, requires_grad="moving" not in k) for k, v in p.items()}
    a = torch.tensor(X).view(16, 1, 28, 28)
    for j in range(len(r.conv_channels)):
        kernel = t[f"conv_{j}.kernel"].permute(3, 2, 0, 1)  # HWIO -> OIHW
        a = F.relu(F.max_pool2d(F.conv2d(a, kernel, t[f"conv_{j}.bias"], padding="same"), 2))
    z = a.permute(0, 2, 3, 1).flatten(1) @ t["dense_0.kernel"] + t["dense_0.bias"]
    if h.batch_norm:
        z = F.batch_norm(z, None, None, t["bn_0.gamma"], t["bn_0.beta"], training=True, eps=1e-3)
    z = torch.relu(z) if r.activation == "relu" else torch.tanh(z)
    if masks is not None:
        z = z * torch.tensor(masks[0]) / (1 - h.dropout)
    z = z @ t["dense_1.kernel"] + t["dense_1.bias"]
    ref = F.cross_entropy(z, torch.tensor(Y), label_smoothing=h.label_smoothing)
    ref = ref + h.l2 * sum((t[f"dense_{i}.kernel"] ** 2).sum() for i in range(2))  # Dense only
    ref.backward()
    assert loss == pytest.approx(ref.item(), abs=1e-10)
    assert set(grads) == {k for k in p if "moving" not in k}
    for k, g in grads.items():
        np.testing.assert_allclose(g, t[k].grad.numpy(), atol=1e-10, err_msg=k)


def test_max_pool_breaks_ties_as_torch_does():
    """Equal values in a window (a flat background convolves to equal outputs): the gradient
    goes to the first maximum in (0,0), (0,1), (1,0), (1,1) order, torch's choice."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    z = rng.integers(0, 3, (2, 6, 6, 3)).astype(np.float64)  # many ties among 0, 1, 2
    pooled, arg = spec.max_pool(z)
    tz = torch.tensor(z).permute(0, 3, 1, 2)
    want, idx = torch.nn.functional.max_pool2d(tz, 2, return_indices=True)
    np.testing.assert_array_equal(pooled, want.permute(0, 2, 3, 1).numpy())
    row, col = np.divmod(idx.permute(0, 2, 3, 1).numpy(), 6)
    ys, xs = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    np.testing.assert_array_equal(arg, (row - 2 * ys[..., None]) * 2 + col - 2 * xs[..., None])
    back = spec.unpool(np.ones_like(pooled), arg, 6)
    assert back.sum() == pooled.size and back.max() == 1.0


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_col2im_is_the_adjoint_of_im2col(k):
    rng = np.random.default_rng(k)
    a = rng.standard_normal((2, 7, 7, 3))
    d = rng.standard_normal((2, 7, 7, k * k * 3))
    assert np.vdot(spec.im2col(a, k), d) == pytest.approx(np.vdot(a, spec.col2im(d, k, 3)))
