"""Every number a recipe takes has a range that makes sense for MNIST, stated in its error; every
value in range trains, one step outside is refused when the recipe is built."""

import dataclasses
import math
import typing

import pytest

from mnistlab import datasets
from mnistlab.errors import RecipeError
from mnistlab.recipe import SPECS, Recipe
from mnistlab.recipe.fields import Interval, IntList, OrUnset
from mnistlab.recipe.optimizers import OPTIMIZERS


def _interval(name):
    c = SPECS[name].constraint
    c = c.inner if isinstance(c, OrUnset) else c
    return c if isinstance(c, Interval) else None


NUMBERS = [name for name in SPECS if _interval(name)]


def _ends(c):
    """(the extreme accepted values, the nearest refused ones)."""
    if c.type is int:
        high = c.high - 1 if c.odd and c.high % 2 == 0 else c.high
        outside = [c.low - 1, high + 1] + ([c.low + 1] if c.odd else [])
        return [c.low, high], outside
    low_in, high_in = c.closed in ("both", "left"), c.closed in ("both", "right")
    low = c.low if low_in else math.nextafter(c.low, c.high)
    high = c.high if high_in else math.nextafter(c.high, c.low)
    outside = [math.nextafter(c.low, -math.inf) if low_in else c.low]
    outside += [math.nextafter(c.high, math.inf) if high_in else c.high]
    return [low, high], outside


def test_every_number_and_list_has_a_bounded_range():
    hints = typing.get_type_hints(Recipe)
    for name, hint in hints.items():
        args = typing.get_args(hint) if type(hint).__name__ == "UnionType" else ()
        base = next((a for a in args if a is not type(None)), hint)  # X | None -> X
        if base in (int, float):
            c = _interval(name)
            assert c is not None and math.isfinite(c.low) and math.isfinite(c.high), name
        if typing.get_origin(base) is list:
            assert isinstance(SPECS[name].constraint, IntList), name


@pytest.mark.parametrize("name", NUMBERS)
def test_one_step_outside_the_range_is_refused_with_the_range_in_one_line(name):
    c = _interval(name)
    for value in _ends(c)[1] + ["1", True, float("nan"), float("inf")]:
        with pytest.raises(RecipeError) as err:
            Recipe(**{name: value})
        assert str(err.value) == (
            f"recipe field '{name}': expected {SPECS[name].constraint.describe()}, got {value!r}"
        )


@pytest.mark.parametrize(
    "field,value,words",
    [  # values that crashed deep in training or ran for minutes before they had a range
        ("augment_elastic_sigma", 1e308, "a number of pixels in [0.1, 20]"),
        ("augment_shift", 1e39, "a number of pixels in [0, 14]"),
        ("kernel_size", 99, "an odd integer from 1 to 7"),
        ("hidden", [100_000_000], "a list of at most 32 integers from 1 to 65536"),
        ("seed", 2**64, "an integer from 0 to 4294967295"),
    ],
)
def test_values_that_broke_training_are_refused(field, value, words):
    with pytest.raises(RecipeError, match=f"field '{field}': expected {words}".replace("[", r"\[")):
        Recipe(**{field: value})


@pytest.fixture(scope="module")
def tiny():
    ds = datasets.load("mnist-sample")
    return dataclasses.replace(
        ds, x_train=ds.x_train[:100], y_train=ds.y_train[:100], x_test=ds.x_test[:50],
        y_test=ds.y_test[:50],
    )  # fmt: skip


@pytest.mark.parametrize("name", [n for n in NUMBERS if n not in ("threads", "kernel_size")])
def test_both_ends_of_every_range_train(name, tiny, tmp_path):
    """One epoch at each end; a value the data cannot take is a one-line error of fit's."""
    from mnistlab.training.fit import fit

    readers = [o.name for o in OPTIMIZERS.values() if name in o.reads]  # momentum, weight_decay
    for value in _ends(_interval(name))[0]:
        if name == "epochs" and value > 1:
            value = 2  # 10,000 epochs is a range end, not a test
        r = Recipe(**{"hidden": [4], "epochs": 1, "engine": "fast", name: value})
        for optimizer in readers or [r.optimizer]:
            out = tmp_path / f"{optimizer}-{value}"
            try:
                run = fit(r.replace(optimizer=optimizer), tiny, out=out, quiet=True)
            except RecipeError as err:  # e.g. validation_split 0.999.. of 100 images
                assert name == "validation_split" and "leaves none to train on" in str(err)
                continue
            assert len(run.history) >= 1


@pytest.mark.parametrize("kernel_size", [1, 7])
def test_both_ends_of_the_kernel_size_train_a_cnn(kernel_size, tiny, tmp_path):
    pytest.importorskip("torch")
    from mnistlab.training.fit import fit

    r = Recipe(kind="cnn", conv_channels=[2], kernel_size=kernel_size, hidden=[], epochs=1)
    assert len(fit(r, tiny, out=tmp_path / "run", quiet=True).history) == 1
