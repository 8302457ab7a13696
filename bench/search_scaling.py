"""Completed search trials per minute with 1 and 2 workers sharing one PostgreSQL study.

Starts a throwaway PostgreSQL server in a temp folder (Debian's binaries in
/usr/lib/postgresql/*/bin; as the `postgres` user when run as root), then for each worker count
runs that many `mnistlab search` processes on one fresh study of fixed-size trials (by default
two hidden layers of 256, 3 epochs, batch 64, single-threaded, on the bundled sample's 10,000
training images: about a second of training each, so that the study's own overhead - claiming a
trial, the database round trips - is small next to the work) until the study holds
``--trials`` finished trials. Two rates are printed per worker count: over the wall time from
launch to the last worker's exit (what a user waits, interpreter start-up included), and over
the study's own clock, first trial start to last trial end (the steady state). Then the ratio
of 2 workers to 1. On a 2-core machine the ideal is 2.0; a busy machine gets less.

    python bench/search_scaling.py                 # 12 trials per worker count
    python bench/search_scaling.py --trials 24
    python bench/search_scaling.py --epochs 1 --hidden 64 --train-images 3000   # overhead-bound
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # noqa: E402  (bench/_machine.py)

SPACE = """
[base]
hidden = {hidden}
epochs = {epochs}
batch_size = 64
threads = 1
[space]
learning_rate = {{ low = 1e-3, high = 0.1, log = true }}
optimizer = {{ choices = ["sgd", "adam"] }}
"""


@contextmanager
def temporary_postgres():
    """Yield a postgresql:// URL of a fresh server and database; stop and delete it after."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        sys.exit(
            "PostgreSQL binaries not found in /usr/lib/postgresql/*/bin "
            "(Debian: apt-get install postgresql)"
        )
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="mnistlab-pg-bench-"))
    prefix = []
    if os.geteuid() == 0:  # initdb refuses root
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"

    def run(*cmd):
        subprocess.run(prefix + [str(c) for c in cmd], check=True, capture_output=True)

    started = False
    try:
        run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        run(
            bindir / "pg_ctl",
            "-D",
            data,
            "-l",
            root / "log",
            "-w",
            "start",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root}",
        )
        started = True
        run(bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "bench")
        yield f"postgresql://postgres@127.0.0.1:{port}/bench"
    finally:
        if started:
            subprocess.run(
                prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                check=False,
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)


def measure(url: str, workers: int, trials: int, work: Path, args) -> dict:
    import optuna

    space = work / "space.toml"
    hidden = "[" + ", ".join(str(int(h)) for h in args.hidden.split(",")) + "]"
    space.write_text(SPACE.format(hidden=hidden, epochs=args.epochs))
    name = f"scaling-{workers}"
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mnistlab",
                "search",
                str(space),
                "--trials",
                str(trials),
                "--storage",
                url,
                "--study",
                name,
                "--out",
                str(work / f"{name}-w{i}"),
                "--dataset",
                "mnist-sample",
                "--train-images",
                str(args.train_images),
                "--quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"worker failed:\n{err}")
    wall = time.monotonic() - t0
    done = [
        t
        for t in optuna.load_study(study_name=name, storage=url).trials
        if t.state.name in ("COMPLETE", "PRUNED")
    ]
    span = (
        max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)
    ).total_seconds()
    return {
        "workers": workers,
        "trials": len(done),
        "wall_s": wall,
        "per_min_wall": 60 * len(done) / wall,
        "per_min_study": 60 * len(done) / span,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    ap.add_argument("--hidden", default="256,256", help="hidden widths of every trial")
    ap.add_argument("--train-images", type=int, default=10000, help="training images per trial")
    args = ap.parse_args()
    _machine.header()
    with temporary_postgres() as url, tempfile.TemporaryDirectory() as tmp:
        rows = [measure(url, w, args.trials, Path(tmp), args) for w in (1, 2)]
    for r in rows:
        print(
            f"{r['workers']} worker(s): {r['trials']} trials in {r['wall_s']:.1f} s: "
            f"{r['per_min_wall']:.1f} trials/min (wall, start-up included), "
            f"{r['per_min_study']:.1f} trials/min (study clock)"
        )
    print(
        f"ratio 2 workers / 1: {rows[1]['per_min_wall'] / rows[0]['per_min_wall']:.2f} (wall), "
        f"{rows[1]['per_min_study'] / rows[0]['per_min_study']:.2f} (study clock); "
        f"ideal on {os.cpu_count()} cores: {min(2, os.cpu_count() or 1)}.00"
    )


if __name__ == "__main__":
    main()
