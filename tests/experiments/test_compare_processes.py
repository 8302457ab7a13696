"""compare --jobs: killing the compare ends its workers, and running it again continues."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

VARIANTS = """
[base]
hidden = [32]
epochs = 30
batch_size = 32
[variants.a]
[variants.b]
lr = 0.02
"""


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _compare(tmp_path, seeds: int) -> list[str]:
    cmd = [sys.executable, "-m", "mnistlab", "compare", str(tmp_path / "v.toml"), "--jobs", "2"]
    cmd += ["--seeds", str(seeds), "--out", str(tmp_path / "c"), "--dataset", "mnist-sample"]
    return cmd + ["--train-images", "3000", "--test-images", "200", "--quiet"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_compare_leaves_no_worker_and_a_rerun_continues(tmp_path, sig):
    (tmp_path / "v.toml").write_text(VARIANTS)
    env = {**os.environ, "MNISTLAB_HOME": str(tmp_path / "home")}
    parent = subprocess.Popen(
        _compare(tmp_path, 2), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    workers: list[int] = []
    try:
        runs = tmp_path / "c" / "runs"
        end = time.monotonic() + 120
        while time.monotonic() < end and not list(runs.glob("*/checkpoint.safetensors")):
            time.sleep(0.1)  # a worker has trained an epoch: the pool is busy
        workers = [w for w in _children(parent.pid) if _running(w)]
        assert len(workers) >= 2, parent.stderr.read() if parent.poll() is not None else workers
        parent.send_signal(sig)
        parent.wait(30)
        end = time.monotonic() + 15
        while time.monotonic() < end and any(map(_running, workers)):
            time.sleep(0.1)
        assert not any(map(_running, workers)), "workers outlived the killed compare"
    finally:
        parent.kill()
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)
    # the same folder again (one seed: the two runs the workers were training, resumed)
    rerun = subprocess.run(_compare(tmp_path, 1), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
