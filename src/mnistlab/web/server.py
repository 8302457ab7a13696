"""Running ``mnistlab serve``: one process, or ``--workers N`` processes sharing the port, and
``serving``, a server in a child process for scripts, benchmarks and tests."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from mnistlab.errors import MnistlabError
from mnistlab.rundir import load_run
from mnistlab.use.imagefile import MAX_PIXELS
from mnistlab.web.app import MAX_BODY, TIMEOUT, create_app

ENV_CONFIG = "MNISTLAB_SERVE_CONFIG"  # how uvicorn's `--workers N` hands the settings over
PROTOCOL = "mnistlab.web.protocol:GuardedH11"  # uvicorn imports it by name in each worker


class ServeError(MnistlabError):
    """The server cannot start (address in use, bad setting)."""


def return_freed_memory() -> None:
    """glibc only: allocations of 1 MiB or more get mappings of their own, given back to the OS
    when freed. Decoding an upload allocates tens of MB at a time; by default glibc raises its
    mmap threshold at the first such free and keeps later blocks in its heaps, so a server that
    decoded a few large images would hold their memory for good."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 2**20)  # a fixed threshold: no dynamic raising
    except (OSError, AttributeError):  # another C library (musl): its own policy stays
        pass


_M_MMAP_THRESHOLD = -3  # <malloc.h>


def _app_from_env():
    """App factory for uvicorn's worker processes (``--workers`` > 1 off Linux)."""
    config = json.loads(os.environ[ENV_CONFIG])
    return_freed_memory()
    return create_app(config.pop("run"), **config)


def _worker(run: str, settings: dict, host: str, port: int, options: dict, ready) -> None:
    """One of ``--workers N`` processes: its own listening socket on the shared port."""
    import uvicorn

    return_freed_memory()
    app = create_app(run, **settings)
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    try:  # none answers before every worker listens: the kernel spreads from the start
        ready.wait()
    except threading.BrokenBarrierError:  # the server is stopping before it started
        return
    uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])


def _run_workers(run, settings: dict, host: str, port: int, workers: int, options: dict) -> None:
    """``workers`` processes, each with its own SO_REUSEPORT socket on ``host:port``.

    One shared socket (uvicorn's ``--workers``) lets whichever process wakes first accept a
    whole burst of connections; kept alive, they all stay on that one process while the others
    idle. With a socket each, the kernel spreads new connections over the processes. A worker
    that dies stops the server (with an error), as a bad run would stop a single process.
    """
    import multiprocessing
    import signal

    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(workers)
    procs = [
        ctx.Process(target=_worker, args=(str(run), settings, host, port, options, ready))
        for _ in range(workers)
    ]

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        for proc in procs:
            proc.start()
        from multiprocessing.connection import wait

        wait([proc.sentinel for proc in procs])  # returns when the first one ends
        code = next(proc.exitcode for proc in procs if proc.exitcode is not None)
        if code not in (0, -signal.SIGINT, -signal.SIGTERM):  # not a Ctrl+C or a stop
            raise ServeError(f"a server worker exited with {code}; stopped the others")
    except KeyboardInterrupt:
        pass
    finally:
        ready.abort()
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # uvicorn shuts down gracefully on SIGTERM
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def serve(
    run,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    timeout: float = TIMEOUT,
    max_body: int = MAX_BODY,
    max_pixels: int = MAX_PIXELS,
) -> None:
    """Serve ``run`` until interrupted. The run is loaded and the address checked first, so a
    bad run folder or a taken port is a one-line error before anything listens."""
    import uvicorn

    for flag, value in (
        ("--workers", workers),
        ("--max-body", max_body),
        ("--max-pixels", max_pixels),
        ("--timeout", timeout),
    ):
        if not value > 0:
            raise ServeError(f"{flag}: expected a number > 0, got {value}")
    loaded = load_run(run)
    _check_address(host, port)
    return_freed_memory()
    settings = {"timeout": timeout, "max_body": max_body, "max_pixels": max_pixels}
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {run} at http://{shown}:{port}/ (API docs /docs); Ctrl+C stops", flush=True)
    options = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "http": PROTOCOL,  # a deadline on request heads, JSON 400s (web/protocol.py)
    }
    if workers == 1:
        uvicorn.run(create_app(loaded, **settings), **options)
    elif sys.platform.startswith("linux"):  # SO_REUSEPORT balances connections only there
        _run_workers(Path(run).resolve(), settings, host, port, workers, options)
    else:
        os.environ[ENV_CONFIG] = json.dumps({"run": str(Path(run).resolve()), **settings})
        uvicorn.run("mnistlab.web.server:_app_from_env", factory=True, workers=workers, **options)


def _check_address(host: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise ServeError(f"--port: expected 1-65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind(address)
    except OSError as exc:
        raise ServeError(f"{host}:{port}: cannot listen there ({exc.strerror or exc})") from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Served:
    """A server started by ``serving``: its base URL and its process (workers are children)."""

    url: str
    process: subprocess.Popen


@contextlib.contextmanager
def serving(
    run, workers: int = 1, startup: float = 60.0, extra: tuple[str, ...] = ()
) -> Iterator[Served]:
    """Run ``mnistlab serve`` in a child process on a free loopback port; yields it once /health
    answers, and stops the process on exit (for scripts, benchmarks and tests).

    >>> with serving("runs/my-run") as server:                        # doctest: +SKIP
    ...     httpx.get(f"{server.url}/health").json()["status"]
    'ok'
    """
    import urllib.request

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "mnistlab",
        "serve",
        str(run),
        "--port",
        str(port),
        "--workers",
        str(workers),
        *extra,
    ]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + startup
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise ServeError(
                        f"server exited with {proc.returncode}: "
                        f"{log.read().decode(errors='replace').strip()[-400:]}"
                    )
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise ServeError(f"server did not answer /health within {startup:g} s")
                time.sleep(0.1)
            yield Served(url, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
