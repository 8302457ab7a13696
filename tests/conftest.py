"""Shared test fixtures (dataset-related; owned by the datasets module).

Applied to every test automatically (session scope):

* ``MNISTLAB_HOME`` points at a fresh session temp folder, so no test reads or writes the
  user's cache (tests that need a private one use ``mnistlab_home``);
* downloads point at a closed loopback port (``MNISTLAB_MIRRORS=http://127.0.0.1:9/``) and
  ``MNISTLAB_DATA_DIR`` is unset, so ``datasets.load()`` falls back to the bundled sample in
  well under a second, exactly as on an offline machine (proxy variables are unset);
* a socket guard refuses any connection or DNS lookup that is not loopback, so a test can never
  reach the internet by accident (it fails loudly instead).

Fixtures to request:

* ``shared_data`` -> Path of ../shared/data (skips the test when absent);
* ``mnist_dir`` / ``fashion_dir`` -> its ``mnist`` / ``fashion-mnist`` folder (skip when absent);
* ``mnistlab_home`` -> a fresh, empty ``MNISTLAB_HOME`` for this test only.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLOSED_LOOPBACK = "http://127.0.0.1:9/"  # discard port: nothing listens, refused at once

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host in (None, "localhost", ""):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(sock, address) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise OSError(
            f"test tried to reach {address[0]!r}: tests may touch loopback addresses only"
        )


def _guarded_connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_loopback(host):
        raise socket.gaierror(
            socket.EAI_NONAME, f"tests may resolve loopback names only, not {host!r}"
        )
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def _mnistlab_offline_env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MNISTLAB_HOME", str(tmp_path_factory.mktemp("mnistlab_home")))
    mp.setenv("MNISTLAB_MIRRORS", CLOSED_LOOPBACK)
    mp.setenv("MNISTLAB_TIMEOUT", "2")
    mp.delenv("MNISTLAB_DATA_DIR", raising=False)
    mp.delenv("MNISTLAB_OFFLINE", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        mp.delenv(var, raising=False)  # loopback test servers must be reached directly
    mp.setattr(socket.socket, "connect", _guarded_connect)
    mp.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    mp.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
    yield
    mp.undo()


@pytest.fixture
def mnistlab_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty MNISTLAB_HOME for this test (the cache lives in ``<it>/datasets``)."""
    home = tmp_path / "mnistlab_home"
    home.mkdir()
    monkeypatch.setenv("MNISTLAB_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist_dir(shared_data) -> Path:
    """The four official MNIST .gz files (skips when absent)."""
    d = shared_data / "mnist"
    if not (d / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"official MNIST files not found in {d}")
    return d


@pytest.fixture(scope="session")
def fashion_dir(shared_data) -> Path:
    """Debian's Fashion-MNIST files (skips when absent)."""
    d = shared_data / "fashion-mnist"
    if not (d / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST files not found in {d}")
    return d


@pytest.fixture
def fail_writes(monkeypatch):
    """``fail_writes(folder, errno.EROFS)``: every write or creation under ``folder`` raises that
    OSError, as a read-only mount or a full disk would (tests run as root, for whom chmod stops
    nothing). Reads keep working. Returns the armed folder."""
    import builtins
    import errno as errno_
    import io
    import os

    real = {
        "open": os.open,
        "mkdir": os.mkdir,
        "replace": os.replace,
        "rename": os.rename,
        "unlink": os.unlink,
        "rmdir": os.rmdir,
        "bopen": builtins.open,
    }

    def arm(folder, code=errno_.EROFS):
        root = os.path.abspath(folder)

        def under(path) -> bool:
            try:
                p = os.path.abspath(os.fsdecode(path))
            except TypeError:  # a file descriptor
                return False
            return p == root or p.startswith(root + os.sep)

        def refuse(path):
            raise OSError(code, os.strerror(code), os.fsdecode(path))

        def os_open(path, flags, *a, **k):
            if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC):
                refuse(path)
            return real["open"](path, flags, *a, **k)

        def b_open(file, mode="r", *a, **k):
            if under(file) and any(c in mode for c in "wax+"):
                refuse(file)
            return real["bopen"](file, mode, *a, **k)

        def guard(name):
            def f(path, *a, **k):
                if under(path) or (a and under(a[0])):
                    refuse(path)
                return real[name](path, *a, **k)

            return f

        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(builtins, "open", b_open)
        monkeypatch.setattr(io, "open", b_open)
        for name in ("mkdir", "replace", "rename", "unlink", "rmdir"):
            monkeypatch.setattr(os, name, guard(name))
        return folder

    return arm
