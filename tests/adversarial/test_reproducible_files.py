"""Two same-seed runs on one machine write byte-identical model and checkpoint files: a digest
of the file is then a digest of the training, and a re-run can be checked with ``cmp``."""

from __future__ import annotations

import os
import subprocess
import sys

# Each run in its own process (safetensors' header order was a per-process hash-map order).
# The checkpoint's history carries each epoch's wall-clock seconds, so the clock is fixed.
RUN = """
import dataclasses, itertools, sys
from mnistlab import datasets
from mnistlab.recipe import Recipe
from mnistlab.training import fit
ticks = itertools.count()
fit.time.perf_counter = lambda: float(next(ticks))
ds = datasets.load("mnist-sample")
ds = dataclasses.replace(ds, x_train=ds.x_train[:300], y_train=ds.y_train[:300])
fit.fit(Recipe(epochs=2, hidden=[8], engine="fast"), ds, out=sys.argv[1], quiet=True)
"""


def test_two_same_seed_runs_write_identical_bytes(tmp_path):
    env = {**os.environ, "MNISTLAB_HOME": str(tmp_path / "home")}
    for name in ("a", "b"):
        p = subprocess.run(
            [sys.executable, "-c", RUN, str(tmp_path / name)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr[-2000:]
    for f in ("model.safetensors", "checkpoint.safetensors"):
        a, b = (tmp_path / "a" / f).read_bytes(), (tmp_path / "b" / f).read_bytes()
        assert a == b, f"{f} differs between two same-seed runs"
