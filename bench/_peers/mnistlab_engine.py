"""mnistlab itself, through the engine API that ``mnistlab.training.fit.fit`` drives.

Timed exactly like the peers: an epoch is its training pass plus that epoch's validation. The
shuffling and learning rates are fit's (permutation from ``(seed, epoch)``, schedules module).
"""

REQUIRES = ("mnistlab",)


def train(d: dict, epochs: int, engine: str = "auto", threads: int | None = None):
    """Train the notebook's recipe on prepared arrays.

    Returns (engine, EpochClock of whole epochs incl. validation, the training passes' seconds
    alone, last validation accuracy).
    """
    import time

    import common
    import numpy as np

    from mnistlab.engines import make_engine
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import epoch_order
    from mnistlab.training.schedules import learning_rates, steps_per_epoch

    recipe = Recipe(
        seed=d["seed"],
        epochs=epochs,
        engine=engine,
        threads=threads,
        hidden=[k.shape[1] for k in d["kernels"][:-1]],
    )
    weights = {
        f"dense_{i}.{part}": w
        for i, (k, b) in enumerate(zip(d["kernels"], d["biases"]))
        for part, w in (("kernel", k), ("bias", b))
    }
    n = d["n_train"]
    x, y = np.ascontiguousarray(d["x_all"][:n]), d["y_all"][:n].astype(np.int64)
    xv, yv = np.ascontiguousarray(d["x_all"][n:]), d["y_all"][n:].astype(np.int64)
    eng = make_engine(recipe, weights)
    steps = steps_per_epoch(n, recipe.batch_size)
    clock = common.EpochClock()
    val_acc, train_seconds = float("nan"), []
    for epoch in range(epochs):
        order = epoch_order(recipe.seed, epoch, n)
        lrs = learning_rates(recipe, epoch, steps)
        clock.begin()
        t0 = time.perf_counter()
        eng.train_epoch(x, y, order, lrs, epoch)
        train_seconds.append(time.perf_counter() - t0)
        _, val_acc = eng.evaluate(xv, yv)
        clock.end()
    return eng, clock, train_seconds, val_acc


def main() -> None:
    import argparse
    import time

    import common

    p = argparse.ArgumentParser(description="notebook recipe in mnistlab (engine API)")
    p.add_argument("data")
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--engine", default="auto", choices=("auto", "fast", "reference"))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--one-core", action="store_true")
    args = p.parse_args()
    if args.one_core:
        common.pin_one_core()
    common.require(*REQUIRES)
    t0 = time.perf_counter()
    import mnistlab

    import_s = time.perf_counter() - t0
    d = common.load(args.data)
    eng, clock, _, val_acc = train(d, args.epochs, engine=args.engine, threads=args.threads)
    _, test_acc = eng.evaluate(d["x_test"], d["y_test"].astype("int64"))
    common.write(
        args.out,
        epoch_seconds=clock.seconds,
        test_accuracy=float(test_acc),
        val_accuracy=float(val_acc),
        import_seconds=import_s,
        n_train=d["n_train"],
        versions={"mnistlab": getattr(mnistlab, "__version__", "?")},
        threads=getattr(eng, "threads", None),
        note=f"engine={eng.name} ({getattr(eng, 'reason', '')})",
    )


if __name__ == "__main__":
    main()
