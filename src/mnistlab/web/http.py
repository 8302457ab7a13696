"""HTTP plumbing of ``mnistlab serve``: one JSON error shape, the body limit, the OpenAPI
schemas of what the handlers parse by hand, and the handlers that turn framework errors into
the API's JSON error."""

from __future__ import annotations

import json
from typing import Any, Literal

from mnistlab.web.inputs import SIZE


def error(status: int, message: str, headers: dict[str, str] | None = None):
    from fastapi.responses import Response

    return Response(
        json_bytes({"error": message}),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def json_bytes(obj: Any) -> bytes:
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


def add_error_handlers(app) -> None:
    """Every error the framework raises answers in the API's JSON shape, with a helpful line
    for a wrong path or method."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import Response
    from starlette.exceptions import HTTPException

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


def request_schemas() -> dict[str, Any]:
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


def response_models():
    from pydantic import BaseModel, Field

    class OodCheck(BaseModel):
        score: float = Field(
            description="unusualness, 0-1: the share of validation digits "
            "that look more ordinary than this input"
        )
        threshold: float = Field(description="above it: not like the training images")
        unusual: bool

    class Answer(BaseModel):
        predicted: int = Field(description="class index")
        label: str = Field(description="class name")
        probability: float = Field(description="of the label; which kind: probabilities_are")
        probabilities: dict[str, float] = Field(description="per class name")
        probabilities_are: Literal["calibrated", "raw"] = Field(
            description="calibrated: softmax(logits / temperature), fitted on the run's "
            "validation part; raw: the model's softmax, often surer than it is right"
        )
        raw_probability: float | None = Field(
            description="with calibrated probabilities: the raw softmax's, of the label"
        )
        temperature: float | None = Field(description="with calibrated probabilities")
        verdict: Literal[
            "sure", "not sure", "not a digit I know", "not like anything it was trained on"
        ] = Field(
            description="not a digit I know: the input is unlike the training images; not "
            "sure: probability below the run's not_sure_below (GET /model)"
        )
        ood: OodCheck | None = Field(
            description="the out-of-distribution check; null when the run is not calibrated"
        )
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
        test_accuracy_ci: dict[str, Any] | None = Field(
            description="Wilson 95 % interval of the test accuracy"
        )
        calibration: dict[str, Any] = Field(
            description="calibrated, temperature, fitted_on, ood_false_alarm, not_sure_below, "
            "why_not"
        )
        input: dict[str, Any]

    return Answer, Error, Health, ModelInfo
