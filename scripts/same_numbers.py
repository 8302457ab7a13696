"""Same numbers before and after a change: train a few recipes with another revision's code and
with this tree's, on this machine, and compare what they end with bit for bit.

A refactor that moves code must not move a single bit of a trained model. Bits are only
comparable on one machine (BLAS kernels and their summation order differ between CPUs), so this
is a script run before committing a change, not a test against stored numbers:

    python scripts/same_numbers.py 7b4b719           # that revision's src/ against this tree's
    python scripts/same_numbers.py 7b4b719 2d925ec   # two revisions

Each recipe trains through the command line (`mnistlab train`, as a user would) on the bundled
sample, one thread, in a fresh process per tree; weights, optimizer slots (the checkpoint) and
the history's losses must be identical. Exit 0 when every recipe matches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each a different path through the engines: the notebook's SGD, the adaptive optimizers with
# the regularizers, another activation with label smoothing, and the CNN on each engine.
RECIPES = {
    "notebook": [],
    "adam-dropout-bn": ["--optimizer", "adam", "--learning-rate", "0.001", "--dropout", "0.2",
                        "--batch-norm", "--l2", "0.0001"],
    "nadam-tanh-smooth": ["--optimizer", "nadam", "--learning-rate", "0.001", "--activation",
                          "tanh", "--label-smoothing", "0.1"],
    "cnn-fast": ["--conv-channels", "4,8", "--hidden", "32", "--epochs", "1", "--engine", "fast",
                 "--optimizer", "adam", "--learning-rate", "0.002"],
    "cnn-torch": ["--conv-channels", "4,8", "--hidden", "32", "--epochs", "1", "--engine",
                  "reference"],
}  # fmt: skip
COMMON = ["--epochs", "2", "--threads", "1", "--quiet", "--no-report"]


def checkout(revision: str, dest: Path) -> Path:
    """``revision``'s src/ under ``dest``, without touching the working tree."""
    blob = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=False
    )
    if blob.returncode != 0:
        raise SystemExit(f"git archive {revision}: {blob.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(blob.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def train(src: Path, name: str, work: Path, dataset: str) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    out = work / name
    env = {**os.environ, "PYTHONPATH": str(src), "MNISTLAB_OFFLINE": "1"}
    args = [sys.executable, "-m", "mnistlab", "train", "--dataset", dataset, *COMMON]
    args += [*RECIPES[name], "--out", str(out)]
    p = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args[2:])} with {src} failed:\n{p.stderr.strip()}")
    return out


def tensors(run: Path) -> dict:
    from safetensors.numpy import load_file

    found = {}
    for name in sorted(run.glob("*.safetensors")):
        if name.name != "predictions.safetensors":  # not in older runs; follows from the model
            found.update({f"{name.stem}/{k}": v for k, v in load_file(name).items()})
    return found


def losses(run: Path) -> list:
    with open(run / "history.csv", newline="", encoding="utf-8") as f:
        return [(row["loss"], row.get("val_loss")) for row in csv.DictReader(f)]


def compare(before: Path, after: Path) -> list[str]:
    """What differs between two run folders' models, checkpoints and losses (empty: nothing)."""
    a, b = tensors(before), tensors(after)
    problems = [f"only in one: {k}" for k in sorted(a.keys() ^ b.keys())]
    for k in sorted(a.keys() & b.keys()):
        if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or a[k].tobytes() != b[k].tobytes():
            problems.append(f"{k} differs")
    if losses(before) != losses(after):
        problems.append(f"losses differ: {losses(before)} vs {losses(after)}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", help="the git revision before the change")
    p.add_argument("after", nargs="?", help="the revision after it (default: this tree)")
    p.add_argument(
        "--dataset",
        default="mnist-sample",
        help="what to train on (default: the bundled sample; where a change between the two "
        "revisions changed the sample itself, use mnist with MNISTLAB_DATA_DIR set)",
    )
    args = p.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = checkout(args.before, tmp / "before")
        new = checkout(args.after, tmp / "after-src") if args.after else ROOT / "src"
        for name in RECIPES:
            before = train(old, name, tmp / "before", args.dataset)
            problems = compare(before, train(new, name, tmp / "after", args.dataset))
            n = len(tensors(tmp / "after" / name))
            print(f"{name}: " + ("; ".join(problems) if problems else f"{n} tensors identical"))
            failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
