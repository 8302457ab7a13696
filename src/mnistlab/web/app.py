"""``mnistlab serve RUN``: a trained run behind an HTTP API and a draw-a-digit page.

Endpoints (FastAPI; the schema is at /openapi.json, a local reference page at /docs):

* ``POST /predict``: one image in, the model's answer out. Send it as a multipart upload
  (field ``file``), as a raw body (``Content-Type: image/png``, ``image/jpeg``, ...), or as JSON
  ``{"image": [[28 numbers 0-255] x 28], "prepare": false}``. Uploads are prepared as
  ``mnistlab predict`` prepares a photo (any polarity, cropped, scaled, centred). A JSON array
  is taken to be in MNIST's form already (bright ink on black) and goes to the model as it is,
  unless ``prepare`` is true. The answer holds ``predicted`` (class index), ``label``,
  ``probability``, ``probabilities`` (per class name) and ``image``: the 28x28 the model saw.
* ``GET /health``; ``GET /model`` (recipe, metrics, classes); ``GET /``, the page.

Limits: the request body (``max_body`` bytes, else 413), the pixels of an uploaded image
(``max_pixels``, read from its header before decoding, else 413), and the time per request
(``timeout`` seconds, else 503: reading the body, and preparing an image larger than
``INLINE_PIXELS``, which happens in a thread that the limit abandons; smaller images and 28x28
arrays take a few milliseconds at most and are answered on the event loop, saving the hop).
Nothing in a request names a file on disk. Errors are JSON ``{"error": "<one line>"}``: 400
malformed, 404, 405, 413, 415 (neither an image nor JSON), 422 well-formed but unusable (blank
image, wrong shape), 503.

>>> from fastapi.testclient import TestClient                       # doctest: +SKIP
>>> client = TestClient(create_app("runs/my-run"))                  # doctest: +SKIP
>>> client.post("/predict", json={"image": seven.tolist()}).json()["label"]  # doctest: +SKIP
'7'
"""

import contextlib
import dataclasses
import functools
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
from typing import Any

import numpy as np

from mnistlab.errors import MnistlabError, RunError  # noqa: F401  (part of its API)
from mnistlab.use.imagefile import MAX_PIXELS
from mnistlab.web.inputs import (
    SIZE,
    Reject,
    decode_upload,
    open_upload,
    parse_pixels,
    see_and_predict,
)

MAX_BODY = 8 * 2**20  # bytes: a phone photo is 2-5 MB
TIMEOUT = 10.0  # seconds per request
THREADS = 2  # predictions at once per process; more only queue for the same cores
INLINE_PIXELS = 512 * 512  # images up to this are predicted on the event loop (<~10 ms)
STATIC = Path(__file__).resolve().parent / "static"
ENV_CONFIG = "MNISTLAB_SERVE_CONFIG"  # how uvicorn's `--workers N` hands the settings over


class ServeError(MnistlabError):
    """The server cannot start (address in use, bad setting)."""


# ---- the app ------------------------------------------------------------------------------
def _schemas() -> dict[str, Any]:
    """Request and answer schemas for the OpenAPI document (the handlers parse by hand: cheaper
    than validating 784 numbers through pydantic, and the errors name the field)."""
    row = {
        "type": "array",
        "minItems": SIZE,
        "maxItems": SIZE,
        "items": {"type": "number", "minimum": 0, "maximum": 255},
    }
    pixels = {
        "type": "object",
        "required": ["image"],
        "additionalProperties": False,
        "properties": {
            "image": {
                "type": "array",
                "minItems": SIZE,
                "maxItems": SIZE,
                "items": row,
                "description": "28 rows of 28 pixels, bright ink (255) on black (0)",
            },
            "prepare": {
                "type": "boolean",
                "default": False,
                "description": "prepare it as a photo (crop, scale, centre) first",
            },
        },
    }
    upload = {
        "type": "object",
        "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}},
    }
    binary = {"type": "string", "format": "binary"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": pixels},
                "multipart/form-data": {"schema": upload},
                "image/png": {"schema": binary},
                "image/jpeg": {"schema": binary},
                "application/octet-stream": {"schema": binary},
            },
        }
    }


def _models():
    from pydantic import BaseModel, Field

    class Answer(BaseModel):
        predicted: int = Field(description="class index")
        label: str = Field(description="class name")
        probability: float
        probabilities: dict[str, float] = Field(description="per class name")
        image: list[list[int]] = Field(description="the 28x28 the model saw, 0-255")

    class Error(BaseModel):
        error: str

    class Health(BaseModel):
        status: str
        run: str

    class ModelInfo(BaseModel):
        run: str
        dataset: str
        engine: str
        classes: list[str]
        recipe: dict[str, Any]
        metrics: dict[str, Any]
        input: dict[str, Any]

    return Answer, Error, Health, ModelInfo


