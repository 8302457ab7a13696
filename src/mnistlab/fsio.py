"""Small file-system helpers: nothing is ever half-written, and nothing is read without bounds.

Every writer goes through a temp file in the destination's folder plus ``os.replace``, which is
atomic on POSIX, so a crash leaves either the old file or the new one, never a torn one. Every
OSError raised on the way (read-only file system, full disk, name too long, ...) leaves as one
:class:`FileSystemError` that names the path, the cause and what to do (``fs_error``).

Recipes, variants, search spaces and run files are read with ``read_bytes`` (text:
``read_text``): the size is checked against a limit before a byte is read, and a FIFO, device or
socket is refused without being opened, so ``--recipe /dev/zero`` is one line instead of a read
that never ends.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import stat
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnistlab.errors import FileSystemError, MnistlabError, RecipeError


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to ``dest``; on success fsync and rename it onto ``dest``.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "x.txt") as tmp:
    ...     _ = tmp.write_text("hi")
    >>> (d / "x.txt").read_text()
    'hi'
    """
    dest = normalize(dest)
    with fs_errors(dest):
        if dest.is_dir():  # e.g. --show given a folder: os.replace would fail after all the work
            raise MnistlabError(f"{dest}: is a folder, expected a file name")
    make_dirs(dest.parent)
    with fs_errors(dest):
        fd, name = tempfile.mkstemp(prefix=f".{dest.name[:200]}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
    tmp = Path(name)
    _LIVE_TEMPS.add(name)
    try:
        yield tmp  # the caller's own writes to tmp: ENOSPC lands here
        with fs_errors(dest):
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            # mkstemp creates 0600; give the file the mode a plain open() would have had.
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, dest)
    except OSError as exc:
        if isinstance(exc, FileSystemError):
            raise
        raise fs_error(exc, dest) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        _LIVE_TEMPS.discard(name)


# Temp files of the atomic writes in progress; removed by the handler below when a signal ends
# the process mid-write (a Python ``finally`` never runs on SIGTERM's default action).
_LIVE_TEMPS: set[str] = set()
_CLEANUP_SIGNALS = ("SIGTERM", "SIGHUP")


