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


def parse_args(description: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("data", help=".npz written by bench/frameworks.py")
    p.add_argument("out", help="where to write the JSON result")
    p.add_argument("--epochs", type=int, default=5)
    return p.parse_args()


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