def create_app(
    run,
    *,
    max_body: int = MAX_BODY,
    max_pixels: int = MAX_PIXELS,
    timeout: float = TIMEOUT,
    threads: int = THREADS,
):
    """A FastAPI app serving ``run`` (a folder or a loaded Run); loads and checks it now."""
    import anyio
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, Response
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException

    from mnistlab._version import __version__
    from mnistlab.rundir import Run, load_run

    run = run if isinstance(run, Run) else load_run(run)
    run.finite_proba(np.zeros((1, SIZE, SIZE), np.uint8), before="serving")  # builds it too
    names = list(run.class_names)
    recipe = run.recipe.to_dict()
    recipe.get("data", {}).pop("data_dir", None)  # a path on the server: no client's business
    health = _json({"status": "ok", "run": Path(run.path).name})
    info = _json(
        {
            "run": Path(run.path).name,
            "dataset": run.dataset_name,
            "engine": run.engine,
            "classes": names,
            "recipe": recipe,
            "metrics": run.metrics,
            "input": {
                "shape": [SIZE, SIZE],
                "range": [0, 255],
                "form": "bright ink on black, as in MNIST",
            },
        }
    )
    limiter = anyio.CapacityLimiter(threads)
    Answer, Error, Health, ModelInfo = _models()
    errors = {
        code: {"model": Error, "description": why}
        for code, why in (
            (400, "malformed body"),
            (413, "body or image too large"),
            (415, "neither an image nor JSON"),
            (422, "unusable image or array"),
            (503, "time limit ran out"),
        )
    }

    app = FastAPI(
        title="mnistlab",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        description=f"Predictions of run {Path(run.path).name} ({run.dataset_name}).",
    )
    app.add_middleware(BodyLimit, limit=max_body)

    def compute(image: np.ndarray, prepare: bool, name: str) -> bytes:
        x, p = see_and_predict(run, image, prepare, name)
        if not np.all(np.isfinite(p)):
            raise Reject(500, "the model predicted NaN/inf for this image")
        k = int(np.argmax(p))
        return _json(
            {
                "predicted": k,
                "label": names[k],
                "probability": float(p[k]),
                "probabilities": dict(zip(names, p.tolist())),
                "image": x.tolist(),
            }
        )

    async def answer(request: Request) -> bytes:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()  # BodyLimit bounds it
        if ctype == "application/json" or ctype.endswith("+json"):
            image, prepare = parse_pixels(body)
            work = functools.partial(compute, image, prepare, "image")
            size = SIZE * SIZE
        else:
            if ctype == "multipart/form-data":
                async with request.form(max_files=1, max_fields=4, max_part_size=max_body) as f:
                    upload = f.get("file")
                    if not isinstance(upload, UploadFile):
                        raise Reject(422, "file: expected a multipart file field named 'file'")
                    body = await upload.read()
            elif not (ctype.startswith("image/") or ctype == "application/octet-stream"):
                raise Reject(
                    415,
                    f"content-type: expected application/json, multipart/form-"
                    f"data or image/*, got {ctype or 'none'!r}",
                )
            img = open_upload(body, max_pixels)
            work = functools.partial(lambda img: compute(decode_upload(img), True, "file"), img)
            size = img.size[0] * img.size[1]
        if size <= INLINE_PIXELS:  # a few ms at most: cheaper here than a hop to a thread
            return work()
        # Larger images go to a thread, which the time limit can abandon.
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=limiter)

    @app.post(
        "/predict",
        response_model=Answer,
        openapi_extra=_schemas(),
        responses=errors,
        summary="Predict the class of one image",
    )
    async def predict(request: Request) -> Response:
        with anyio.move_on_after(timeout):
            try:
                return Response(await answer(request), media_type="application/json")
            except Reject as exc:
                return error(exc.status, exc.message)
        return error(503, f"the request took longer than the {timeout:g} s limit; try again")

    @app.get("/health", response_model=Health, summary="Liveness")
    async def get_health() -> Response:
        return Response(health, media_type="application/json")

    @app.get("/model", response_model=ModelInfo, summary="The run: recipe, metrics, classes")
    async def get_model() -> Response:
        return Response(info, media_type="application/json")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:  # FastAPI's own page loads swagger-ui from a CDN
        return FileResponse(STATIC / "docs.html")

    from starlette.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
            message = (
                f"{request.method} {request.url.path}: no such endpoint"
                if exc.status_code == 404
                else f"{request.url.path}: {request.method} not allowed"
            ) + " (the API is described at /docs)"
        return error(exc.status_code, message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return error(422, f"{where}: {first.get('msg', 'invalid')}")

    app.state.run = run
    return app


def error(status: int, message: str, headers: dict[str, str] | None = None):
    from fastapi.responses import Response

    return Response(
        _json({"error": message}),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes gets 413, whether announced by
    Content-Length or streamed in chunks, before the rest of it is read."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"body: larger than the limit of {self.limit:,} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await error(400, "content-length: expected a number")(scope, receive, send)
            if int(length) > self.limit:
                return await error(413, too_large)(scope, receive, send)
        seen, started = 0, False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _TooLarge:
            if not started:
                await error(413, too_large)(scope, receive, send)


class _TooLarge(Exception):
    pass


# ---- running it ---------------------------------------------------------------------------
def _app_from_env():
    """App factory for uvicorn's worker processes (``--workers`` > 1 off Linux)."""
    config = json.loads(os.environ[ENV_CONFIG])
    return create_app(config.pop("run"), **config)


def _worker(run: str, settings: dict, host: str, port: int, options: dict, ready) -> None:
    """One of ``--workers N`` processes: its own listening socket on the shared port."""
    import uvicorn

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

    from mnistlab.rundir import load_run

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
    settings = {"timeout": timeout, "max_body": max_body, "max_pixels": max_pixels}
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {run} at http://{shown}:{port}/ (API docs /docs); Ctrl+C stops", flush=True)
    options = {"host": host, "port": port, "log_level": "warning", "access_log": False}
    if workers == 1:
        uvicorn.run(create_app(loaded, **settings), **options)
    elif sys.platform.startswith("linux"):  # SO_REUSEPORT balances connections only there
        _run_workers(Path(run).resolve(), settings, host, port, workers, options)
    else:
        os.environ[ENV_CONFIG] = json.dumps({"run": str(Path(run).resolve()), **settings})
        uvicorn.run("mnistlab.web.app:_app_from_env", factory=True, workers=workers, **options)


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
