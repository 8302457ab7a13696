"""Which recipe fields a recipe reads, declared once (recipe.applies): every condition names a
real field and flips with the setting it names."""

from __future__ import annotations

import dataclasses

import pytest

from mnistlab.recipe import SPECS, Recipe
from mnistlab.recipe.applies import WHEN, applies, not_applying


def test_every_condition_names_a_recipe_field():
    assert set(WHEN) <= set(SPECS)


def test_the_notebook_recipe_reads_neither_conv_nor_plateau_nor_augmentation():
    unread = set(not_applying(Recipe()))
    assert {"conv_channels", "kernel_size", "weight_decay", "monitor", "restore_best"} <= unread
    assert {n for n in SPECS if n.startswith(("plateau_", "augment_"))} <= unread
    assert {"step_size", "gamma", "min_lr"} <= unread
    assert not {"momentum", "nesterov", "warmup_epochs", "decay", "hidden", "dropout"} & unread


@pytest.mark.parametrize(
    "change, field",
    [
        ({"kind": "cnn"}, "kernel_size"),
        ({"schedule": "plateau"}, "plateau_patience"),
        ({"schedule": "plateau"}, "min_lr"),
        ({"schedule": "exponential"}, "gamma"),
        ({"schedule": "step"}, "step_size"),
        ({"optimizer": "adamw"}, "weight_decay"),
        ({"early_stopping": 3}, "restore_best"),
        ({"augment_rotate": 10.0}, "augment_shift"),
        ({"augment_elastic": 34.0}, "augment_elastic_sigma"),
    ],
)
def test_a_field_applies_once_its_condition_holds(change, field):
    assert not applies(Recipe(), field)
    assert applies(Recipe(**change), field)


def test_optimizer_fields_follow_what_each_optimizer_reads():
    assert applies(Recipe(optimizer="rmsprop"), "momentum")
    assert not applies(Recipe(optimizer="rmsprop"), "nesterov")
    assert not applies(Recipe(optimizer="adam"), "momentum")
    assert WHEN["momentum"].words == "optimizer = sgd or rmsprop"
    # a field without a condition is always read
    fields = [f.name for f in dataclasses.fields(Recipe)]
    assert all(applies(Recipe(), n) for n in fields if n not in WHEN)
