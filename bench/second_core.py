"""Can the notebook's recipe use the second core? Three ways to spend it, timed side by side.

The fast engine trains on one core by default (``engines.fast.default_threads``). This script
times one epoch (training pass + validation, as ``fit`` times it) of the notebook's recipe on
full MNIST in three arrangements, interleaved (order rotated each repetition) so a busy
machine slows them alike:

* ``1 thread``   - the shipped default: every product on one OpenBLAS thread, then validation.
* ``2 threads``  - OpenBLAS may split each product over two threads (``recipe.threads = 2``).
* ``overlap``    - 1 BLAS thread, but epoch k's validation runs in a second Python thread on a
  copy of epoch k's weights while epoch k+1 trains (the compiled steps release the GIL). This
  is the upper bound of pipelining validation; ``fit`` does not do it (see the closing lines).

    python bench/second_core.py                 # 4 epochs x 2 reps, median of epochs 2..N
    python bench/second_core.py --epochs 3 --reps 1 --json out.json

The figure per arrangement is the median wall time per epoch over epochs 2..N (epoch 1 pays
numba's cache load); ``overlap`` is (total wall time of N epochs incl. the last validation) / N.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _machine  # noqa: E402  (bench/_machine.py)
from variants import DEFAULT_DATA, prepare  # noqa: E402

ARRANGEMENTS = ("1 thread", "2 threads", "overlap")


def _epochs(arrangement: str, data, epochs: int) -> list[float]:
    """Seconds per epoch (``overlap``: the mean, since epochs interleave)."""
    from mnistlab.engines import make_engine
    from mnistlab.engines.init import init_weights
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import epoch_order
    from mnistlab.training.schedules import learning_rates, steps_per_epoch

    x, y, xv, yv = data
    threads = 2 if arrangement == "2 threads" else 1
    recipe = Recipe(engine="fast", threads=threads)
    engine = make_engine(recipe, init_weights(recipe))
    steps = steps_per_epoch(len(x), recipe.batch_size)
    checker = make_engine(recipe, init_weights(recipe)) if arrangement == "overlap" else None
    times, pending = [], None
    start = time.perf_counter()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        order = epoch_order(recipe.seed, epoch, len(x), recipe.shuffle)
        lrs = learning_rates(recipe, epoch, steps)
        engine.train_epoch(x, y, order, lrs, epoch)
        if checker is None:
            engine.evaluate(xv, yv)
            times.append(time.perf_counter() - t0)
            continue
        if pending is not None:
            pending.join()
        checker.load_state(engine.state())  # state() copies: epoch k+1 cannot touch it
        pending = threading.Thread(target=checker.evaluate, args=(xv, yv))
        pending.start()
    if pending is not None:
        pending.join()
        return [(time.perf_counter() - start) / epochs]
    return times[1:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (epoch 1 is not timed)")
    machine = _machine.header()
    data = prepare(args.dataset, args.data_dir, args.limit, 0.3)
    seconds: dict[str, list[float]] = {a: [] for a in ARRANGEMENTS}
    for rep in range(args.reps):
        order = ARRANGEMENTS[rep % 3 :] + ARRANGEMENTS[: rep % 3]
        for a in order:
            seconds[a] += _epochs(a, data, args.epochs)
    base = statistics.median(seconds["1 thread"])
    print(f"notebook recipe, {len(data[0]):,} training images, {args.reps} reps x {args.epochs}")
    print(f"{'arrangement':<12} {'s/epoch':>8} {'x 1 thread':>11}")
    result = {}
    for a in ARRANGEMENTS:
        s = statistics.median(seconds[a])
        result[a] = s
        print(f"{a:<12} {s:8.3f} {s / base:11.2f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "seconds": result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
