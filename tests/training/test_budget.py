"""memory.py: the peak-memory estimate that lets train refuse, in one line, what cannot fit."""

import pytest

from mnistlab.errors import RecipeError
from mnistlab.recipe import Recipe
from mnistlab.training import budget as memory


def test_the_notebook_recipe_is_counted_exactly():
    est = memory.estimate(Recipe(), 42000, 18000, 10000)
    # 784*128+128 + 128*128+128 + 128*128+128 + 128*10+10; sgd with momentum: one slot
    assert est.parameters == 134794
    assert est.weights == 134794 * 4 * 5
    assert est.data == 70000 * 784 * 5
    # augmentation redraws the training images into one more float32 copy each epoch
    shifted = memory.estimate(Recipe(augment_shift=2.0), 42000, 18000, 10000)
    assert shifted.data == est.data + 42000 * 784 * 4


def test_batch_norm_counts_trainable_parameters_and_stores_moving_statistics():
    plain = memory.estimate(Recipe(hidden=[64]), 42000, 18000, 10000)
    bn = memory.estimate(Recipe(hidden=[64], batch_norm=True), 42000, 18000, 10000)
    # gamma and beta are trained (weights, gradients, one momentum slot, checkpoint copies);
    # the moving mean and variance are only kept and checkpointed
    assert bn.parameters == plain.parameters + 2 * 64 == 784 * 64 + 64 + 64 * 10 + 10 + 128
    assert bn.weights == plain.weights + (2 * 64 * 5 + 2 * 64 * 2) * 4
    assert bn.activations == plain.activations


def test_cnn_widths_come_from_its_conv_and_pool_outputs():
    est = memory.estimate(
        Recipe(kind="cnn", conv_channels=[8], hidden=[16], batch_size=10), 100, 0, 0
    )
    # conv 28*28*8, pool 14*14*8, dense 16 and 10: pre-activation, activation, gradient each
    widths = 28 * 28 * 8 + 14 * 14 * 8 + 16 + 10
    assert est.activations == (10 * (784 + 3 * widths) + 1 * (784 + 2 * 28 * 28 * 8)) * 4
    assert est.parameters == (9 * 8 + 8) + (14 * 14 * 8 * 16 + 16) + (16 * 10 + 10)


def test_buffers_never_count_more_rows_than_the_data_has():
    # batch_size 60,000 on 2,000 images needs no more than batch_size 2,000
    big = memory.estimate(Recipe(batch_size=60_000), 2000, 0, 100)
    assert big == memory.estimate(Recipe(batch_size=2000), 2000, 0, 100)
    assert big.total < 2**30


@pytest.mark.parametrize(
    "recipe,part",
    [
        (Recipe(hidden=[65_536, 65_536]), "'hidden'"),  # the widest a recipe takes
        (Recipe(kind="cnn", conv_channels=[1024, 1024], batch_size=512), "'conv_channels'"),
    ],
)
def test_what_cannot_fit_says_how_much_and_what_to_reduce(recipe, part):
    with pytest.raises(
        RecipeError,
        match=rf"needs about [\d.]+ [GT]iB of memory .*{part}.*, "
        r"but 1.0 GiB is available",
    ):
        memory.check(recipe, 42000, 18000, 10000, free=2**30)
    assert memory.check(Recipe(), 42000, 18000, 10000, free=2**30).total < 2**30


def test_available_memory_is_known_here():
    free = memory.available()
    assert free is None or free > 0


def test_sizes_are_binary_units():
    assert memory.size(3 * 2**30) == "3.0 GiB" and memory.size(512) == "512 B"