def remove_temps_on_signals() -> None:
    """On SIGTERM and SIGHUP, remove the temp files of atomic writes in progress, then end the
    process by that same signal (its exit status stays "killed by SIGTERM"). Installed by the
    command line and compare's workers; a signal that already has a handler (serve's graceful
    stop) keeps it, and outside the main thread nothing is installed (Python allows handlers
    only there)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in _CLEANUP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _remove_temps_and_die)


def _remove_temps_and_die(signum, _frame) -> None:
    for name in list(_LIVE_TEMPS):
        with contextlib.suppress(OSError):
            os.unlink(name)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def make_dirs(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p path``; a file in the way is a one-line MnistlabError, not a traceback."""
    path = normalize(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise MnistlabError(f"{path}: cannot create this folder, a file is in the way") from None
    except OSError as exc:
        raise fs_error(exc, path) from None
    return path


def normalize(path: str | os.PathLike[str]) -> Path:
    """``path`` with ``x/..`` and ``.`` removed lexically, so creating ``x/../y`` makes no ``x``.

    >>> str(normalize("x/../y/./z"))
    'y/z'
    """
    return Path(os.path.normpath(path))


# What to do about each cause, said in the message; the rest get the generic advice.
_NEXT_STEP = {
    errno.EROFS: "choose a writable location",
    errno.ENOSPC: "free some disk space and try again",
    errno.EDQUOT: "free some disk space and try again",
    errno.ENAMETOOLONG: "choose a shorter name",
    errno.EACCES: "check its permissions or choose another location",
    errno.EPERM: "check its permissions or choose another location",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder; give a file name",
}


def fs_error(
    exc: OSError, path: str | os.PathLike[str] | None = None, doing: str = "write"
) -> FileSystemError:
    """One line for an OSError: the path, the cause and the next step.

    >>> str(fs_error(OSError(errno.EROFS, "Read-only file system"), "runs/a"))
    'runs/a: cannot write: Read-only file system; choose a writable location'
    """
    if isinstance(exc, FileSystemError):
        return exc
    # The destination the caller names, not the temp file that was being written for it.
    where = path if path is not None else exc.filename
    cause = exc.strerror or str(exc) or type(exc).__name__
    step = _NEXT_STEP.get(exc.errno or 0, "check the path and try again")
    err = FileSystemError(f"{where}: cannot {doing}: {cause}; {step}")
    err.errno, err.strerror, err.filename = exc.errno, exc.strerror, where
    return err


@contextlib.contextmanager
def fs_errors(path: str | os.PathLike[str] | None = None, doing: str = "write") -> Iterator[None]:
    """Turn any OSError inside the block into a one-line FileSystemError about ``path``."""
    try:
        yield
    except FileSystemError:
        raise
    except OSError as exc:
        raise fs_error(exc, path, doing) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# ---- bounded reads -------------------------------------------------------------------------
TOML_LIMIT = 2**20  # recipes, variants and search spaces: a few KiB each; 1 MiB is no mistake
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def size_text(n: int) -> str:
    """``n`` bytes in words: '512 bytes', '1 MiB', '1.5 GiB'.

    >>> size_text(512), size_text(2**20), size_text(3 * 2**29)
    ('512 bytes', '1 MiB', '1.5 GiB')
    """
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def _refuse_special(path: Path, mode: int, what: str, error: type[MnistlabError]) -> None:
    for test, kind in _KINDS:
        if test(mode):
            raise error(f"{path}: is {kind}, not a regular file; expected {what}")


def read_bytes(
    path: str | os.PathLike[str], what: str, limit: int, error: type[MnistlabError]
) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Larger files and special files (folder, FIFO, device, socket) are one ``error`` line that
    names the file, ``what`` it should have been ("a recipe") and the limit; both are decided from
    ``stat`` before the file is opened. OS failures (missing file, no permission) stay OSErrors
    for the caller to word. The open does not block (a FIFO swapped in after the check is
    caught by ``fstat``), and the read stops after ``limit`` bytes whatever the size said.

    >>> try:
    ...     read_bytes("/dev/zero", "a recipe", TOML_LIMIT, MnistlabError)
    ... except MnistlabError as exc:
    ...     print(exc)
    /dev/zero: is a character device, not a regular file; expected a recipe
    """
    path = Path(path)
    _check_size(path, os.stat(path), what, limit, error)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        _check_size(path, os.fstat(fd), what, limit, error)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew since the check (or a file system that reports no size)
        raise error(f"{path}: more than {what} may hold ({size_text(limit)})")
    return data


def _check_size(
    path: Path, st: os.stat_result, what: str, limit: int, error: type[MnistlabError]
) -> None:
    _refuse_special(path, st.st_mode, what, error)
    if st.st_size > limit:
        raise error(f"{path}: {st.st_size:,} bytes, more than {what} may hold ({size_text(limit)})")


def read_text(
    path: str | os.PathLike[str], what: str, limit: int, error: type[MnistlabError]
) -> str:
    """``read_bytes`` decoded as UTF-8; bytes that are not UTF-8 raise UnicodeDecodeError (a
    ValueError), which the caller words with the file's format."""
    return read_bytes(path, what, limit, error).decode("utf-8")


def read_toml(path: str | os.PathLike[str], what: str = "recipe") -> dict[str, Any]:
    """The TOML table in ``path``; an unreadable, oversized, special or invalid file is one
    RecipeError line naming it and ``what`` it should have been (recipes, variants and search
    spaces are all TOML)."""
    path = Path(path)
    try:
        text = read_text(path, f"a {what} (TOML)", TOML_LIMIT, RecipeError)
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except UnicodeDecodeError:  # e.g. a binary file passed by mistake
        raise RecipeError(f"{path}: not valid TOML (not UTF-8 text)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from None
