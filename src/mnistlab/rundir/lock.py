"""One writer at a time per run folder, and a second one is told who holds it.

``hold(run_dir)`` takes an advisory lock on ``RUN/.lock`` (the kernel's ``flock``: it dies with
its process, so a killed run never leaves a stale lock behind) and writes the holder's pid, host,
start time and command into that file for the message a second writer gets. The file is removed
on release, so a finished run folder holds only its own files. Holding is re-entrant within a
process (``train.fit`` holds the run while ``runs.update_metrics`` takes it again).

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> with hold(d):
...     (d / LOCK).is_file()
True
>>> (d / LOCK).exists()
False
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from mnistlab.errors import RunError
from mnistlab.fsio import fs_errors, read_text

try:
    import fcntl
except ImportError:  # Windows: filelock's msvcrt lock, without the holder's details
    fcntl = None

LOCK = ".lock"
_held: dict[str, list] = {}  # real path of the run folder -> [lock handle, depth]


def holder(run_dir: str | os.PathLike[str]) -> str:
    """Who holds ``run_dir``, in words, from its lock file."""
    try:
        info = json.loads(read_text(Path(run_dir) / LOCK, "a lock file", 2**12, RunError))
        return f"pid {info['pid']} on {info['host']} ({info['command']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError, RunError):
        return "another process"


@contextlib.contextmanager
def hold(
    run_dir: str | os.PathLike[str], *, wait: float = 0.0, command: str = "mnistlab"
) -> Iterator[None]:
    """Hold ``run_dir`` for the block; RunError naming the holder if another process has it
    for longer than ``wait`` seconds."""
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    handle = _acquire(Path(run_dir), wait, command)
    _held[key] = [handle, 1]
    try:
        yield
    finally:
        del _held[key]
        _release(Path(run_dir) / LOCK, handle)


def _acquire(run_dir: Path, wait: float, command: str):
    path = run_dir / LOCK
    deadline = time.monotonic() + wait
    if fcntl is None:
        from filelock import FileLock, Timeout

        lock = FileLock(path, timeout=wait)
        try:
            lock.acquire()
        except Timeout:
            raise RunError(
                f"{run_dir}: in use by another process; wait for it to finish or stop it"
            ) from None
        return lock
    while True:
        with fs_errors(path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise RunError(
                f"{run_dir}: in use by {holder(run_dir)}; wait for it to finish, or "
                "stop that process and try again"
            ) from None
        try:  # the holder may have removed the file between our open and our lock: retry
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        with fs_errors(path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        return fd


def _release(path: Path, handle) -> None:
    if fcntl is None:
        handle.release()
        return
    # Removed while still held: whoever opened the old file re-checks its inode and retries.
    with contextlib.suppress(OSError):
        path.unlink()
    os.close(handle)
