"""The floor: how fast this machine can do just the matrix products of the notebook's recipe.

A batch-32 training step of 784-128-128-128-10 is 11 matrix products: 4 forward, 4 weight
gradients (a^T @ delta) and 3 input gradients (delta @ W^T; none for the input layer). Their
FLOPs (2*m*k*n each) over one epoch, divided by this machine's sgemm throughput at exactly
those shapes, is the time no implementation can beat without changing the maths. mnistlab's
measured training pass is then reported as a multiple of that floor.

    python bench/floor.py                      # numpy and torch, 1 thread, Fashion-MNIST
    python bench/floor.py --threads 2 --no-torch
    python bench/floor.py --dataset mnist --layouts --json out/floor.json

Transposed operands are views (as the fast engine uses them); outputs are preallocated.
``--layouts`` also times each input gradient ``da = d @ W^T`` against the same product on a
contiguous transposed copy of W (what keeping both orientations hot would cost and save: the
copy must be refreshed after every update). Figures are best-of-repeats (a floor), noisy on a
shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_peers"))
sys.path.insert(0, str(HERE))
import _machine  # noqa: E402  (bench/_machine.py)


def step_products(
    sizes: list[int], batch: int
) -> list[tuple[str, tuple[int, int, int], bool, bool]]:
    """(name, (m, k, n), transpose_a, transpose_b) of every product in one training step."""
    prods = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        prods.append((f"fwd  a{i} @ W{i}", (batch, fan_in, fan_out), False, False))
    for i in reversed(range(len(sizes) - 1)):
        fan_in, fan_out = sizes[i], sizes[i + 1]
        prods.append((f"dW{i} = a{i}^T @ d{i}", (fan_in, batch, fan_out), True, False))
        if i > 0:  # the input layer's gradient w.r.t. the pixels is never needed
            prods.append((f"da{i} = d{i} @ W{i}^T", (batch, fan_out, fan_in), False, True))
    return prods


def flops(prods) -> int:
    return sum(2 * m * k * n for _, (m, k, n), _, _ in prods)


def _operands(lib, prods, rng):
    """Random float32 operands laid out as an engine holds them (transposes are views)."""
    ops = []
    for _, (m, k, n), ta, tb in prods:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        if lib == "torch":
            import torch

            a, b, out = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
        ops.append((a.T if ta else a, b.T if tb else b, out))
    return ops


def time_products(lib: str, prods, steps: int, repeats: int) -> dict:
    """Seconds for ``steps`` back-to-back steps' worth of products (best and median of repeats)
    and each product's best microseconds per call."""
    rng = np.random.default_rng(0)
    ops = _operands(lib, prods, rng)
    if lib == "torch":
        import torch

        mm = lambda a, b, out: torch.mm(a, b, out=out)  # noqa: E731
        ctx = torch.inference_mode()
    else:
        import contextlib

        mm = lambda a, b, out: np.matmul(a, b, out=out)  # noqa: E731
        ctx = contextlib.nullcontext()
    with ctx:
        for a, b, out in ops * 20:  # warm caches and thread pools
            mm(a, b, out)
        totals = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                for a, b, out in ops:
                    mm(a, b, out)
            totals.append(time.perf_counter() - t0)
        each = []
        for a, b, out in ops:
            best = math.inf
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(200):
                    mm(a, b, out)
                best = min(best, (time.perf_counter() - t0) / 200)
            each.append(best * 1e6)
    return {"best_s": min(totals), "median_s": statistics.median(totals), "each_us": each}


def _best_us(repeats: int, fn, *args, calls: int = 200, **kwargs) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(*args, **kwargs)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def time_layouts(prods, repeats: int) -> list[dict]:
    """Each input gradient ``da = d @ W^T`` (NumPy) three ways, best microseconds per call:
    on the transposed view of W (the engine's call), on a contiguous copy WT (no transpose in
    sgemm), and the refresh of that copy from W (needed after every update of W)."""
    rng = np.random.default_rng(1)
    out = []
    for name, (m, k, n), _, tb in prods:
        if not tb:
            continue
        d = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((n, k)).astype(np.float32)  # (fan_in, fan_out), as stored
        wt = np.ascontiguousarray(w.T)
        c = np.empty((m, n), np.float32)
        view = _best_us(repeats, np.matmul, d, w.T, out=c)
        copy = _best_us(repeats, np.matmul, d, wt, out=c)
        refresh = _best_us(repeats, np.copyto, wt, w.T)
        out.append(
            {
                "product": name,
                "mkn": [m, k, n],
                "view_us": view,
                "copy_us": copy,
                "refresh_us": refresh,
            }
        )
    return out


def print_layouts(rows: list[dict], steps: int) -> None:
    print("input gradients: d @ W^T on the view vs on a kept transposed copy (best us per call)")
    saved = 0.0
    for r in rows:
        m, k, n = r["mkn"]
        gflops = [2 * m * k * n / r[key] / 1e3 for key in ("view_us", "copy_us")]
        net = r["view_us"] - r["copy_us"] - r["refresh_us"]
        saved += net
        print(
            f"  {r['product']:18s} view {r['view_us']:6.1f} ({gflops[0]:4.0f} GFLOP/s), copy "
            f"{r['copy_us']:6.1f} ({gflops[1]:4.0f}) + refresh {r['refresh_us']:5.1f}: "
            f"{net:+6.1f} us saved per step"
        )
    print(f"  keeping both orientations would save {saved * steps / 1e6:+.3f} s per epoch")


