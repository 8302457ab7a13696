"""arch: the one walk of a recipe's layers; weight names, shapes, widths and counts checked
against numbers computed by hand."""

import pytest

from mnistlab.engines.arch import network
from mnistlab.recipe import Recipe


def _kinds(net):
    return [layer.kind for layer in net.layers]


def test_the_notebooks_mlp():
    net = network(Recipe(hidden=[128, 128, 128]))
    # 784*128+128 + 128*128+128 + 128*128+128 + 128*10+10
    assert net.trainable_count == 134_794 and net.moving_count == 0
    assert net.flat_features == 784 and net.n_inputs == 784 and net.n_classes == 10
    assert _kinds(net) == ["flatten"] + ["dense", "activation"] * 4
    assert [layer.width for layer in net.of("dense")] == [128, 128, 128, 10]
    assert net.shapes["dense_0.kernel"] == (784, 128) and net.shapes["dense_3.bias"] == (10,)
    assert net.of("activation")[-1].fn == "softmax"
    assert net.line == "784 → 128 relu → 128 relu → 128 relu → 10 softmax"


def test_mlp_with_batch_norm_and_dropout():
    net = network(Recipe(hidden=[32, 16], batch_norm=True, dropout=0.25, activation="tanh"))
    dense0 = ["dense", "batch_norm", "activation", "dropout"]
    assert _kinds(net) == ["flatten", *dense0, *dense0, "dense", "activation"]
    # kernels and biases: 784*32+32 + 32*16+16 + 16*10+10; gamma and beta: 2*(32+16)
    assert net.trainable_count == 25_120 + 528 + 170 + 96
    assert net.moving_count == 2 * (32 + 16)  # moving mean and variance: state, not parameters
    bn = net.find("bn_1")
    assert [(w.name, w.shape, w.trainable, w.init) for w in bn.weights] == [
        ("bn_1.gamma", (16,), True, "ones"),
        ("bn_1.beta", (16,), True, "zeros"),
        ("bn_1.moving_mean", (16,), False, "zeros"),
        ("bn_1.moving_variance", (16,), False, "ones"),
    ]
    assert "bn_2.gamma" not in net.shapes  # never on the output layer
    assert net.block(net.find("dense_0")) == {
        "batch_norm": net.find("bn_0"),
        "activation": net.find("activation_0"),
        "dropout": net.find("dropout_0"),
    }
    assert net.find("dropout_1").rate == 0.25
    assert (
        net.line == "784 → 32 tanh + BN + dropout 0.25 → 16 tanh + BN + dropout 0.25 → 10 softmax"
    )


def test_cnn_shapes_widths_and_counts():
    net = network(Recipe(kind="cnn", conv_channels=[32, 64], kernel_size=3, hidden=[128]))
    block = ["conv", "max_pool", "activation"]
    assert _kinds(net) == [*block, *block, "flatten", "dense", "activation", "dense", "activation"]
    assert [(layer.name, layer.shape) for layer in net.layers[:7]] == [
        ("conv_0", (28, 28, 32)),
        ("max_pool_0", (14, 14, 32)),
        ("relu_0", (14, 14, 32)),
        ("conv_1", (14, 14, 64)),
        ("max_pool_1", (7, 7, 64)),
        ("relu_1", (7, 7, 64)),
        ("flatten", (7 * 7 * 64,)),
    ]
    assert net.shapes["conv_1.kernel"] == (3, 3, 32, 64)  # HWIO
    assert net.shapes["dense_0.kernel"] == (3136, 128)
    assert net.find("conv_1").weights[0].fans == (3 * 3 * 32, 3 * 3 * 64)
    # 3*3*1*32+32 + 3*3*32*64+64 + 3136*128+128 + 128*10+10
    assert net.trainable_count == 320 + 18_496 + 401_536 + 1_290 == 421_642
    assert net.line == (
        "28×28 → conv 3×3, 32 channels + pool → conv 3×3, 64 channels + pool → "
        "128 relu → 10 softmax"
    )


def test_cnn_with_batch_norm_odd_sides_and_other_class_counts():
    r = Recipe(kind="cnn", conv_channels=[4, 8, 8], kernel_size=5, hidden=[16], batch_norm=True)
    net = network(r, n_classes=3)
    # 28 -> 14 -> 7 -> 3: the pool floors an odd side, as Keras' MaxPooling2D does
    assert net.find("relu_2").shape == (3, 3, 8) and net.flat_features == 72
    convs = (25 * 1 * 4 + 4) + (25 * 4 * 8 + 8) + (25 * 8 * 8 + 8)
    dense = (72 * 16 + 16) + 2 * 16 + (16 * 3 + 3)
    assert net.trainable_count == convs + dense == 3_771
    assert net.moving_count == 32 and net.n_classes == 3
    assert [w.name for w in net.weights if not w.trainable] == [
        "bn_0.moving_mean",
        "bn_0.moving_variance",
    ]


def test_weights_come_in_keras_order():
    net = network(Recipe(kind="cnn", conv_channels=[2], hidden=[3], batch_norm=True))
    assert [w.name for w in net.weights] == [
        "conv_0.kernel",
        "conv_0.bias",
        "dense_0.kernel",
        "dense_0.bias",
        "bn_0.gamma",
        "bn_0.beta",
        "bn_0.moving_mean",
        "bn_0.moving_variance",
        "dense_1.kernel",
        "dense_1.bias",
    ]


@pytest.mark.parametrize("hidden", [[], [5]])
def test_no_hidden_layer_is_softmax_regression(hidden):
    net = network(Recipe(hidden=hidden, batch_norm=True, dropout=0.5))
    widths = [784, *hidden, 10]
    assert net.trainable_count == sum(a * b + b for a, b in zip(widths, widths[1:])) + 2 * sum(
        hidden
    )
    assert net.of("dropout") == ([] if not hidden else [net.find("dropout_0")])
