"""models.py: Keras layouts <-> torch modules, CNN shapes, Keras batch norm."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mnistlab.engines.init import init_weights  # noqa: E402
from mnistlab.engines.torch_net import build_model, export_weights  # noqa: E402
from mnistlab.errors import RunError  # noqa: E402
from mnistlab.recipe import Recipe  # noqa: E402


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(),
        Recipe(hidden=[16, 8], batch_norm=True),
        Recipe(kind="cnn", conv_channels=[4, 6], hidden=[8]),
        Recipe(kind="cnn", conv_channels=[3], kernel_size=5, hidden=[]),
        Recipe(kind="cnn", conv_channels=[4, 2], hidden=[6, 5], batch_norm=True, dropout=0.1),
    ],
)
def test_weights_round_trip_through_the_module(recipe):
    w = init_weights(recipe)
    back = export_weights(build_model(recipe, w))
    assert list(back) == list(w) or sorted(back) == sorted(w)
    for k in w:
        np.testing.assert_array_equal(back[k], w[k], err_msg=k)


@pytest.mark.parametrize(
    "channels,k,flat", [([32, 64], 3, 7 * 7 * 64), ([8], 5, 14 * 14 * 8), ([4, 4, 4], 3, 3 * 3 * 4)]
)
def test_cnn_forward_shapes(channels, k, flat):
    r = Recipe(kind="cnn", conv_channels=channels, kernel_size=k, hidden=[16])
    net = build_model(r, init_weights(r))
    assert net.dense[0].in_features == flat
    assert tuple(net(torch.zeros(5, 784)).shape) == (5, 10)


def _numpy_cnn(x_img, w):
    """Keras' Conv2D('same') + relu + MaxPool(2) + Flatten (h, w, c) + Dense, in NumPy."""
    k = w["conv_0.kernel"]  # (kh, kw, in, out)
    p = k.shape[0] // 2
    xp = np.pad(x_img, ((p, p), (p, p), (0, 0)))
    h, wd = x_img.shape[:2]
    conv = np.zeros((h, wd, k.shape[3]))
    for a in range(k.shape[0]):
        for b in range(k.shape[1]):
            conv += np.einsum("hwi,io->hwo", xp[a : a + h, b : b + wd], k[a, b])
    conv = np.maximum(conv + w["conv_0.bias"], 0)
    pooled = conv.reshape(h // 2, 2, wd // 2, 2, -1).max(axis=(1, 3))
    return pooled.reshape(-1) @ w["dense_0.kernel"] + w["dense_0.bias"]


def test_cnn_matches_keras_layout_computed_in_numpy():
    r = Recipe(kind="cnn", conv_channels=[3], kernel_size=3, hidden=[])
    w = init_weights(r)
    rng = np.random.default_rng(0)
    w["conv_0.bias"] = rng.normal(size=3).astype(np.float32)
    x = rng.normal(size=(28, 28, 1)).astype(np.float32)
    got = build_model(r, w)(torch.from_numpy(x.reshape(1, 784))).detach().numpy()[0]
    np.testing.assert_allclose(got, _numpy_cnn(x.astype(np.float64), w), rtol=1e-4, atol=1e-4)


def test_cnn_pools_before_relu_with_the_gradients_of_relu_then_pool():
    """Net pools first (relu on 4x fewer values); forward and weight gradients must equal the
    textbook order conv -> relu -> pool."""
    r = Recipe(kind="cnn", conv_channels=[3, 4], kernel_size=3, hidden=[5])
    net = build_model(r, init_weights(r))
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(6, 784)).astype(np.float32))
    y = torch.tensor([0, 1, 2, 3, 4, 5])

    def textbook(x):
        h = x.view(-1, 1, 28, 28)
        for conv in net.convs:
            h = torch.nn.functional.max_pool2d(torch.relu(conv(h)), 2)
        h = h.permute(0, 2, 3, 1).flatten(1)
        return net.dense[1](torch.relu(net.dense[0](h)))

    grads = []
    for forward in (net, textbook):
        net.zero_grad()
        logits = forward(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        grads.append((logits.detach(), [p.grad.clone() for p in net.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=0)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_keras_batch_norm_uses_biased_variance_and_momentum_099():
    r = Recipe(hidden=[4], batch_norm=True)
    net = build_model(r, init_weights(r))
    bn = net.bns[0]
    x = torch.tensor([[1.0, 2, 3, 4], [3, 2, 1, 0]])
    y = bn(x)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.01 * np.array([2, 2, 2, 2]), atol=1e-7)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), 0.99 + 0.01 * np.array([1, 0, 1, 4]), atol=1e-6
    )
    np.testing.assert_allclose(
        y[:, 0].detach().numpy(), [-1 / np.sqrt(1 + 1e-3), 1 / np.sqrt(1 + 1e-3)], rtol=1e-6
    )
    bn.eval()
    np.testing.assert_allclose(
        bn(x).detach().numpy(),
        ((x - bn.moving_mean) / torch.sqrt(bn.moving_variance + 1e-3)).numpy(),
        rtol=1e-6,
    )


def test_wrong_weights_are_a_run_error():
    r = Recipe(hidden=[8])
    w = init_weights(r)
    del w["dense_1.bias"]
    with pytest.raises(RunError, match="dense_1.bias"):
        build_model(r, w)
    w = init_weights(r)
    w["dense_0.kernel"] = w["dense_0.kernel"][:100]
    with pytest.raises(RunError, match="dense_0.kernel"):
        build_model(r, w)
