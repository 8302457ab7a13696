"""recipe/optimizers.py: one row per optimizer and activation, and every layer reads its facts."""

import pytest

from mnistlab.engines import spec
from mnistlab.engines.optim import Hyperparameters, optimizer_slots
from mnistlab.recipe import SPECS, Recipe
from mnistlab.recipe.optimizers import ACTIVATIONS, OPTIMIZERS, slot_names
from mnistlab.training.health import suggested_lr


def test_the_recipe_names_exactly_the_rows():
    assert SPECS["optimizer"].constraint.choices == tuple(OPTIMIZERS)
    assert SPECS["activation"].constraint.choices == tuple(ACTIVATIONS)
    assert set(spec.ACT) == set(spec.ACT_GRAD) == set(ACTIVATIONS)  # the oracle has each one


def test_kernel_codes_are_distinct_except_adam_and_adamw():
    codes = {}
    for row in OPTIMIZERS.values():
        codes.setdefault(row.code, []).append(row.name)
    assert sorted(codes.values()) == sorted(
        [["sgd"], ["adam", "adamw"], ["nadam"], ["rmsprop"], ["adagrad"], ["adadelta"]]
    )
    assert len({a.code for a in ACTIVATIONS.values()}) == len(ACTIVATIONS)


def test_keras_constants_and_classes():
    # Keras 3's defaults, written out here as the check of the table
    for name in ("adam", "adamw", "nadam"):
        row = OPTIMIZERS[name]
        assert (row.beta_1, row.beta_2, row.epsilon) == (0.9, 0.999, 1e-7)
    assert (OPTIMIZERS["rmsprop"].rho, OPTIMIZERS["adadelta"].rho) == (0.9, 0.95)
    assert OPTIMIZERS["adagrad"].slot_init == 0.1
    assert OPTIMIZERS["nadam"].momentum_cache_decay == 0.96 and OPTIMIZERS["nadam"].product_state
    assert [o.keras for o in OPTIMIZERS.values()] == [
        "SGD",
        "Adam",
        "AdamW",
        "Nadam",
        "RMSprop",
        "Adagrad",
        "Adadelta",
    ]


@pytest.mark.parametrize(
    "recipe,slots,fill",
    [
        (Recipe(), ["momentum"], 0.0),
        (Recipe(momentum=0.0), ["momentum"], 0.0),  # sgd keeps its slot at momentum 0
        (Recipe(optimizer="adamw"), ["m", "v"], 0.0),
        (Recipe(optimizer="rmsprop"), ["velocity"], 0.0),
        (Recipe(optimizer="rmsprop", momentum=0.5), ["velocity", "momentum"], 0.0),
        (Recipe(optimizer="adagrad"), ["accumulator"], 0.1),
        (Recipe(optimizer="adadelta"), ["accumulated_grad", "accumulated_delta_var"], 0.0),
    ],
)
def test_slots_follow_the_row(recipe, slots, fill):
    assert optimizer_slots(recipe) == (slots, fill)
    assert list(slot_names(recipe.optimizer, recipe.resolved().momentum)) == slots


def test_unset_fields_take_the_rows_values_and_only_readers_get_weight_decay():
    for name, row in OPTIMIZERS.items():
        r = Recipe(optimizer=name).resolved()
        assert (r.momentum, r.weight_decay) == (row.momentum, row.weight_decay)
    assert Hyperparameters.of(Recipe(optimizer="adamw")).weight_decay == 0.004
    assert (
        Hyperparameters.of(Recipe(optimizer="adam", weight_decay=0.1)).weight_decay == 0.0
    )  # not read


@pytest.mark.parametrize(
    "optimizer,working", [("sgd", 0.01)] + [(o, 0.001) for o in list(OPTIMIZERS)[1:]]
)
def test_health_suggests_at_most_the_rows_working_rate(optimizer, working):
    assert suggested_lr(Recipe(optimizer=optimizer, learning_rate=10)) == working
    assert suggested_lr(Recipe(optimizer=optimizer, learning_rate=1e-4)) == pytest.approx(1e-5)
