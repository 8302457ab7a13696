"""Looking inside a run: the float64 network against the engines and torch's autograd, integrated
gradients that add up to the logit change (completeness) and match a fine Riemann sum, the
activations and pushes of one digit, the first-layer templates, and the 2-D embedding."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import numpy as np
import pytest
from insiderun import small_run

from mnistlab import datasets
from mnistlab.engines.init import init_weights
from mnistlab.errors import MnistlabError
from mnistlab.evaluation import inside
from mnistlab.recipe import Recipe
from mnistlab.rundir import load_run

NAMES = tuple("0123456789")


@pytest.fixture(scope="module")
def test_digits():
    ds = datasets.load("mnist-sample")
    return ds.x_test[:300], ds.y_test[:300]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return load_run(small_run(tmp_path_factory, "mlp"))


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return load_run(small_run(tmp_path_factory, "cnn"))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _random_model(recipe: Recipe, seed: int = 0) -> inside.Model:
    """A model with random weights and, with batch norm, random moving statistics."""
    rng = np.random.default_rng(seed)
    w = init_weights(recipe)
    for k in w:
        if "bias" in k or "beta" in k or "moving_mean" in k:
            w[k] = rng.normal(0, 0.1, w[k].shape).astype(np.float32)
        elif "gamma" in k or "moving_variance" in k:
            w[k] = rng.uniform(0.5, 1.5, w[k].shape).astype(np.float32)
    return inside.Model(recipe, w, 33.3, 78.6, NAMES)


# ---- the network --------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_logits_are_the_engines_probabilities(which, request, test_digits):
    run = request.getfixturevalue(which)
    model = inside.Model.of(run)
    x, _ = test_digits
    np.testing.assert_allclose(
        _softmax(model.logits(model.inputs(x))), run.predict_proba(x), atol=2e-5
    )


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(hidden=[24, 16], batch_norm=True),
        Recipe(hidden=[20], activation="gelu"),
        Recipe(hidden=[20, 12], activation="tanh"),
        Recipe(kind="cnn", conv_channels=[3, 5], hidden=[10]),
        Recipe(kind="cnn", conv_channels=[4], kernel_size=5, hidden=[], batch_norm=True),
    ],
    ids=["relu-bn", "gelu", "tanh", "cnn", "cnn-k5-nohidden"],
)
def test_input_gradient_is_torch_autograd(recipe):
    import torch

    from mnistlab.engines.torch_net import build_model

    model = _random_model(recipe)
    net = build_model(recipe, {k: v for k, v in model.p.items()}).double().eval()
    net = net.to(memory_format=torch.contiguous_format)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (6, 784))  # no ties in the max-pools: one gradient, not a choice
    dlogits = rng.normal(0, 1, (6, 10))
    xt = torch.tensor(x, requires_grad=True)
    out = net(xt)
    (out * torch.tensor(dlogits)).sum().backward()
    t = model.trace(x)
    np.testing.assert_allclose(t.logits, out.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(model.backward(t, dlogits), xt.grad.numpy(), rtol=1e-7, atol=1e-9)


def test_loss_gradients_are_softmax_minus_onehot_back_to_the_input():
    model = _random_model(Recipe(hidden=[16]))
    x = np.random.default_rng(2).normal(0, 1, (5, 784))
    y = np.array([0, 3, 3, 9, 1])
    t = model.trace(x)
    d = _softmax(t.logits) - np.eye(10)[y]
    np.testing.assert_allclose(model.loss_gradients(x, y), model.backward(t, d), rtol=1e-12)


def test_weights_that_do_not_fit_are_one_line():
    r = Recipe(hidden=[8])
    w = init_weights(r)
    del w["dense_1.bias"]
    with pytest.raises(MnistlabError, match=r"missing \['dense_1.bias'\]"):
        inside.Model(r, w, 0.0, 1.0, NAMES)


# ---- attribution ----------------------------------------------------------------------------
def _logit_change(model, images, targets):
    """F(x) - F(black) for each image, from two plain forward passes."""
    fx = model.logits(model.inputs(images))[np.arange(len(images)), targets]
    fb = model.logits(model.inputs(np.zeros((1, 28, 28))))[0, targets]
    return fx - fb


def test_attributions_add_up_to_the_logit_change_exactly_for_a_relu_mlp(mlp, test_digits):
    model = inside.Model.of(mlp)
    x, y = test_digits
    images = x[:6]
    targets = [int(t) for t in y[:6]]  # the true classes, some of them not the prediction
    found = inside.integrated_gradients(model, images, targets)
    change = _logit_change(model, images, np.array(targets))
    for a, c in zip(found, change):
        assert a.exact and a.values.shape == (28, 28)
        assert abs(a.values.sum() - c) <= 1e-3  # completeness
        assert abs(a.gap) <= 1e-9 * max(1, abs(c)) and abs(a.logit - a.baseline_logit - c) < 1e-9
        assert a.evaluations <= inside.EVALUATIONS


def test_exact_attributions_match_a_fine_riemann_sum_pixel_by_pixel(mlp, test_digits):
    model = inside.Model.of(mlp)
    image = test_digits[0][:1]
    a = inside.integrated_gradients(model, image)[0]
    n = 2**14  # midpoint rule: every kink costs at most one step's gradient jump
    alpha = (np.arange(n) + 0.5) / n
    x, base = model.inputs(image)[0], model.baseline
    _, g, _ = model.gradients(base + alpha[:, None] * (x - base), np.full(n, a.target))
    fine = (g.mean(axis=0) * (x - base)).reshape(28, 28)
    assert np.abs(a.values - fine).max() <= 2e-3 * np.abs(fine).max()


def test_attributions_of_smooth_and_conv_nets_meet_the_tolerance(cnn, test_digits):
    x = test_digits[0][:3]
    tanh = _random_model(Recipe(hidden=[24, 16], activation="tanh"))
    for model in (inside.Model.of(cnn), tanh):
        found = inside.integrated_gradients(model, x)
        change = _logit_change(model, x, np.array([a.target for a in found]))
        for a, c in zip(found, change):
            assert not a.exact  # no relu switches followed: the trapezoid rule, refined
            assert abs(a.values.sum() - c) <= 1e-3 and abs(a.gap - (a.values.sum() - c)) < 1e-9


def test_a_small_budget_is_kept_and_its_gap_reported(cnn, test_digits):
    model = inside.Model.of(cnn)
    a = inside.integrated_gradients(model, test_digits[0][:1], steps=8, max_evaluations=9)[0]
    assert a.evaluations == 9 and not a.exact
    c = _logit_change(model, test_digits[0][:1], np.array([a.target]))[0]
    assert a.gap == pytest.approx(a.values.sum() - c, abs=1e-9)
    with pytest.raises(ValueError, match="max_evaluations"):
        inside.integrated_gradients(model, test_digits[0][:1], steps=8, max_evaluations=8)


def test_saliency_is_the_gradient_at_the_digit(mlp, test_digits):
    model = inside.Model.of(mlp)
    image = test_digits[0][3:4]
    a = inside.integrated_gradients(model, image)[0]
    _, g, _ = model.gradients(model.inputs(image), [a.target])
    np.testing.assert_allclose(a.saliency, g.reshape(28, 28), rtol=1e-12)
    assert a.target == int(model.logits(model.inputs(image)).argmax())  # default: predicted


# ---- one digit ------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_look_shows_every_hidden_layer_and_the_pushes_add_up(which, request, test_digits):
    run = request.getfixturevalue(which)
    model = inside.Model.of(run)
    digit = test_digits[0][5]
    look = inside.look(model, digit)
    expected = (
        [("hidden layer 1: 32 relu", (32,)), ("hidden layer 2: 16 relu", (16,))]
        if which == "mlp"
        else [
            ("conv block 1: 4 maps of 14\u00d714", (14, 14, 4)),
            ("conv block 2: 6 maps of 7\u00d77", (7, 7, 6)),
            ("hidden layer 1: 12 relu", (12,)),
        ]
    )
    assert [(v.title, v.values.shape) for v in look.layers] == expected
    np.testing.assert_allclose(look.contributions.sum(axis=0) + look.bias, look.logits, atol=1e-9)
    np.testing.assert_allclose(look.probabilities, run.predict_proba(digit[None])[0], atol=2e-5)
    assert look.predicted == int(np.argmax(look.probabilities))
    pushes = look.pushes(look.predicted, top=5)
    values = [c for _, c in pushes]
    assert values == sorted(values, reverse=True) and all(c > 0 for c in values)
    assert pushes[0][1] == pytest.approx(look.contributions[:, look.predicted].max())
    np.testing.assert_allclose(look.activations, look.layers[-1].values.ravel())


# ---- templates ------------------------------------------------------------------------------
def test_templates_of_an_mlp_are_its_first_kernel_sorted_by_use(mlp, test_digits):
    model = inside.Model.of(mlp)
    t = inside.first_layer(model, test_digits[0])
    kernel = mlp.weights["dense_0.kernel"]
    assert t.weights.shape == (32, 28, 28) and t.images == 300
    np.testing.assert_allclose(t.weights[7], kernel[:, 7].reshape(28, 28))
    assert np.all(np.diff(t.usage[t.order]) <= 0)
    # the usage: mean |output| times the norm of the outgoing weights
    out = model.trace(model.inputs(test_digits[0])).dense[0]["a"]
    norms = np.linalg.norm(model.p["dense_1.kernel"], axis=1)
    np.testing.assert_allclose(t.usage, np.abs(out).mean(axis=0) * norms, rtol=1e-9)


def test_a_unit_that_never_fires_is_dead_and_last(test_digits):
    model = _random_model(Recipe(hidden=[8, 4]))
    model.p["dense_0.bias"][3] = -1e6  # unit 3 is never above 0
    t = inside.first_layer(model, test_digits[0][:50])
    assert t.dead.tolist() == [k == 3 for k in range(8)] and t.order[-1] == 3
    assert t.usage[3] == 0


def test_templates_of_a_cnn_are_its_first_filters(cnn, test_digits):
    t = inside.first_layer(inside.Model.of(cnn), test_digits[0][:100])
    kernel = cnn.weights["conv_0.kernel"]  # (3, 3, 1, 4)
    assert t.weights.shape == (4, 3, 3) and t.layer == "conv_0"
    np.testing.assert_allclose(t.weights[2], kernel[:, :, 0, 2])
    assert sorted(t.order.tolist()) == [0, 1, 2, 3]


# ---- embedding ------------------------------------------------------------------------------
def test_pca_embedding_of_the_last_hidden_layer(mlp, test_digits, monkeypatch):
    monkeypatch.setattr(inside, "umap_available", lambda: False)
    model = inside.Model.of(mlp)
    x, y = test_digits
    e = inside.embedding(model, x, y, method="auto")
    assert e.method == "PCA" and e.points.shape == (300, 2) and "variance" in e.note
    assert e.layer == "hidden layer 2: 16 relu"
    np.testing.assert_array_equal(e.predicted, mlp.predict_proba(x).argmax(axis=1))
    np.testing.assert_array_equal(inside.embedding(model, x, y, method="pca").points, e.points)
    # the first axis is the direction of largest variance of the 16 activations
    h = model.trace(model.inputs(x)).last
    assert e.points[:, 0].var() >= e.points[:, 1].var()
    assert e.points[:, 0].var() * len(h) / (len(h) - 1) == pytest.approx(
        np.linalg.eigvalsh(np.cov(h.T))[-1], rel=1e-6
    )


def test_umap_is_used_when_installed_and_asked_for_otherwise_a_hint(mlp, test_digits, monkeypatch):
    model = inside.Model.of(mlp)
    x, y = test_digits[0][:40], test_digits[1][:40]
    monkeypatch.setattr(inside, "umap_available", lambda: False)
    with pytest.raises(MnistlabError, match=r"mnistlab\[inside\]"):
        inside.embedding(model, x, y, method="umap")
    with pytest.raises(MnistlabError, match="expected one of auto, pca, umap"):
        inside.embedding(model, x, y, method="tsne")

    calls = {}

    class UMAP:  # stands in for umap-learn's estimator
        def __init__(self, **kwargs):
            calls.update(kwargs)

        def fit_transform(self, h):
            return h[:, :2] * 2.0

    fake = types.ModuleType("umap")
    fake.UMAP = UMAP
    fake.__spec__ = importlib.machinery.ModuleSpec("umap", None)
    monkeypatch.setitem(sys.modules, "umap", fake)
    monkeypatch.setattr(inside, "umap_available", lambda: True)
    e = inside.embedding(model, x, y, method="auto", seed=7)  # UMAP when installed, seeded
    assert e.method == "UMAP" and calls == {"n_components": 2, "random_state": 7}
    np.testing.assert_allclose(e.points, model.trace(model.inputs(x)).last[:, :2] * 2.0)


def test_real_umap_when_the_extra_is_installed(mlp, test_digits):
    pytest.importorskip("umap", reason="the inside extra (umap-learn) is not installed")
    model = inside.Model.of(mlp)
    x, y = test_digits[0][:120], test_digits[1][:120]
    e = inside.embedding(model, x, y, method="umap", seed=3)
    assert e.method == "UMAP" and e.points.shape == (120, 2) and np.isfinite(e.points).all()
    np.testing.assert_array_equal(
        inside.embedding(model, x, y, method="umap", seed=3).points, e.points
    )
