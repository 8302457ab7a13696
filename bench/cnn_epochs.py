"""Seconds per epoch of a CNN preset (best-cnn by default) on the fast and the reference engine,
and the test accuracy each reaches: the same recipe, seeds and data on both.

Each (seed, engine) pair trains the preset in a fresh Python with ``fit``, as
``mnistlab train --preset best-cnn --seed S --engine E`` does (augmentation redrawn every
epoch, the preset's threads), on full MNIST. Per run: ``fit``'s own per-epoch seconds (the
augmentation, the training pass and any validation), the median of epochs 2..N (epoch 1 pays
imports, JIT loading and warm-up), and the test accuracy at the end. Engines alternate per seed
(fast first, then reference first), so a busy machine slows both alike.

    python bench/cnn_epochs.py                          # best-cnn, seeds 0,1,2, 10 epochs each
    python bench/cnn_epochs.py --epochs 2 --seeds 0     # timing only: a cut run's accuracy
    python bench/cnn_epochs.py --preset fast-cnn --threads 1 --json out.json

Goal: best-cnn's training time per epoch <= 0.5x the reference (torch) engine's at equal
accuracy over 3 seeds: the fast / reference ratio of the median s/epoch, with the test
accuracies side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _machine  # noqa: E402  (bench/_machine.py)

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "mnist"
ENGINES = ("fast", "reference")


def child(args: argparse.Namespace) -> int:
    """One run; prints one JSON line: per-epoch seconds, test accuracy, engine, threads."""
    from mnistlab import datasets
    from mnistlab.recipe import load_preset
    from mnistlab.training.fit import fit

    recipe = load_preset(args.preset).replace(engine=args.engine, seed=args.seed)
    if args.epochs is not None:
        recipe = recipe.replace(epochs=args.epochs)
    if args.threads is not None:
        recipe = recipe.replace(threads=args.threads)
    ds = datasets.load(args.dataset, data_dir=args.data_dir, download=False, quiet=True)
    if args.limit is not None:  # the first N training images (the test set stays whole)
        ds = dataclasses.replace(
            ds, x_train=ds.x_train[: args.limit], y_train=ds.y_train[: args.limit]
        )
    with tempfile.TemporaryDirectory() as tmp:
        run = fit(recipe, ds, out=Path(tmp) / "run", quiet=True)
        env = run.environment
    print(
        json.dumps(
            {
                "seconds": [row["seconds"] for row in run.history],
                "test_accuracy": run.metrics["test"]["accuracy"],
                "engine": env.get("engine", args.engine),
                "threads": recipe.threads,
            }
        ),
        flush=True,
    )
    return 0


def one_run(args: argparse.Namespace, engine: str, seed: int) -> dict:
    cmd = [args.python, str(Path(__file__).resolve()), "--child", "--engine", engine]
    cmd += ["--seed", str(seed), "--preset", args.preset, "--dataset", args.dataset]
    for flag in ("data_dir", "epochs", "threads", "limit"):
        value = getattr(args, flag)
        if value is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(value)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    out = json.loads(lines[-1])
    warm = out["seconds"][1:] or out["seconds"]
    out["s_per_epoch"] = statistics.median(warm)
    return out


def measure(args: argparse.Namespace, log=print) -> dict:
    """{engine: {seed: run}} for every seed, engines alternating which goes first."""
    results: dict = {e: {} for e in args.engines}
    for k, seed in enumerate(args.seeds):
        order = args.engines if k % 2 == 0 else args.engines[::-1]
        for engine in order:
            r = one_run(args, engine, seed)
            results[engine][seed] = r
            if "error" in r:
                log(f"  seed {seed} {engine}: {r['error']}")
            else:
                epochs = " ".join(f"{s:.2f}" for s in r["seconds"])
                log(
                    f"  seed {seed} {engine:9s}: {r['s_per_epoch']:.2f} s/epoch (epochs {epochs}),"
                    f" test {r['test_accuracy'] * 100:.2f} %, {r['threads']} thread(s)"
                )
    return results


def summary(results: dict, engines) -> list[str]:
    """Lines: per engine the median s/epoch over seeds and the accuracies; then the ratio."""
    lines, medians = [], {}
    for engine in engines:
        runs = [r for r in results[engine].values() if "error" not in r]
        if not runs:
            lines.append(f"{engine}: no run finished")
            continue
        medians[engine] = statistics.median(r["s_per_epoch"] for r in runs)
        accs = " / ".join(f"{r['test_accuracy'] * 100:.2f}" for r in runs)
        mean = statistics.mean(r["test_accuracy"] for r in runs) * 100
        lines.append(
            f"{engine}: {medians[engine]:.2f} s/epoch (median over seeds); "
            f"test accuracy {accs} % (mean {mean:.2f} %)"
        )
    if set(ENGINES) <= set(medians):
        ratio = medians["fast"] / medians["reference"]
        lines.append(f"fast / reference: {ratio:.2f}x per epoch (goal <= 0.5x)")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="best-cnn", help="a CNN preset (default best-cnn)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--engines", default=",".join(ENGINES), help="fast, reference or both")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: the preset's)")
    p.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", type=Path, default=None, help=f"default {DEFAULT_DATA}")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--engine", default="fast", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return args
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    args.engines = [e for e in args.engines.split(",") if e]
    if not args.seeds or not args.engines or any(e not in ENGINES for e in args.engines):
        p.error("--seeds / --engines: expected e.g. --seeds 0,1,2 --engines fast,reference")
    for name in ("epochs", "threads", "limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name}: expected an integer >= 1")
    if args.data_dir is None and args.dataset == "mnist":
        args.data_dir = DEFAULT_DATA
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    machine = _machine.header(torch="reference" in args.engines)
    from mnistlab.errors import MnistlabError
    from mnistlab.recipe import load_preset

    try:
        recipe = load_preset(args.preset)
    except MnistlabError as exc:
        print(f"error: {exc}")
        return 2
    if recipe.kind != "cnn":
        print(f"error: --preset {args.preset!r} is kind {recipe.kind!r}, expected a CNN")
        return 2
    epochs = args.epochs or recipe.epochs
    print(
        f"{args.preset} on {args.dataset}: {epochs} epochs per run, seeds "
        f"{', '.join(map(str, args.seeds))}, engines {', '.join(args.engines)}, each run in a "
        "fresh Python; timings are noisy on a shared machine"
    )
    results = measure(args)
    for line in summary(results, args.engines):
        print(line)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "preset": args.preset, "results": results}, indent=1)
        )
    failed = any("error" in r for runs in results.values() for r in runs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
