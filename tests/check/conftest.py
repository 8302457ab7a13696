"""Shared fixtures of the check tests: real runs trained on the bundled sample (2 epochs each,
about half a second apiece), trained once per session."""

from __future__ import annotations

import pytest

EPOCHS = 2


@pytest.fixture(scope="session")
def sample():
    from mnistlab import datasets

    return datasets.load("mnist-sample")


@pytest.fixture(scope="session")
def runs(tmp_path_factory, sample):
    """name -> Run: the notebook's baseline under seeds 0..5, batch norm trained twice as long
    (the answer key's pick, a clear gain) under seeds 0 and 1, and raw pixels at learning rates
    0.01 and 0.001."""
    import mnistlab
    from mnistlab.recipe import Recipe

    root = tmp_path_factory.mktemp("check-runs")
    recipes = {f"base{s}": Recipe(epochs=EPOCHS, seed=s) for s in range(6)}
    recipes |= {f"bn{s}": Recipe(epochs=2 * EPOCHS, seed=s, batch_norm=True) for s in range(2)}
    recipes["raw"] = Recipe(epochs=EPOCHS, normalize="none")
    recipes["raw-small"] = Recipe(epochs=EPOCHS, normalize="none", learning_rate=0.001)
    return {
        name: mnistlab.fit(r.replace(name=name), sample, out=root / name, quiet=True)
        for name, r in recipes.items()
    }


@pytest.fixture
def flat(sample):
    """The sample as the tutorial shapes it: rows of 784 pixels."""
    return (
        sample.x_train.reshape(len(sample.x_train), -1),
        sample.x_test.reshape(len(sample.x_test), -1),
    )
