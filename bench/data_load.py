"""How long does loading full MNIST take, first time and after?

    python bench/data_load.py [--repeat 5]

Each measurement runs in a fresh Python process (so no in-process state helps) and times only
the ``datasets.load("mnist", data_dir=../shared/data/mnist)`` call:

* first load: empty MNISTLAB_HOME -> hash the four .gz files, parse them, write the .npy cache;
* second load: same MNISTLAB_HOME -> checksums remembered, arrays memory-mapped;
* baseline: what a plain loader does every time (gzip.open + np.frombuffer of the four files).

Target: second load <= 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # noqa: E402  (bench/_machine.py)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

LOAD = """
import json, sys, time
t0 = time.perf_counter()
from mnistlab import datasets
t1 = time.perf_counter()
ds = datasets.load("mnist", data_dir=sys.argv[1], download=False)
t2 = time.perf_counter()
checksum = int(ds.x_train[::997].sum()) + int(ds.y_train.sum())  # touch the data
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "check": checksum}))
"""

BASELINE = """
import gzip, json, sys, time
import numpy as np
t1 = time.perf_counter()
d = sys.argv[1]
def read(name, offset):
    with gzip.open(f"{d}/{name}", "rb") as fh:
        return np.frombuffer(fh.read(), np.uint8, offset=offset)
x = read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
y = read("train-labels-idx1-ubyte.gz", 8)
xt = read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
yt = read("t10k-labels-idx1-ubyte.gz", 8)
t2 = time.perf_counter()
print(json.dumps({"import": 0.0, "load": t2 - t1, "check": int(x[::997].sum()) + int(y.sum())}))
"""


def run(code: str, home: str) -> dict:
    env = {**os.environ, "MNISTLAB_HOME": home, "MNISTLAB_OFFLINE": "1"}
    env.pop("MNISTLAB_DATA_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", code, str(DATA)], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    _machine.header()
    if not (DATA / "train-images-idx3-ubyte.gz").is_file():
        print(f"skipped: official MNIST not found in {DATA}")
        return 0
    firsts, seconds, base = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="mnistlab-bench-") as home:
            firsts.append(run(LOAD, home))
            seconds.append(run(LOAD, home))
        base.append(run(BASELINE, tempfile.gettempdir()))
    checks = {r["check"] for r in firsts + seconds + base}
    assert len(checks) == 1, f"loaders disagree on the data: {checks}"

    def med(rows, key="load"):
        return statistics.median(r[key] for r in rows)

    b = med(base)
    rows = [
        ("first load (cold: empty MNISTLAB_HOME, from ../shared/data/mnist)", med(firsts)),
        ("second load (verified by size+mtime, .npy memory map)", med(seconds)),
        ("baseline: gzip.open + np.frombuffer of the four files", b),
    ]
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"full MNIST load time, median of {args.repeat} fresh processes")
    t.add_column("what")
    t.add_column("seconds", justify="right")
    t.add_column("vs baseline", justify="right")
    for what, s in rows[:-1]:
        t.add_row(what, f"{s:.3f}", f"{b / s:.1f}x faster" if s < b else f"{s / b:.1f}x slower")
    t.add_row(rows[-1][0], f"{b:.3f}", "1.0x (baseline)")
    Console().print(t)
    print(
        f"(import mnistlab: {med(seconds, 'import'):.3f} s, not included above; "
        f"target second load <= 0.2 s: {'met' if med(seconds) <= 0.2 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
