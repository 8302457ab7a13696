"""The notebook's recipe in mnistlab and in the frameworks a user would otherwise pick, side
by side.

Same data (one split, standardized with the training part's mean/std), same initial weights,
same optimizer (SGD lr 0.01, momentum 0.9, nesterov, inverse-time decay 1e-6), batch 32, the
LAST 30 % of the training set as validation. Each peer runs in its own subprocess (so Keras
backends don't clash and peak RSS is the peer's own), peers interleaved, one seed per
repetition (seed, seed+1, ...), and the table shows medians over repetitions:

    python bench/frameworks.py                         # 3 reps x 5 epochs, Fashion-MNIST
    python bench/frameworks.py --epochs 1 --reps 1 --peers mnistlab,torch
    python bench/frameworks.py --dataset mnist --json bench/out/frameworks.json
    python bench/frameworks.py --peers mnistlab,keras_jax --cores all   # all cores only

``--cores both`` (the default) runs every peer twice per repetition and prints two tables:
on one core (each peer's process pinned to one CPU, every thread knob of its libraries at 1,
mnistlab at 1 BLAS thread) and on all cores (the peers' defaults, mnistlab at as many BLAS
threads as usable CPUs, or ``--threads``). Ratios are only ever taken within one table.

An epoch's time includes that epoch's validation (Keras' ``fit`` does it inside the epoch).
"s/epoch" is the median of epochs 2..N (warm); "1st epoch" shows compile/warm-up separately.
Keras/TensorFlow/JAX come from the ``[bench]`` extra; a missing peer is reported and skipped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / "_peers"
sys.path.insert(0, str(PEERS_DIR))
sys.path.insert(0, str(HERE))
import _machine  # noqa: E402  (bench/_machine.py)
import common  # noqa: E402  (bench/_peers/common.py)

# name shown -> module in bench/_peers
PEERS = {
    "mnistlab": "mnistlab_engine",
    "keras_tf": "keras_tf",
    "keras_jax": "keras_jax",
    "torch": "torch_idiomatic",
}
LABELS = {
    "mnistlab": "mnistlab (engine API)",
    "keras_tf": "Keras 3 + TensorFlow, model.fit",
    "keras_jax": "Keras 3 + JAX, steps_per_execution=32",
    "torch": "PyTorch, idiomatic DataLoader loop",
}
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"
MODES = {"1": "one core", "all": "all cores"}  # --cores -> table name


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "mnist"))
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with the four IDX files (default ../shared/data/<dataset>)",
    )
    p.add_argument("--reps", type=int, default=3, help="repetitions (seed, seed+1, ...)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument(
        "--peers", default=",".join(PEERS), help=f"comma-separated subset of {', '.join(PEERS)}"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="use only the first N training and test images (smoke runs)",
    )
    p.add_argument(
        "--engine", default="auto", choices=("auto", "fast", "reference"), help="mnistlab's engine"
    )
    p.add_argument(
        "--cores",
        default="both",
        choices=("1", "all", "both"),
        help="one core, all cores, or both tables in the same run (default)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="mnistlab's BLAS threads in the all-cores table (default: the usable CPUs)",
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter that runs the peers (one with the [bench] extra)",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per peer run")
    p.add_argument("--json", type=Path, default=None, help="also write all raw results here")
    args = p.parse_args(argv)
    args.peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    unknown = [s for s in args.peers if s not in PEERS]
    if unknown or not args.peers:
        p.error(
            f"--peers: unknown {', '.join(unknown) or '(empty)'}; expected some of "
            + ", ".join(PEERS)
        )
    for name in ("reps", "epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name}: expected an integer >= 1")
    if args.limit is not None and args.limit < 10:
        p.error("--limit: expected an integer >= 10")
    args.modes = ["1", "all"] if args.cores == "both" else [args.cores]
    return args


def prepare(args: argparse.Namespace, seed: int, path: Path) -> dict:
    """Write the arrays every peer trains on; return the sizes."""
    from mnistlab import datasets
    from mnistlab.datasets.preprocess import normalization_stats, preprocess, split_validation
    from mnistlab.engines.init import init_weights
    from mnistlab.recipe import Recipe

    ds = datasets.load(args.dataset, data_dir=args.data_dir or DEFAULT_DATA / args.dataset)
    x, y, xt, yt = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if args.limit:
        x, y, xt, yt = x[: args.limit], y[: args.limit], xt[: args.limit], yt[: args.limit]
    recipe = Recipe(seed=seed)
    # Keras' split point (floor), from the same function mnistlab's fit uses.
    n_train = len(split_validation(x, y, recipe.validation_split)[0])
    x = x.reshape(len(x), -1)
    mean, std = normalization_stats(x[:n_train], "standardize")  # what mnistlab's fit uses

    weights = init_weights(recipe)
    np.savez(
        path,
        x_all=preprocess(x, mean, std),
        y_all=y.astype(np.int64),
        x_test=preprocess(xt, mean, std),
        y_test=yt.astype(np.int64),
        n_train=n_train,
        seed=seed,
        validation_split=recipe.validation_split,
        n_layers=len(recipe.hidden) + 1,
        **weights,
    )
    return {"n_train": n_train, "n_val": len(x) - n_train, "n_test": len(xt)}


def missing_modules(python: str, modules: list[str]) -> list[str]:
    """Which of ``modules`` the interpreter ``python`` cannot find (no import, so cheap)."""
    code = (
        "import importlib.util, sys; "
        "print(','.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
    )
    out = subprocess.run(
        [python, "-c", code, *modules], capture_output=True, text=True, check=True
    ).stdout.strip()
    return [m for m in out.split(",") if m]


def run_peer(args: argparse.Namespace, peer: str, data: Path, out: Path, mode: str) -> dict:
    """One peer, one repetition, in a fresh process on one core (``mode`` "1") or all of them
    ("all"); its JSON result or {'error': ...}."""
    cmd = [
        args.python,
        str(PEERS_DIR / f"{PEERS[peer]}.py"),
        str(data),
        str(out),
        "--epochs",
        str(args.epochs),
    ]
    env = dict(os.environ)
    if mode == "1":
        cmd.append("--one-core")
        env.update(common.ONE_THREAD_ENV)
    if peer == "mnistlab":
        threads = 1 if mode == "1" else (args.threads or usable_cores())
        cmd += ["--engine", args.engine, "--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    if proc.returncode == common.MISSING_EXIT:
        return {"missing": proc.stderr.strip()}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(out.read_text())


def warm_epochs(seconds: list[float]) -> list[float]:
    return seconds[1:] if len(seconds) > 1 else seconds


def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Per peer: medians over repetitions of the per-run medians (and the accuracies)."""
    rows = {}
    for peer, runs in results.items():
        ok = [r for r in runs if "epoch_seconds" in r]
        if not ok:
            continue
        epoch = statistics.median(statistics.median(warm_epochs(r["epoch_seconds"])) for r in ok)
        rows[peer] = {
            "epoch_s": epoch,
            "first_epoch_s": statistics.median(r["epoch_seconds"][0] for r in ok),
            "samples_per_s": ok[0]["n_train"] / epoch,
            "test_acc": [r["test_accuracy"] for r in ok],
            "rss_mb": statistics.median(r["peak_rss_mb"] for r in ok),
            "note": ok[0].get("note", ""),
            "threads": ok[0].get("threads"),
            "runs": len(ok),
        }
    base = rows.get("mnistlab", {}).get("epoch_s")
    for row in rows.values():
        row["ratio"] = row["epoch_s"] / base if base else None
    return rows