def mnistlab_epoch(dataset: str, epochs: int, threads: int | None, limit: int | None) -> dict:
    """mnistlab's training-pass seconds on the notebook's recipe (warm epochs' median)."""
    import tempfile

    import common
    import frameworks
    import mnistlab_engine

    args = frameworks.parse_args(
        ["--dataset", dataset] + (["--limit", str(limit)] if limit else [])
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        frameworks.prepare(args, 0, path)
        d = common.load(str(path))
    eng, clock, train_s, _ = mnistlab_engine.train(d, epochs, threads=threads)
    warm = train_s[1:] if len(train_s) > 1 else train_s
    whole = clock.seconds[1:] if len(clock.seconds) > 1 else clock.seconds
    return {
        "train_s": statistics.median(warm),
        "epoch_s": statistics.median(whole),
        "n_train": d["n_train"],
        "engine": eng.name,
        "threads": getattr(eng, "threads", None),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "mnist"))
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS / torch threads for the products (mnistlab's default is 1)",
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3, help="mnistlab epochs to time")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="time fewer steps and train on the first N images (smoke runs)",
    )
    p.add_argument("--no-torch", action="store_true", help="skip torch's throughput")
    p.add_argument("--no-mnistlab", action="store_true", help="skip timing mnistlab's epoch")
    p.add_argument(
        "--layouts",
        action="store_true",
        help="also time d @ W^T on a kept transposed copy of W (and its refresh)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or args.epochs < 1:
        p.error("--threads, --repeats and --epochs take integers >= 1")
    machine = _machine.header(torch=not args.no_torch)

    from mnistlab.recipe import Recipe

    recipe = Recipe()
    sizes = [784, *recipe.hidden, 10]
    n_train = math.floor((args.limit or 60_000) * (1 - recipe.validation_split))  # as Keras
    steps = math.ceil(n_train / recipe.batch_size)
    prods = step_products(sizes, recipe.batch_size)
    gflop_epoch = flops(prods) * steps / 1e9
    print(
        f"recipe {'-'.join(map(str, sizes))}, batch {recipe.batch_size}: {len(prods)} products "
        f"per step, {flops(prods) / 1e6:.2f} MFLOP per step, {steps} steps per epoch = "
        f"{gflop_epoch:.2f} GFLOP per epoch; {args.threads} thread(s); noisy on a shared machine"
    )

    from threadpoolctl import threadpool_limits

    results, layouts = {}, None
    with threadpool_limits(limits=args.threads, user_api="blas"):
        results["numpy"] = time_products("numpy", prods, steps, args.repeats)
        if args.layouts:
            layouts = time_layouts(prods, args.repeats)
    mnist = None
    if not args.no_mnistlab:  # before torch: its thread pool must not be around during this
        mnist = mnistlab_epoch(args.dataset, args.epochs, args.threads, args.limit)
    if not args.no_torch:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            print("skipping torch: not installed (pip install torch==2.13.0)")
        else:
            import torch

            torch.set_num_threads(args.threads)
            results["torch"] = time_products("torch", prods, steps, args.repeats)

    from rich.console import Console
    from rich.table import Table

    t = Table(title="one step's products: best microseconds per call (GFLOP/s)")
    t.add_column("product")
    t.add_column("m x k x n", justify="right")
    for lib in results:
        t.add_column(lib, justify="right")
    for j, (name, (m, k, n), _, _) in enumerate(prods):
        t.add_row(
            name,
            f"{m}x{k}x{n}",
            *(
                f"{r['each_us'][j]:.1f} ({2 * m * k * n / r['each_us'][j] / 1e3:.0f})"
                for r in results.values()
            ),
        )
    Console(width=120).print(t)
    floor = {}
    for lib, r in results.items():
        floor[lib] = r["best_s"]
        print(
            f"{lib:6s}: one epoch of products back to back {r['best_s']:.3f} s best, "
            f"{r['median_s']:.3f} s median = {gflop_epoch / r['best_s']:.0f} GFLOP/s "
            f"(sum of single products {sum(r['each_us']) * steps / 1e6:.3f} s)"
        )
    best_lib = min(floor, key=floor.get)
    print(f"floor per epoch (training products only): {floor[best_lib]:.3f} s ({best_lib})")
    if mnist:
        print(
            f"mnistlab ({mnist['engine']} engine, threads {mnist['threads']}): training pass "
            f"{mnist['train_s']:.3f} s = {mnist['train_s'] / floor[best_lib]:.2f}x the floor; "
            f"whole epoch incl. validation {mnist['epoch_s']:.3f} s = "
            f"{mnist['epoch_s'] / floor[best_lib]:.2f}x"
        )
    if layouts:
        print_layouts(layouts, steps)
    if args.json is not None:
        report = {
            "machine": machine,
            "args": {k: str(v) for k, v in vars(args).items()},
            "products": [{"product": name, "mkn": list(mkn)} for name, mkn, _, _ in prods],
            "libraries": results,
            "floor_s": floor[best_lib],
            "floor_library": best_lib,
            "mnistlab": mnist,
            "layouts": layouts,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
