"""Micro-benchmark of the fast engine's design decisions, one epoch of the notebook's recipe each.

    .venv/bin/python bench/engine_steps.py [--repeats 5] [--data-dir ../shared/data/mnist]

Variants, interleaved (each repetition runs every variant once, so machine noise spreads evenly),
reported as min and median seconds per epoch (42,000 training samples in batches of 32 plus
evaluation of 18,000) and as ratios to the numba backend at its chosen thread count:

* ``matmul floor``  - only the 11 sgemm products of each step (np.matmul with out=): no engine
  can go below this with the same BLAS;
* ``numpy``         - engines/fast_numpy.py (preallocated buffers, in-place ops);
* ``numba``         - engines/fast_numba.py (whole chunks of steps compiled, elementwise fused);
* ``numba scipy-blas`` - the numba backend with numba's own np.dot (scipy's OpenBLAS) instead of
  NumPy's OpenBLAS through ctypes (fast_numba.NUMPY_SGEMM);
* floor and numba also at 2 BLAS threads (threadpoolctl);
* ``torch autograd``- the reference engine (torch, 1 thread), when torch is installed.

Both wall-clock and CPU seconds (this process) are printed: on a shared machine the CPU time is
the steadier figure of the work done (all variants but the 2-thread ones run on one thread).

The first numba call compiles (or loads numba's cache); that one-time cost is printed apart.

``--variants`` instead times the notebook's "try to beat this" variants on the fast engine
(training pass only, CPU seconds per epoch, interleaved), as ratios to the plain SGD epoch:

    .venv/bin/python bench/engine_steps.py --variants [--repeats 5] [--backend numpy]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # noqa: E402  (bench/_machine.py)

ROOT = Path(__file__).resolve().parents[1]


def load_data(data_dir: Path | None):
    """The notebook's split: first 70 % train, last 30 % validation; train-part mean/std."""
    from mnistlab.datasets import load

    d = data_dir or ROOT.parent / "shared" / "data" / "mnist"
    try:
        ds = load("mnist", data_dir=d)
        source = f"MNIST from {d}"
    except Exception as exc:  # benchmark only: say what was used instead
        print(f"note: full MNIST not loadable ({exc}); using random data of the same shapes")
        rng = np.random.default_rng(0)
        ds = None
        x = rng.integers(0, 256, (60_000, 784)).astype(np.float32)
        y = rng.integers(0, 10, 60_000)
        source = "random"
    if ds is not None:
        x = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float32)
        y = ds.y_train.astype(np.int64)
    n_tr = int(round(len(x) * 0.7))
    mean, std = x[:n_tr].mean(), x[:n_tr].std()
    x = (x - mean) / std
    return (
        np.ascontiguousarray(x[:n_tr]),
        y[:n_tr],
        np.ascontiguousarray(x[n_tr:]),
        y[n_tr:],
        source,
    )


