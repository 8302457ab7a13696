"""Inference speed through mnistlab's public predict path: ``rundir.Run.predict_proba``.

Batched: the 10,000 MNIST test images (raw uint8 in, probabilities out, so preprocessing
counts) in one call; goal <= 50 ms. Single image: latency of one call per image, p50 / p99.
Without a run folder, a quick model is trained first (the notebook's recipe, 1 epoch, untimed).

    python bench/inference.py                       # train a quick model, then measure
    python bench/inference.py runs/2026-...-notebook
    python bench/inference.py --threads 1 --singles 2000

Noisy on a shared machine: figures are medians (batched) and percentiles (single).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _machine  # noqa: E402  (bench/_machine.py)

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "mnist"
GOAL_MS = 50.0


def quick_run(out: Path, data_dir: Path, preset: str, epochs: int):
    """Train ``preset`` for ``epochs`` on MNIST into ``out`` and return the loaded run."""
    from mnistlab.recipe import load_preset
    from mnistlab.training import fit as train

    recipe = load_preset(preset).replace(epochs=epochs)
    return train.fit(recipe, dataset="mnist", data_dir=data_dir, out=out, quiet=True)


def batched(run, x: np.ndarray, repeats: int) -> list[float]:
    run.predict_proba(x)  # warm: first call builds the predictor and touches the pages
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run.predict_proba(x)
        times.append(time.perf_counter() - t0)
    return times


def singles(run, x: np.ndarray, n: int) -> np.ndarray:
    run.predict_proba(x[:1])
    lat = np.empty(n)
    for i in range(n):
        img = x[i % len(x) : i % len(x) + 1]
        t0 = time.perf_counter()
        run.predict_proba(img)
        lat[i] = time.perf_counter() - t0
    return lat


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "run",
        nargs="?",
        type=Path,
        default=None,
        help="a run folder (default: train a quick model in a temporary folder)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with full MNIST's IDX files (test images)",
    )
    p.add_argument("--preset", default="notebook", help="recipe of the quick model")
    p.add_argument("--epochs", type=int, default=1, help="epochs of the quick model")
    p.add_argument("--repeats", type=int, default=20, help="batched evaluations to time")
    p.add_argument("--singles", type=int, default=1000, help="single-image calls to time")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="limit BLAS threads (default: the library's own choice)",
    )
    p.add_argument("--limit", type=int, default=None, help="use the first N test images")
    args = p.parse_args(argv)
    for name in ("repeats", "singles", "epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected an integer >= 1")

    from mnistlab import datasets, rundir
    from mnistlab.errors import MnistlabError

    try:
        given = None if args.run is None else rundir.load_run(args.run)  # bad input: 1 line
        _machine.header()
        ds = datasets.load("mnist", data_dir=args.data_dir, download=False, quiet=True)
        with tempfile.TemporaryDirectory(prefix="mnistlab-inference-") as tmp:
            run = given
            if run is None:
                print(f"training a quick model ({args.preset}, {args.epochs} epoch(s)) ...")
                run = quick_run(Path(tmp) / "run", args.data_dir, args.preset, args.epochs)
            x, y = ds.x_test[: args.limit], ds.y_test[: args.limit]
            x = np.ascontiguousarray(x)
            return measure(run, x, y, args)
    except MnistlabError as exc:
        print(f"error: {exc}")
        return 2


def measure(run, x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> int:
    import contextlib

    from threadpoolctl import threadpool_info, threadpool_limits

    limit = (
        threadpool_limits(args.threads, user_api="blas")
        if args.threads
        else contextlib.nullcontext()
    )
    with limit:
        blas = [
            f"{i['internal_api']} {i['num_threads']} thread(s)"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        ]
        acc = float((run.predict_proba(x).argmax(1) == y).mean())
        bt = batched(run, x, args.repeats)
        pre = []
        for _ in range(5):
            t0 = time.perf_counter()
            run.preprocess(x)
            pre.append(time.perf_counter() - t0)
        lat = singles(run, x, args.singles)
    med = statistics.median(bt)
    print(
        f"model: {run.recipe.name} ({run.recipe.kind}, hidden {run.recipe.hidden}), "
        f"test accuracy {acc * 100:.2f} % on {len(x)} images; BLAS: {', '.join(blas) or '?'}"
    )
    print(
        f"batched: {len(x)} images in {med * 1e3:.1f} ms median (best {min(bt) * 1e3:.1f} ms, "
        f"{args.repeats} repeats) = {len(x) / med:,.0f} predictions/s; raw uint8 in, "
        f"incl. {statistics.median(pre) * 1e3:.1f} ms of preprocessing"
    )
    p50, p99 = np.percentile(lat, [50, 99]) * 1e6
    print(
        f"single image: p50 {p50:.0f} us, p99 {p99:.0f} us ({args.singles} calls) "
        f"= {1 / np.median(lat):,.0f} calls/s"
    )
    scaled = med * 10_000 / len(x) * 1e3
    verdict = "meets" if scaled <= GOAL_MS else "misses"
    print(
        f"goal: 10,000 test images in <= {GOAL_MS:.0f} ms: {scaled:.1f} ms "
        f"({verdict}; noisy on a shared machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
