"""Seconds per epoch of the notebook's "try to beat this" variants, fast vs reference engine.

Each variant is the notebook's recipe (784-128x3-10, SGD nesterov 0.01, batch 32, last 30 % as
validation, standardized) with one change; "all" combines them. An epoch is what ``fit`` times:
one training pass plus the validation pass. Every (variant, engine) pair trains ``--epochs``
epochs from the same initial weights; the figure is the median of epochs 2..N over all
repetitions (epoch 1 pays numba's compile-cache load and torch's warm-up). Pairs run
interleaved (order rotated every repetition), so a busy machine slows all of them alike.

    python bench/variants.py                                  # full MNIST, 3 epochs, 2 reps
    python bench/variants.py --quick                          # 3,000 images, 2 epochs, 1 rep
    python bench/variants.py --variants notebook,adam --engines fast --json out.json

Columns: s/epoch per engine, the ratio to plain SGD (``notebook``) on the same engine, the
drift (last epoch over the second, median over repetitions: above 1 the epochs grow, as they did
with subnormal optimizer slots on Intel cores), and fast/reference (below 1: the fast engine is
quicker). A variant the fast engine cannot train (or that this version's recipe does not know)
is reported as "unsupported" with the reason. Goals: each variant <= 1.2x plain SGD on the fast
engine, drift <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _machine  # noqa: E402  (bench/_machine.py)

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "mnist"
ENGINES = ("fast", "reference")
# The notebook's suggestions, one at a time; the optimizers at Keras' default lr 0.001.
VARIANTS: dict[str, dict] = {
    "notebook": {},
    "adam": {"optimizer": "adam", "learning_rate": 0.001},
    "rmsprop": {"optimizer": "rmsprop", "learning_rate": 0.001},
    "adamw": {"optimizer": "adamw", "learning_rate": 0.001},
    "nadam": {"optimizer": "nadam", "learning_rate": 0.001},
    "adagrad": {"optimizer": "adagrad", "learning_rate": 0.001},
    "adadelta": {"optimizer": "adadelta", "learning_rate": 0.001},
    "l2": {"l2": 1e-4},
    "dropout": {"dropout": 0.2},
    "batch_norm": {"batch_norm": True},
    "all": {
        "optimizer": "adam",
        "learning_rate": 0.001,
        "l2": 1e-4,
        "dropout": 0.2,
        "batch_norm": True,
    },
}
BASELINE = "notebook"


def prepare(dataset: str, data_dir: Path | None, limit: int | None, validation_split: float):
    """(x_train, y_train, x_val, y_val) as fit prepares them, the training part cut to
    ``limit`` images (the validation part keeps the recipe's share of what is left)."""
    import numpy as np

    from mnistlab import datasets
    from mnistlab.datasets.preprocess import normalization_stats, preprocess, split_validation

    ds = datasets.load(dataset, data_dir=data_dir, download=False, quiet=True)
    x, y = ds.x_train, ds.y_train
    if limit is not None:
        keep = min(len(x), int(round(limit / (1 - validation_split))))
        x, y = x[:keep], y[:keep]
    xt, yt, xv, yv = split_validation(x, y, validation_split)
    mean, std = normalization_stats(xt, "standardize")
    return (
        preprocess(xt, mean, std),
        np.asarray(yt, np.int64),
        preprocess(xv, mean, std),
        np.asarray(yv, np.int64),
    )


def make(variant: str, engine: str, changes: dict, threads: int | None):
    """(engine object, None) or (None, why it cannot run)."""
    from mnistlab.engines import make_engine
    from mnistlab.engines.init import init_weights
    from mnistlab.errors import MnistlabError
    from mnistlab.recipe import Recipe

    try:
        recipe = Recipe().replace(engine=engine, threads=threads, **changes)
        return make_engine(recipe, init_weights(recipe), device="cpu"), recipe
    except MnistlabError as exc:
        return None, str(exc)


def run_pair(engine, recipe, data, epochs: int) -> list[float]:
    """Seconds of each epoch (training pass + validation), as fit runs them."""
    from mnistlab.training.fit import epoch_order
    from mnistlab.training.schedules import learning_rates, steps_per_epoch

    x, y, xv, yv = data
    steps = steps_per_epoch(len(x), recipe.batch_size)
    seconds = []
    for epoch in range(epochs):
        order = epoch_order(recipe.seed, epoch, len(x), recipe.shuffle)
        lrs = learning_rates(recipe, epoch, steps)
        t0 = time.perf_counter()
        engine.train_epoch(x, y, order, lrs, epoch)
        if len(xv):
            engine.evaluate(xv, yv)
        seconds.append(time.perf_counter() - t0)
    return seconds


def measure(
    variants: dict[str, dict],
    engines,
    data,
    epochs: int,
    reps: int,
    threads: int | None = None,
    log=print,
) -> dict:
    """{variant: {engine: {"epochs": [...], "s": median} | {"unsupported": why}}}."""
    pairs = [(v, e) for v in variants for e in engines]
    out: dict = {v: {} for v in variants}
    for rep in range(reps):
        shift = rep % len(pairs)
        for variant, engine_name in pairs[shift:] + pairs[:shift]:
            cell = out[variant].setdefault(engine_name, {"epochs": []})
            if "unsupported" in cell:
                continue
            engine, recipe = make(variant, engine_name, variants[variant], threads)
            if engine is None:
                out[variant][engine_name] = {"unsupported": recipe}
                log(f"rep {rep + 1}/{reps} {variant} on {engine_name}: unsupported ({recipe})")
                continue
            seconds = run_pair(engine, recipe, data, epochs)
            cell["epochs"].append(seconds)
            log(
                f"rep {rep + 1}/{reps} {variant} on {engine_name}: "
                + " ".join(f"{s:.3f}" for s in seconds)
                + " s"
            )
    for variant in out:
        for cell in out[variant].values():
            if "epochs" in cell:
                # epoch 1 pays one-time costs; with a single epoch it is all there is
                warm = [s for run in cell["epochs"] for s in (run[1:] or run)]
                cell["s"] = statistics.median(warm)
                cell["drift"] = drift(cell["epochs"])
    return out


def drift(runs: list[list[float]]) -> float | None:
    """Median over repetitions of last epoch / second epoch; None below 3 epochs (the first
    pays one-time costs, so the second is the first warm one).

    >>> drift([[9.0, 1.0, 1.1, 1.2], [9.0, 1.0, 1.0, 1.0]])
    1.1
    """
    ratios = [run[-1] / run[1] for run in runs if len(run) >= 3]
    return statistics.median(ratios) if ratios else None


def table(results: dict, engines) -> list[list[str]]:
    """Rows of strings: variant, then per engine s/epoch and x plain SGD, then fast/reference."""

    def seconds(variant, engine):
        return results.get(variant, {}).get(engine, {}).get("s")

    rows = []
    for variant in results:
        row = [variant]
        for engine in engines:
            s, base = seconds(variant, engine), seconds(BASELINE, engine)
            if s is None:
                row += ["unsupported", "", ""]
            else:
                d = results[variant][engine].get("drift")
                row += [
                    f"{s:.3f}",
                    f"{s / base:.2f}x" if base else "-",
                    "-" if d is None else f"{d:.2f}",
                ]
        if set(ENGINES) <= set(engines):
            fast, ref = seconds(variant, "fast"), seconds(variant, "reference")
            row.append(f"{fast / ref:.2f}" if fast is not None and ref is not None else "-")
        rows.append(row)
    return rows


def print_table(results: dict, engines, title: str) -> None:
    header = ["variant"]
    for engine in engines:
        header += [f"{engine} s/epoch", f"{engine} / {BASELINE}", f"{engine} drift"]
    if set(ENGINES) <= set(engines):
        header.append("fast / reference")
    rows = [header] + table(results, engines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(title)
    for k, row in enumerate(rows):
        print(
            "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))
    for variant, cells in results.items():
        for engine, cell in cells.items():
            if "unsupported" in cell:
                print(f"unsupported: {variant} on {engine}: {cell['unsupported']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist", help="dataset name (default: full MNIST)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"folder with the four IDX files (default for mnist: {DEFAULT_DATA})",
    )
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated, from: " + ", ".join(VARIANTS),
    )
    p.add_argument("--engines", default=",".join(ENGINES), help="fast, reference or both")
    p.add_argument("--epochs", type=int, default=None, help="epochs per pair (default 3)")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 2)")
    p.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    p.add_argument("--threads", type=int, default=None, help="recipe threads (default: engine's)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a fraction of an epoch: 3,000 training images, 2 epochs, 1 repetition",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        p.error(
            f"--variants: unknown {', '.join(unknown) or '(none given)'}; "
            f"expected some of {', '.join(VARIANTS)}"
        )
    args.engines = [e for e in args.engines.split(",") if e]
    if not args.engines or any(e not in ENGINES for e in args.engines):
        p.error(f"--engines: expected fast, reference or fast,reference, got {args.engines}")
    quick = {"epochs": 2, "reps": 1, "limit": 3000} if args.quick else {}
    defaults = {"epochs": 3, "reps": 2, "limit": None}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick.get(name, value))
    if args.epochs < 1 or args.reps < 1 or (args.limit is not None and args.limit < 1):
        p.error("--epochs, --reps and --limit: expected integers >= 1")
    if args.data_dir is None and args.dataset == "mnist":
        args.data_dir = DEFAULT_DATA
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = _machine.header(torch="reference" in args.engines)
    from mnistlab.errors import MnistlabError
    from mnistlab.recipe import Recipe

    try:
        data = prepare(args.dataset, args.data_dir, args.limit, Recipe().validation_split)
    except MnistlabError as exc:
        print(f"error: {exc}")
        return 2
    variants = {v: VARIANTS[v] for v in args.variants}
    print(
        f"{args.dataset}: {len(data[0]):,} training / {len(data[2]):,} validation images; "
        f"{args.epochs} epochs x {args.reps} reps per pair, interleaved; timings are noisy on "
        "a shared machine"
    )
    results = measure(variants, args.engines, data, args.epochs, args.reps, args.threads)
    warm = (
        "epoch 1 (incl. warm-up)"
        if args.epochs == 1
        else "epoch 2"
        if args.epochs == 2
        else f"epochs 2-{args.epochs}"
    )
    print_table(results, args.engines, f"\nmedian s/epoch ({warm}, training + validation)")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "args": {
                        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                    },
                    "machine": machine,
                    "results": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
