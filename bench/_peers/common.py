"""What every peer shares: the prepared data file, the result file, peak memory, epoch timing.

The parent (bench/frameworks.py) prepares ONE .npz per repetition (split, standardized with the
training part's statistics, initial weights in Keras layout) so every peer trains on identical
arrays from identical weights; the child only reads it, trains and writes a small JSON result.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

# Exit status of a peer whose packages are absent; the parent turns it into a clear message.
MISSING_EXIT = 3
INSTALL_HINT = "pip install torch==2.13.0 -e '.[bench]'"


# Every knob a peer's libraries read for their thread pools, each set to 1 for a one-core run
# (the parent puts them into the child's environment; the child also pins itself to one CPU).
ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("data", help=".npz written by bench/frameworks.py")
    p.add_argument("out", help="where to write the JSON result")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--one-core", action="store_true", help="run on one CPU (see pin_one_core)")
    args = p.parse_args()
    if args.one_core:
        pin_one_core()
    return args


def pin_one_core() -> None:
    """Restrict this process to its first usable CPU, before any framework starts its thread
    pools (they size themselves from the CPUs they may use). Linux only; elsewhere the thread
    knobs of ONE_THREAD_ENV are all there is."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def load(path: str) -> dict:
    """The prepared arrays: x_all/y_all (train + validation, validation LAST), test, weights."""
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d["n_train"] = int(d["n_train"])
    d["seed"] = int(d["seed"])
    d["validation_split"] = float(d["validation_split"])
    d["kernels"] = [d[f"dense_{i}.kernel"] for i in range(int(d["n_layers"]))]
    d["biases"] = [d[f"dense_{i}.bias"] for i in range(int(d["n_layers"]))]
    return d


def require(*modules: str) -> None:
    """Exit with MISSING_EXIT (and the names on stderr) if any module is not importable."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        print(f"missing packages: {', '.join(missing)} (install: {INSTALL_HINT})", file=sys.stderr)
        sys.exit(MISSING_EXIT)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB, imports included.

    Linux: VmHWM of /proc/self/status. Not getrusage's ru_maxrss, which Linux carries over
    fork + exec: a peer spawned by a parent holding the prepared data reported the parent's
    peak (every peer showed the same ~800 MiB) instead of its own.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    # Elsewhere (macOS: bytes, and no such carry-over) ru_maxrss is the process's own peak.
    scale = 1024 if sys.platform.startswith("linux") else 1024 * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def write(out: str, **result) -> None:
    result.setdefault("peak_rss_mb", peak_rss_mb())
    tmp = f"{out}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, out)


class EpochClock:
    """Wall time of each epoch, begin to end (an epoch's end comes after its validation)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._t0 = 0.0

    def begin(self) -> None:
        self._t0 = time.perf_counter()

    def end(self) -> None:
        self.seconds.append(time.perf_counter() - self._t0)
