"""Small trained runs for the look-inside tests, each trained once per test session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mnistlab import datasets
from mnistlab.recipe import Recipe

RECIPES = {
    # two relu layers: the exact attribution path; 1 epoch on 3,000 digits is ~90 % accurate
    "mlp": Recipe(name="mlp", epochs=1, hidden=[32, 16], validation_split=0.0),
    # two conv blocks (28 -> 14 -> 7) and a Dense layer, on the torch engine
    "cnn": Recipe(
        name="cnn",
        kind="cnn",
        conv_channels=[4, 6],
        hidden=[12],
        epochs=1,
        batch_size=64,
        optimizer="adam",
        learning_rate=0.003,
        validation_split=0.0,
        engine="reference",
    ),
}


def small_run(tmp_path_factory, kind: str) -> Path:
    from mnistlab.training.fit import fit

    path = tmp_path_factory.getbasetemp() / f"inside-{kind}"
    if not (path / "model.safetensors").exists():
        ds = datasets.load("mnist-sample")
        part = dataclasses.replace(ds, x_train=ds.x_train[:3000], y_train=ds.y_train[:3000])
        fit(RECIPES[kind], part, out=path, quiet=True)
    return path