def matmul_floor_epoch(eng, x, order, bs=32) -> None:
    """The 11 products of every step, nothing else (same shapes and buffers as the engine)."""
    ws = eng.kernels
    acts = [np.empty((bs, w.shape[0]), np.float32) for w in ws] + [np.empty((bs, 10), np.float32)]
    grads = [np.empty_like(w) for w in ws]
    for k in range(len(order) // bs):
        np.take(x, order[k * bs : (k + 1) * bs], axis=0, out=acts[0])
        for i, w in enumerate(ws):
            np.matmul(acts[i], w, out=acts[i + 1])
        for i in range(len(ws) - 1, -1, -1):
            np.matmul(acts[i].T, acts[i + 1], out=grads[i])
            if i > 0:
                np.matmul(acts[i + 1], ws[i].T, out=acts[i])


VARIANTS = {
    "notebook (sgd)": {},
    "adam": {"optimizer": "adam", "learning_rate": 1e-3},
    "rmsprop": {"optimizer": "rmsprop", "learning_rate": 1e-3},
    "adamw": {"optimizer": "adamw", "learning_rate": 1e-3},
    "nadam": {"optimizer": "nadam", "learning_rate": 1e-3},
    "adagrad": {"optimizer": "adagrad"},
    "adadelta": {"optimizer": "adadelta", "learning_rate": 1.0},
    "l2 1e-4": {"l2": 1e-4},
    "dropout 0.2": {"dropout": 0.2},
    "batch norm": {"batch_norm": True},
    "max-norm 3": {"max_norm": 3.0},
    "all combined": {
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "l2": 1e-4,
        "dropout": 0.2,
        "batch_norm": True,
        "max_norm": 3.0,
    },
}


def time_variants(xtr, ytr, source: str, repeats: int, backend: str) -> None:
    """CPU s/epoch of each variant's training pass, interleaved; ratio to the notebook's."""
    from mnistlab.engines.fast import FastEngine
    from mnistlab.engines.init import init_weights
    from mnistlab.recipe import Recipe
    from mnistlab.training.schedules import learning_rates, steps_per_epoch

    engines = {}
    for name, kw in VARIANTS.items():
        r = Recipe(threads=1, **kw)
        engines[name] = FastEngine(r, init_weights(r), backend=backend)
    steps = steps_per_epoch(len(xtr), 32)
    first = engines["notebook (sgd)"]  # compile or load numba's cache outside the timing
    first.train_epoch(xtr[:64], ytr[:64], np.arange(64), learning_rates(first.recipe, 0, 2), 0)
    cpu: dict[str, list[float]] = {k: [] for k in engines}
    for rep in range(repeats):
        order = np.random.default_rng([0, rep]).permutation(len(xtr))
        for name, eng in engines.items():
            lrs = learning_rates(eng.recipe, rep, steps)
            c = time.process_time()
            eng.train_epoch(xtr, ytr, order, lrs, rep)
            cpu[name].append(time.process_time() - c)
        print(f"  repetition {rep + 1}/{repeats} done", file=sys.stderr)
    ref = statistics.median(cpu["notebook (sgd)"])
    print(
        f"data: {source}; fast engine, {backend} back end, 1 thread; CPU seconds per training "
        f"epoch ({len(xtr)} samples, batch 32), {repeats} interleaved repetitions"
    )
    print(f"{'variant':16s} {'min':>6s} {'median':>7s} {'ratio':>6s}")
    for name, ts in cpu.items():
        med = statistics.median(ts)
        print(f"{name:16s} {min(ts):6.3f} {med:7.3f} {med / ref:6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--no-torch", action="store_true", help="skip the torch autograd variant")
    ap.add_argument(
        "--variants",
        action="store_true",
        help="time the notebook's variants on the fast engine instead",
    )
    ap.add_argument("--backend", default="numba", choices=("numba", "numpy"))
    args = ap.parse_args()
    _machine.header(torch=not args.no_torch)

    from threadpoolctl import threadpool_limits

    from mnistlab.engines.fast import FastEngine, numba_available
    from mnistlab.engines.init import init_weights
    from mnistlab.recipe import Recipe
    from mnistlab.training.schedules import learning_rates, steps_per_epoch

    xtr, ytr, xva, yva, source = load_data(args.data_dir)
    if args.variants:
        time_variants(xtr, ytr, source, args.repeats, args.backend)
        return
    base = Recipe()
    w0 = init_weights(base)
    steps = steps_per_epoch(len(xtr), base.batch_size)
    print(f"data: {source}; train {len(xtr)}, validation {len(xva)}, {steps} steps/epoch")

    one = base.replace(threads=1)
    variants: dict[str, object] = {"numpy  1 thr": FastEngine(one, w0, backend="numpy")}
    if numba_available():
        variants["numba  1 thr"] = FastEngine(one, w0, backend="numba")
        variants["numba scipy-blas 1 thr"] = FastEngine(one, w0, backend="numba", numpy_blas=False)
        variants["numba  2 thr"] = FastEngine(base.replace(threads=2), w0, backend="numba")
    if numba_available():
        eng = variants["numba  1 thr"]
        t = time.perf_counter()
        eng.train_epoch(xtr[:64], ytr[:64], np.arange(64), learning_rates(base, 0, 2), 0)
        print(f"numba first call (compile or cache load): {time.perf_counter() - t:.2f} s")
    if not args.no_torch:
        try:
            t = time.perf_counter()
            from mnistlab.engines.reference import ReferenceEngine

            variants["torch autograd 1 thr"] = ReferenceEngine(one, w0, device="cpu")
            print(f"import torch + reference engine: {time.perf_counter() - t:.2f} s")
        except ImportError as exc:
            print(f"note: torch variant skipped ({exc})")

    names = ["matmul floor 1 thr", "matmul floor 2 thr", *variants]
    times: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for rep in range(args.repeats):
        order = np.random.default_rng([0, rep]).permutation(len(xtr))
        lrs = learning_rates(base, rep, steps)
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="blas"):
                t, c = time.perf_counter(), time.process_time()
                matmul_floor_epoch(variants["numpy  1 thr"], xtr, order)
                times[f"matmul floor {threads} thr"].append(time.perf_counter() - t)
                cpu[f"matmul floor {threads} thr"].append(time.process_time() - c)
        for name, eng in variants.items():
            t, c = time.perf_counter(), time.process_time()
            eng.train_epoch(xtr, ytr, order, lrs, rep)
            eng.evaluate(xva, yva)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
        print(f"  repetition {rep + 1}/{args.repeats} done", file=sys.stderr)

    ref_name = "numba  1 thr" if "numba  1 thr" in times else "numpy  1 thr"
    ref = statistics.median(times[ref_name])
    print(
        f"\nseconds per epoch (train {len(xtr)} + validate {len(xva)}), "
        f"{args.repeats} interleaved repetitions; ratio = median / median of '{ref_name}'"
    )
    cref = statistics.median(cpu[ref_name])
    print(
        f"{'variant':24s} {'wall min':>8s} {'median':>7s} {'ratio':>6s}   {'cpu min':>7s} "
        f"{'median':>7s} {'ratio':>6s}"
    )
    for name, ts in times.items():
        med, cmed = statistics.median(ts), statistics.median(cpu[name])
        print(
            f"{name:24s} {min(ts):8.3f} {med:7.3f} {med / ref:6.2f}   {min(cpu[name]):7.3f} "
            f"{cmed:7.3f} {cmed / cref:6.2f}"
        )
    print("(matmul floor rows: products only, no validation, no elementwise work, no update)")

    # inference target: all 10,000 test-set-sized rows
    from mnistlab.engines.fast import predict_proba

    xt = xva[:10_000]
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            ts = []
            for _ in range(max(3, args.repeats)):
                t = time.perf_counter()
                predict_proba(base, w0, xt)
                ts.append(time.perf_counter() - t)
        print(
            f"predict_proba 10,000 rows, {threads} thr: min {min(ts) * 1e3:.1f} ms, "
            f"median {statistics.median(ts) * 1e3:.1f} ms"
        )


if __name__ == "__main__":
    main()
