"""check.model: the tutorial's network and SGD, read from a Recipe, a PyTorch module (traced
with torch.fx) or a Keras model (its layer configs), never from source text."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from mnistlab import check
from mnistlab.recipe import Recipe

LINE = "784 → 128 relu → 128 relu → 128 relu → 10 softmax"


def _sgd(net, **changes):
    settings = {"lr": 0.01, "momentum": 0.9, "nesterov": True} | changes
    return torch.optim.SGD(net.parameters(), **settings)


def _torch_net(softmax=True, widths=(128, 128, 128)):
    layers, fan_in = [], 784
    for w in widths:
        layers += [nn.Linear(fan_in, w), nn.ReLU()]
        fan_in = w
    layers.append(nn.Linear(fan_in, 10))
    return nn.Sequential(*layers, *([nn.Softmax(dim=1)] if softmax else []))


def test_the_notebook_recipe_passes_and_names_its_sgd(capsys):
    r = check.model(Recipe(epochs=2))
    assert r.passed and r.details["network"] == LINE
    out = capsys.readouterr().out
    assert out == f"✓ model: passed: {LINE}, SGD(lr 0.01, momentum 0.9, nesterov, decay 1e-06)\n"


@pytest.mark.parametrize(
    "recipe, said",
    [
        (Recipe(hidden=[128, 64, 128]), ["hidden layer 2 has 64 units"]),
        (Recipe(hidden=[128, 128]), ["2 hidden layers (the layers before the output layer)"]),
        (Recipe(activation="tanh"), ["hidden layer 1 has the activation tanh"]),
        (Recipe(dropout=0.2), ["dropout 0.2 after hidden layers 1, 2 and 3: not in the"]),
        (Recipe(learning_rate=10), ["the learning rate is 10"]),
        (Recipe(optimizer="adam"), ["the optimizer is adam, not the tutorial's"]),
        (Recipe(nesterov=False, decay=0), ["nesterov is False", "decay is 0"]),
        (Recipe(l2=1e-4), ["recipe field l2 = 0.0001 is not the tutorial's"]),
    ],
)
def test_a_recipe_off_the_tutorial_is_named(recipe, said):
    r = check.model(recipe)
    assert not r.passed and r.hint
    for fragment in said:
        assert any(p.startswith(fragment) for p in r.problems), (fragment, r.problems)


def test_a_torch_network_ending_in_softmax_passes_with_its_sgd():
    net = _torch_net()
    r = check.model(net, _sgd(net))
    assert r.passed and r.details["network"] == LINE and r.details["framework"] == "torch"
    assert any("nn.CrossEntropyLoss would apply a second softmax" in n for n in r.notes)


def test_torch_logits_pass_when_the_loss_applies_the_softmax():
    net = _torch_net(softmax=False)
    assert check.model(net, _sgd(net), loss=nn.CrossEntropyLoss()).passed
    r = check.model(net, _sgd(net))
    assert not r.passed and r.problems[0].startswith("the output layer has no softmax")
    r = check.model(_torch_net(), _sgd(net), loss=nn.CrossEntropyLoss())
    assert "CrossEntropyLoss applies one again: twice" in r.problems[0]


class Functional(nn.Module):
    """Activations written as functions in forward: only a trace sees them."""

    def __init__(self, dim=1):
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(
            [nn.Linear(784, 128), nn.Linear(128, 128), nn.Linear(128, 128), nn.Linear(128, 10)]
        )

    def forward(self, x):
        x = x.view(x.size(0), -1)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return F.softmax(self.layers[-1](x), dim=self.dim)


def test_functional_activations_are_read_from_the_trace():
    net = Functional()
    r = check.model(net, _sgd(net))
    assert r.passed and r.details["network"] == LINE
    net = Functional(dim=0)
    r = check.model(net, _sgd(net))
    assert r.problems == ["the softmax runs over dimension 0: across the batch, not the classes"]


class Branchy(Functional):
    def forward(self, x):  # data-dependent control flow: torch.fx cannot trace it
        if x.sum() > 0:
            x = x * 1.0
        return super().forward(x)


def test_an_untraceable_module_is_read_from_its_layers_with_a_note():
    net = Branchy()
    r = check.model(net, _sgd(net))
    assert "torch.fx cannot trace its forward" in r.notes[0]
    assert "hidden layer 1 has no activation" in r.problems[0]  # F.relu is not a layer


def test_torch_optimizer_slips():
    net = _torch_net()
    r = check.model(net, _sgd(net, lr=10, momentum=0, nesterov=False))
    assert r.problems == ["the learning rate is 10.0", "momentum is 0.0", "nesterov is False"]
    assert r.hint == "the tutorial's retraining cell spells out every parameter of its SGD"
    r = check.model(net, _sgd(net, weight_decay=1e-6))
    assert r.problems[0].startswith("weight_decay is 1e-06: that is an L2 pull on the weights")
    r = check.model(net, _sgd(_torch_net()))
    assert r.problems == ["the optimizer does not update this model's parameters"]
    r = check.model(net)
    assert r.problems == ["no optimizer to check: pass it: check.model(model, opt)"]
    r = check.model(net, torch.optim.Adam(net.parameters()))
    assert r.problems == ["the optimizer is adam, not the tutorial's"]


def test_a_network_that_cannot_take_an_image_says_so():
    net = nn.Sequential(nn.Linear(100, 10), nn.Softmax(dim=1))
    r = check.model(net, _sgd(net))
    assert r.problems[0].startswith("the model fails on a batch of 2 images of 784 pixels:")
    assert "the first layer takes 100 values per image, not one per pixel" in r.problems


def test_something_else_is_not_yet_not_a_traceback():
    r = check.model("Dense(128)")
    assert not r.passed and r.problems == ["a str is not a network this check reads"]


# ---- Keras: the bench extra -------------------------------------------------------------
def _keras():
    return pytest.importorskip(
        "keras", reason="Keras is not installed: pip install 'mnistlab[bench]' to test its check"
    )


def test_a_compiled_keras_model_is_read_from_its_layer_configs():
    keras = _keras()
    layers = keras.layers
    model = keras.Sequential(
        [keras.Input((784,))]
        + [layers.Dense(128, activation="relu") for _ in range(3)]
        + [layers.Dense(10, activation="softmax")]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss="categorical_crossentropy",
    )
    r = check.model(model)
    assert r.passed and r.details["network"] == LINE and r.details["framework"] == "keras"
    assert any(n.startswith("SGD in keras has no decay argument") for n in r.notes)


def test_keras_slips_are_named():
    keras = _keras()
    layers = keras.layers
    model = keras.Sequential(
        [keras.Input((784,)), layers.Dense(128, activation="relu"), layers.Dense(128)]
        + [layers.Activation("relu"), layers.Dropout(0.2), layers.Dense(128, activation="relu")]
        + [layers.Dense(10), layers.Softmax()]
    )
    r = check.model(model)
    assert "Dropout(0.2) after hidden layer 2: not in the tutorial's network" in r.problems[0]
    assert r.problems[-1] == "no optimizer to check: compile the model with it"
    model.compile(
        optimizer=keras.optimizers.SGD(10.0),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    r = check.model(model)
    assert any("applies one again: twice" in p for p in r.problems)
    assert "the learning rate is 10.0" in r.problems
