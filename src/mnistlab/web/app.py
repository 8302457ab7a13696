"""``mnistlab serve RUN``: a trained run behind an HTTP API and a draw-a-digit page.

Endpoints (FastAPI; the schema is at /openapi.json, a local reference page at /docs):

* ``POST /predict``: one image in, the model's answer out. Send it as a multipart upload
  (field ``file``), as a raw body (``Content-Type: image/png``, ``image/jpeg``, ...), or as JSON
  ``{"image": [[28 numbers 0-255] x 28], "prepare": false}``. Uploads are prepared as
  ``mnistlab predict`` prepares a photo (any polarity, cropped, scaled, centred). A JSON array
  is taken to be in MNIST's form already (bright ink on black) and goes to the model as it is,
  unless ``prepare`` is true. The answer holds ``predicted`` (class index), ``label``,
  ``probability``, ``probabilities`` (per class name), ``probabilities_are`` ("calibrated" or
  "raw"), ``raw_probability`` (the raw softmax's, of the label, beside calibrated ones),
  ``verdict`` ("sure", "not sure" below ``NOT_SURE_BELOW``, or "not a digit I know"), ``ood``
  (the out-of-distribution check: score, threshold, unusual; null for an uncalibrated run) and
  ``image``: the 28x28 the model saw.
* How sure: a run with a calibration.json (``mnistlab evaluate`` or ``mnistlab train`` writes
  it) answers with calibrated probabilities and checks each input against what it was trained
  on; the query parameter ``probabilities=raw`` asks for the raw softmax instead
  (``probabilities=calibrated`` on a run without one is a 409).
* ``GET /health``; ``GET /model`` (recipe, metrics, classes, calibration); ``GET /``, the page.

Limits: the request body (``max_body`` bytes, else 413), the pixels of an uploaded image and
the memory its decoding takes (``max_pixels`` and ``imagefile.MAX_DECODE_BYTES``, read from its
header before decoding, else 413), and the time per request (``timeout`` seconds, else 503:
reading the body, and preparing an image larger than ``INLINE_PIXELS``; smaller images and
28x28 arrays take a few milliseconds at most and are answered on the event loop, saving the
hop). Larger images are prepared by a pool of ``threads`` threads: at most that many decode at
once, whatever the number of requests, and a request that runs out of time gives up its place
in the queue but not a running decode's thread, which stays taken until that decode ends.
Nothing in a request names a file on disk. Errors are JSON ``{"error": "<one line>"}``: 400
malformed, 404, 405, 413, 415 (neither an image nor JSON), 422 well-formed but unusable (blank
image, wrong shape), 503.

>>> from fastapi.testclient import TestClient                       # doctest: +SKIP
>>> client = TestClient(create_app("runs/my-run"))                  # doctest: +SKIP
>>> client.post("/predict", json={"image": seven.tolist()}).json()["label"]  # doctest: +SKIP
'7'
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request)
# at run time, and they name classes imported inside create_app.

import functools
from pathlib import Path
from typing import Literal

import numpy as np

from mnistlab._version import __version__
from mnistlab.errors import RunError
from mnistlab.evaluation.intervals import accuracy_interval
from mnistlab.rundir import Run, load_run
from mnistlab.rundir.calibration import find_calibration, why_uncalibrated
from mnistlab.use.imagefile import MAX_PIXELS
from mnistlab.use.predict import NOT_SURE_BELOW, predict_prepared
from mnistlab.web import inside
from mnistlab.web.http import (
    BodyLimit,
    add_error_handlers,
    error,
    json_bytes,
    request_schemas,
    response_models,
)
from mnistlab.web.inputs import (
    SIZE,
    Reject,
    decode_upload,
    open_upload,
    parse_pixels,
    see,
)

MAX_BODY = 8 * 2**20  # bytes: a phone photo is 2-5 MB
TIMEOUT = 10.0  # seconds per request
THREADS = 2  # predictions at once per process; more only queue for the same cores
INLINE_PIXELS = 512 * 512  # images up to this are predicted on the event loop (<~10 ms)
STATIC = Path(__file__).resolve().parent / "static"
ERRORS = {
    400: "malformed body",
    413: "body or image too large",
    409: "calibrated probabilities asked of a run without a calibration",
    415: "neither an image nor JSON",
    422: "unusable image or array",
    503: "time limit ran out",
}


def create_app(
    run,
    *,
    max_body: int = MAX_BODY,
    max_pixels: int = MAX_PIXELS,
    timeout: float = TIMEOUT,
    threads: int = THREADS,
):
    """A FastAPI app serving ``run`` (a folder or a loaded Run); loads and checks it now."""
    from fastapi import FastAPI, Query, Request
    from fastapi.responses import FileResponse, Response
    from starlette.staticfiles import StaticFiles

    run = run if isinstance(run, Run) else load_run(run)
    run.finite_proba(np.zeros((1, SIZE, SIZE), np.uint8), before="serving")  # builds it too
    predictor = Predictor(run, max_body, max_pixels, threads)
    health, info = _describe(run, predictor.calibration)
    Answer, Error, Health, ModelInfo = response_models()
    app = FastAPI(
        title="mnistlab",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        description=f"Predictions of run {Path(run.path).name} ({run.dataset_name}).",
    )
    app.add_middleware(BodyLimit, limit=max_body)
    responses = {code: {"model": Error, "description": why} for code, why in ERRORS.items()}

    @app.post(
        "/predict",
        response_model=Answer,
        openapi_extra=request_schemas(),
        responses=responses,
        summary="Predict the class of one image",
    )
    async def predict(
        request: Request,
        probabilities: Literal["calibrated", "raw"] | None = Query(
            None,
            description="calibrated (the default when the run is calibrated) or raw softmax",
        ),
    ) -> Response:
        return await predictor.respond(request, timeout, probabilities)

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

    inside.add_route(app, run, predictor, timeout)  # POST /inside
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_error_handlers(app)
    app.state.run = run
    return app


def _describe(run, calibration) -> tuple[bytes, bytes]:
    """The bodies of ``GET /health`` and ``GET /model``, made once."""

    test = run.metrics.get("test") or {}
    n = run.dataset.test
    accuracy = test.get("accuracy")
    recipe = run.recipe.to_dict()
    recipe.get("data", {}).pop("data_dir", None)  # a path on the server: no client's business
    health = json_bytes({"status": "ok", "run": Path(run.path).name})
    info = json_bytes(
        {
            "run": Path(run.path).name,
            "dataset": run.dataset_name,
            "engine": run.engine,
            "classes": list(run.class_names),
            "recipe": recipe,
            "metrics": run.metrics,
            "test_accuracy_ci": accuracy_interval(round(accuracy * n), n)
            if isinstance(accuracy, (int, float)) and n
            else None,
            "calibration": {
                "calibrated": calibration is not None,
                "temperature": calibration.temperature if calibration is not None else None,
                "fitted_on": calibration.fitted_on if calibration is not None else None,
                "ood_false_alarm": calibration.ood.false_alarm if calibration else None,
                "not_sure_below": NOT_SURE_BELOW,
                "why_not": None if calibration is not None else why_uncalibrated(run),
            },
            "input": {
                "shape": [SIZE, SIZE],
                "range": [0, 255],
                "form": "bright ink on black, as in MNIST",
            },
        }
    )
    return health, info


class Predictor:
    """``POST /predict``: what the request carries, turned into the model's answer."""

    def __init__(self, run, max_body: int, max_pixels: int, threads: int):
        from concurrent.futures import ThreadPoolExecutor

        self.run, self.names = run, list(run.class_names)
        self.max_body, self.max_pixels = max_body, max_pixels
        # The decoding memory in flight is threads x imagefile.MAX_DECODE_BYTES at most: a
        # request that times out cannot free a thread's slot while its decode still runs.
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="mnistlab-prepare")
        self.calibration = find_calibration(run)  # read once; a damaged one stops the start

    async def respond(self, request, timeout: float, probabilities: str | None = None):
        import anyio
        from fastapi.responses import Response

        with anyio.move_on_after(timeout):
            try:
                body = await self.answer(request, self._calibrated(probabilities))
                return Response(body, media_type="application/json")
            except Reject as exc:
                return error(exc.status, exc.message)
        return error(503, f"the request took longer than the {timeout:g} s limit; try again")

    def _calibrated(self, probabilities: str | None) -> bool:
        """Whether to answer with calibrated probabilities (the default, where there are)."""

        if probabilities == "calibrated" and self.calibration is None:
            raise Reject(409, f"probabilities=calibrated: {why_uncalibrated(self.run)}")
        return self.calibration is not None and probabilities != "raw"

    def compute(self, image: np.ndarray, prepare: bool, name: str, calibrated: bool) -> bytes:

        x = see(self.run, image, prepare, name)
        try:
            (answer,) = predict_prepared(
                self.run, x[None], [name], len(self.names), calibrated, self.calibration
            )
        except RunError:  # the model's outputs are NaN/inf
            raise Reject(500, "the model predicted NaN/inf for this image") from None
        p = answer.probabilities
        return json_bytes(
            {
                "predicted": answer.predicted,
                "label": answer.label,
                "probability": answer.probability,
                "probabilities": dict(zip(self.names, p.tolist())),
                "probabilities_are": answer.kind,
                "raw_probability": answer.raw_probability,
                "temperature": self.calibration.temperature if calibrated else None,
                "verdict": answer.verdict,
                "ood": answer.ood,
                "image": x.tolist(),
            }
        )

    async def answer(self, request, calibrated: bool = False) -> bytes:
        import asyncio

        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()  # BodyLimit bounds it
        if ctype == "application/json" or ctype.endswith("+json"):
            image, prepare = parse_pixels(body)
            work = functools.partial(self.compute, image, prepare, "image", calibrated)
            size = SIZE * SIZE
        else:
            img = open_upload(await self._image_bytes(request, ctype, body), self.max_pixels)
            work = functools.partial(self._upload, img, calibrated)
            size = img.size[0] * img.size[1]
        if size <= INLINE_PIXELS:  # a few ms at most: cheaper here than a hop to a thread
            return work()
        # Larger images go to the pool. Cancelled (the time limit, a client gone), a request
        # that waits in its queue leaves it; a running one keeps its thread until it is done.
        future = self.pool.submit(work)
        try:
            return await asyncio.wrap_future(future)
        finally:
            future.cancel()

    def _upload(self, img, calibrated: bool) -> bytes:
        return self.compute(decode_upload(img), True, "file", calibrated)

    async def _image_bytes(self, request, ctype: str, body: bytes) -> bytes:
        from starlette.datastructures import UploadFile

        if ctype == "multipart/form-data":
            max_part = self.max_body
            async with request.form(max_files=1, max_fields=4, max_part_size=max_part) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise Reject(422, "file: expected a multipart file field named 'file'")
                return await upload.read()
        if not (ctype.startswith("image/") or ctype == "application/octet-stream"):
            raise Reject(
                415,
                f"content-type: expected application/json, multipart/form-"
                f"data or image/*, got {ctype or 'none'!r}",
            )
        return body