def print_table(rows: dict[str, dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in (
        "peer",
        "s/epoch",
        "1st epoch s",
        "samples/s",
        "test acc (per seed)",
        "peak RSS MiB",
        "time / mnistlab",
    ):
        t.add_column(col, justify="left" if col.startswith(("peer", "test")) else "right")
    for peer, r in rows.items():
        accs = " ".join(f"{a * 100:.2f}" for a in r["test_acc"])
        label = LABELS[peer]
        if peer == "mnistlab" and r.get("threads"):
            label += f", {r['threads']} thread" + ("s" if r["threads"] > 1 else "")
        t.add_row(
            label,
            f"{r['epoch_s']:.3f}",
            f"{r['first_epoch_s']:.3f}",
            f"{r['samples_per_s']:,.0f}",
            f"{np.mean(r['test_acc']) * 100:.2f} % ({accs})",
            f"{r['rss_mb']:.0f}",
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
        )
    Console(width=150).print(t)


def available_peers(args: argparse.Namespace) -> list[str]:
    available = []
    for peer in args.peers:
        mod = importlib.import_module(PEERS[peer])
        missing = missing_modules(args.python, list(mod.REQUIRES))
        if missing:
            print(
                f"skipping {peer}: missing packages {', '.join(missing)} in {args.python}; "
                f"install them with: {common.INSTALL_HINT}"
            )
        else:
            available.append(peer)
    return available


def run_all(args: argparse.Namespace, available: list[str], tmp: Path) -> dict:
    """{mode: {peer: [result per repetition]}}; peers and modes interleaved, order rotated."""
    results: dict = {m: {p: [] for p in available} for m in args.modes}
    pairs = [(m, p) for m in args.modes for p in available]
    for rep in range(args.reps):
        seed = args.seed + rep
        data = tmp / f"data-{seed}.npz"
        sizes = prepare(args, seed, data)
        if rep == 0:
            print(
                f"{args.dataset}: {sizes['n_train']} train / {sizes['n_val']} validation / "
                f"{sizes['n_test']} test, {args.epochs} epochs, {args.reps} reps; "
                "timings are noisy on a shared machine"
            )
        # Rotate the order each repetition so no peer always runs first (or after a hog).
        shift = rep % len(pairs)
        for mode, peer in pairs[shift:] + pairs[:shift]:
            res = run_peer(args, peer, data, tmp / f"{peer}-{seed}-{mode}.json", mode)
            res["seed"] = seed
            results[mode][peer].append(res)
            where = f"rep {rep + 1}/{args.reps} seed {seed} {MODES[mode]} {peer}"
            if "epoch_seconds" in res:
                ep = ", ".join(f"{s:.2f}" for s in res["epoch_seconds"])
                print(
                    f"{where}: epochs [{ep}] s, test acc {res['test_accuracy'] * 100:.2f} %, "
                    f"RSS {res['peak_rss_mb']:.0f} MiB"
                )
            else:
                print(f"{where}: {res.get('missing') or res.get('error')}")
        data.unlink()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = _machine.header(torch="torch" in args.peers)
    available = available_peers(args)
    if not available:
        print("error: no peer can run (see above)")
        return 2
    with tempfile.TemporaryDirectory(prefix="mnistlab-bench-") as tmp:
        results = run_all(args, available, Path(tmp))
    tables, ok = {}, True
    for mode in args.modes:
        rows = summarize(results[mode])
        ok = ok and all(p in rows for p in available)
        if not rows:
            continue
        name = MODES[mode]
        tables[name] = {"summary": rows, "runs": results[mode]}
        cores = "" if mode == "1" else f" ({usable_cores()})"
        print_table(
            rows,
            f"notebook recipe, {args.dataset}, batch 32, {name}{cores}, median of {args.reps} reps "
            f"(s/epoch = epochs 2..{args.epochs}, incl. validation)",
        )
    if not tables:
        print("error: every peer run failed (see above)")
        return 1
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "machine": machine,
            "args": {k: str(v) for k, v in vars(args).items()},
            "tables": tables,
        }
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
