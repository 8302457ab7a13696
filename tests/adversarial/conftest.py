"""Shared pieces of the adversarial tests: a complete run folder without training."""

from __future__ import annotations

from pathlib import Path

import pytest


def make_run(d: Path, recipe=None) -> Path:
    """A complete run folder written with rundir's own writers (an untrained network)."""
    from mnistlab import fsio, rundir
    from mnistlab.engines.init import init_weights
    from mnistlab.recipe import Recipe

    recipe = recipe or Recipe(hidden=[8])
    d.mkdir(parents=True, exist_ok=True)
    recipe.to_toml(d / rundir.RECIPE)
    weights = init_weights(recipe)
    rundir.write_model(d / rundir.MODEL, weights, 33.3, 78.6, tuple("0123456789"), recipe, "x")
    row = {"epoch": 1, "loss": 0.5, "accuracy": 0.9, "val_loss": None, "val_accuracy": None}
    rundir.write_history(d / rundir.HISTORY, [{**row, "learning_rate": 0.01, "seconds": 1.0}])
    rundir.update_metrics(d, {"test": {"loss": 0.3, "accuracy": 0.91}})
    env = {"engine": "fast", "dataset": {"name": "mnist-sample"}}
    fsio.atomic_write_json(d / rundir.ENVIRONMENT, env)
    return d


@pytest.fixture
def fake_run():
    """``fake_run(folder, recipe=None)``: a complete, untrained run folder there."""
    return make_run


@pytest.fixture
def silent_port():
    """A loopback port that accepts TCP connections and never answers a byte."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()
