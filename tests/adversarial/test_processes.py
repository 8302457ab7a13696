"""Processes that must end, and what they leave behind when they do: workers die with their
parent, a killed holder's run-folder lock is taken over, SIGTERM removes the temp file of a write
in progress, and a command whose stdout goes away finishes its work with one line on stderr."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnistlab.errors import RunError
from mnistlab.rundir import lock

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _python(code: str, *args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, text=True, **kw)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def _wait_until(check, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return check()


# A parent that starts a child running die_with_parent(parent), prints the child's pid, sleeps.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", '''
import os, sys, time
from mnistlab.experiments.compare import die_with_parent
if sys.argv[1] == "watch":
    sys.platform = "other"  # the portable path: a thread watching the parent pid
die_with_parent(int(sys.argv[2]), poll=0.05)
print("ready", flush=True)
time.sleep(60)
''', sys.argv[1], str(__import__("os").getpid())], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline() == "ready\\n"
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", ["prctl", "watch"])
def test_a_worker_dies_with_its_killed_parent(how):
    parent = _python(PARENT, how, stdout=subprocess.PIPE)
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()  # SIGKILL: no handler, no finally, nothing of the parent's runs
        parent.wait(10)
        assert _wait_until(lambda: not _alive(child)), f"worker {child} outlived its parent"
    finally:
        parent.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


HOLDER = """
import sys, time
from mnistlab.rundir.lock import hold
with hold(sys.argv[1], command="holder"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_holders_lock_is_taken_over(tmp_path):
    p = _python(HOLDER, tmp_path, stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == "held\n"
        with pytest.raises(RunError, match=f"in use by pid {p.pid} .*holder"):
            with lock.hold(tmp_path):
                pass
        p.kill()
        p.wait(10)
        assert (tmp_path / lock.LOCK).is_file()  # its record stays behind, naming a dead pid
        with lock.hold(tmp_path):  # ... and is no obstacle: the kernel's lock died with it
            assert f'"pid": {os.getpid()}' in (tmp_path / lock.LOCK).read_text()
    finally:
        p.kill()


WRITER = """
import sys, time
from mnistlab import fsio
fsio.remove_temps_on_signals()
with fsio.atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half")
    print(tmp, flush=True)
    time.sleep(60)
"""


def test_sigterm_removes_the_temp_file_of_a_write_in_progress(tmp_path):
    p = _python(WRITER, tmp_path / "fig.png", stdout=subprocess.PIPE)
    tmp = Path(p.stdout.readline().strip())
    assert tmp.is_file() and tmp.parent == tmp_path
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == -signal.SIGTERM  # still ended by the signal, as its default would
    assert list(tmp_path.iterdir()) == []


SHOW = """
import sys, time, matplotlib.figure
from mnistlab.cli import main
def slow_savefig(self, fname, **kw):  # a figure that takes long to draw
    open(fname, "wb").write(b"partial png")
    print("drawing", flush=True)
    time.sleep(60)
matplotlib.figure.Figure.savefig = slow_savefig
sys.argv = ["mnistlab", "predict", sys.argv[1], sys.argv[2], "--show", sys.argv[3]]
main()
"""


def test_sigterm_of_predict_show_leaves_no_temp_file(tmp_path, fake_run):
    from PIL import Image, ImageDraw

    run = fake_run(tmp_path / "r")
    digit = Image.new("L", (28, 28), 255)
    ImageDraw.Draw(digit).line([(14, 4), (14, 24)], fill=0, width=3)  # a "1"
    digit.save(tmp_path / "digit.png")
    shown = tmp_path / "shown"
    shown.mkdir()
    p = _python(SHOW, run, tmp_path / "digit.png", shown / "fig.png", stdout=subprocess.PIPE)
    try:
        while (line := p.stdout.readline()) and line != "drawing\n":
            pass
        assert line == "drawing\n" and len(list(shown.iterdir())) == 1  # the .tmp being written
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == -signal.SIGTERM
        assert list(shown.iterdir()) == []
    finally:
        p.kill()


def test_stdout_closed_by_its_reader_does_not_stop_training(tmp_path):
    """`mnistlab train | head -1`: the run still finishes, one line says why nothing more was
    printed, and the exit status is the command's own."""
    env = {**os.environ, "PYTHONPATH": SRC}
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mnistlab",
            "train",
            "--dataset",
            "mnist-sample",
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--batch-size",
            "256",
            "--no-report",
            "--out",
            str(tmp_path / "r"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    p.stdout.readline()
    p.stdout.close()  # the reader goes away, as `head -1` does
    err = p.stderr.read().decode()
    assert p.wait(120) == 0, err
    assert err.count("\n") == 1 and "standard output was closed" in err, err
    assert (tmp_path / "r" / "model.safetensors").is_file()


def test_stdout_on_a_full_disk_is_one_line_and_status_2():
    env = {**os.environ, "PYTHONPATH": SRC}
    with open("/dev/full", "w") as full:
        p = subprocess.run(
            [sys.executable, "-m", "mnistlab", "--version"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=60,
        )
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "No space left on device" in p.stderr, p.stderr
