"""Initial weights: Keras layouts and Glorot-uniform bounds, same seed → same arrays."""

import numpy as np

from mnistlab.engines.arch import network
from mnistlab.engines.init import init_weights
from mnistlab.recipe import Recipe


def test_mlp_shapes_and_glorot_bounds():
    w = init_weights(Recipe())
    assert [k for k in w] == [f"dense_{i}.{p}" for i in range(4) for p in ("kernel", "bias")]
    assert w["dense_0.kernel"].shape == (784, 128) and w["dense_3.kernel"].shape == (128, 10)
    for i, (fi, fo) in enumerate([(784, 128), (128, 128), (128, 128), (128, 10)]):
        k = w[f"dense_{i}.kernel"]
        limit = np.sqrt(6 / (fi + fo))
        assert k.dtype == np.float32 and np.abs(k).max() <= limit
        assert np.abs(k).max() > 0.95 * limit  # really uniform over the whole range
        assert not w[f"dense_{i}.bias"].any()


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (init_weights(Recipe(seed=s)) for s in (7, 7, 8))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["dense_0.kernel"], c["dense_0.kernel"])


def test_batch_norm_and_cnn_layouts():
    w = init_weights(Recipe(batch_norm=True, hidden=[64]))
    assert np.all(w["bn_0.gamma"] == 1) and np.all(w["bn_0.moving_variance"] == 1)
    assert "bn_1.gamma" not in w  # no batch norm on the output layer
    r = Recipe(kind="cnn", conv_channels=[8, 16], kernel_size=5, hidden=[32])
    w = init_weights(r)
    assert w["conv_0.kernel"].shape == (5, 5, 1, 8) and w["conv_1.kernel"].shape == (5, 5, 8, 16)
    assert network(r).flat_features == 7 * 7 * 16 and w["dense_0.kernel"].shape == (784, 32)


def test_every_weight_of_the_network_walk_in_its_order():
    r = Recipe(kind="cnn", conv_channels=[4, 6], kernel_size=5, hidden=[12], batch_norm=True)
    net = network(r, n_classes=7)
    w = init_weights(r, n_classes=7)
    assert [(k, v.shape) for k, v in w.items()] == [(x.name, x.shape) for x in net.weights]
    for x in net.weights:
        value = w[x.name]
        if x.init == "glorot_uniform":  # Keras' fans: a conv kernel's count kh * kw too
            limit = np.sqrt(6 / sum(x.fans))
            assert 0.9 * limit < np.abs(value).max() <= limit, x.name
        else:
            assert np.all(value == {"zeros": 0, "ones": 1}[x.init]), x.name
