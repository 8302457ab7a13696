"""``POST /inside``: the draw page's look inside the network, for one drawn digit.

It takes what ``POST /predict`` takes (an image upload, or JSON ``{"image": 28x28, "prepare":
false}``) and answers, beside the predicted class and the logits (the class is /predict's,
calibrated or not: temperature scaling keeps the order): ``steps``, each stage of the MNIST-style
preparation as a PNG (``use.imageprep``; a 28x28 JSON array that is not prepared has one step,
itself); ``layers``, each hidden layer's activations (a Dense layer's values, a conv block's
maps as one PNG); ``attribution``, integrated gradients of the predicted class over the 28x28
(values, a PNG overlay, the plain gradient as a PNG, how exactly they add up to the logit's
change); ``pushes``, the units of the last hidden layer that push the predicted class up most
(activation x weight). Kept out of the OpenAPI document: it is the page's, its answer shaped for
drawing (``web/static/inside.js``).

Its cost is bounded: the attribution gets at most ``COST`` of model work per request (enough
for the exact path of a notebook-sized MLP; a conv net gets a coarser path, and ``gap`` says how
coarse); the work runs on ``POST /predict``'s threads, which the time limit can leave.
"""

import base64
import functools
import io

import numpy as np

from mnistlab import plots
from mnistlab.errors import DataError
from mnistlab.evaluation import inside
from mnistlab.use import imageprep
from mnistlab.web.http import error, json_bytes
from mnistlab.web.inputs import Reject, decode_upload, open_upload, parse_pixels

COST = 3e8  # the attribution's work per request, in inside.Model.cost's units (~0.1 s)
TOP_UNITS = 8  # units listed as pushing the predicted class up
STEP_SIDE = 112  # steps are drawn at most this many pixels on a side


def _png(rgb: np.ndarray) -> str:
    """A data: URI of an (H, W) grey or (H, W, 3) RGB uint8 array as PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _step_png(step) -> str:
    """A preparation step at most STEP_SIDE on a side, the placed digit's box and centre of
    mass drawn on the step that places it."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.clip(np.rint(step.image), 0, 255).astype(np.uint8))
    h, w = step.image.shape
    scale = STEP_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = scale >= 1  # a 28x28 is shown as blocks, a photo reduced smoothly
    img = img.resize(size, Image.Resampling.NEAREST if small else Image.Resampling.BOX)
    img = img.convert("RGB")
    if step.box is not None:
        draw = ImageDraw.Draw(img)
        top, left, bh, bw = step.box
        draw.rectangle(
            [left * scale, top * scale, (left + bw) * scale - 1, (top + bh) * scale - 1],
            outline=(51, 187, 238),
        )
        cy, cx = ((c + 0.5) * scale for c in step.centre)
        draw.line([cx - 6, cy, cx + 6, cy], fill=(238, 51, 119), width=2)
        draw.line([cx, cy - 6, cx, cy + 6], fill=(238, 51, 119), width=2)
    return _png(np.asarray(img))


def _maps_png(values: np.ndarray) -> str:
    """A conv block's (h, w, c) maps side by side in rows of 8, on one grey scale (0 black,
    the block's largest value white)."""
    h, w, c = values.shape
    cols = min(8, c)
    rows = -(-c // cols)
    top = float(values.max()) or 1.0
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), 60, np.uint8)
    for k in range(c):
        r, q = divmod(k, cols)
        out[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = np.rint(
            255 * np.clip(values[:, :, k] / top, 0, 1)
        )
    return _png(out.repeat(3, 0).repeat(3, 1))


class Inside:
    """The model work of ``POST /inside`` for one run (its weights as float64, loaded once)."""

    def __init__(self, run):

        self.run = run
        self.names = list(run.class_names)
        self.model = inside.Model.of(run)
        self.steps, self.evaluations = self.model.budget(COST)
        from threadpoolctl import ThreadpoolController

        # One BLAS thread: a request's products are small, and with two threads on two busy
        # cores they took 3-4x longer (workers waiting for a core).
        self.blas = ThreadpoolController()

    def compute(self, image, prepare: bool) -> bytes:
        with self.blas.limit(limits=1, user_api="blas"):
            return self._compute(image, prepare)

    def _compute(self, image, prepare: bool) -> bytes:

        if prepare:
            try:
                x, steps = imageprep.prepare(
                    image, "image", imageprep.style_for(self.run.dataset_name), steps=True
                )
            except DataError as exc:
                raise Reject(422, str(exc)) from None
        else:
            x = np.asarray(image, np.uint8)
            steps = [imageprep.Step("seen", imageprep.STEPS["mnist"]["seen"], x.astype(float))]
        return json_bytes(self._answer(x, steps))

    def _answer(self, x: np.ndarray, steps) -> dict:

        look = inside.look(self.model, x)
        k = look.predicted
        a = inside.integrated_gradients(
            self.model, x[None], [k], steps=self.steps, max_evaluations=self.evaluations
        )[0]
        weights = self.model.p[f"dense_{len(self.model.net.of('dense')) - 1}.kernel"][:, k]
        tops = look.pushes(k, TOP_UNITS)
        return {
            "predicted": k,
            "label": self.names[k],
            "logits": dict(zip(self.names, look.logits.tolist())),
            "steps": [
                {"name": s.name, "title": s.title, "note": s.note, "png": _step_png(s)}
                for s in steps
            ],
            "layers": [_layer(layer) for layer in look.layers],
            "attribution": {
                "method": "integrated gradients from a black image",
                "target": k,
                "values": np.round(a.values, 5).tolist(),
                "png": _png(plots.attribution_rgb(x, a.values).repeat(4, 0).repeat(4, 1)),
                "gradient_png": _png(
                    plots.attribution_rgb(x, a.saliency).repeat(4, 0).repeat(4, 1)
                ),
                "logit_change": a.logit - a.baseline_logit,
                "gap": a.gap,
                "exact": a.exact,
                "evaluations": a.evaluations,
            },
            "pushes": {
                "layer": look.last_layer,
                "logit": float(look.logits[k]),
                "bias": float(look.bias[k]),
                "units": [
                    {
                        "unit": u,
                        "activation": float(look.activations[u]),
                        "weight": float(weights[u]),
                        "contribution": c,
                    }
                    for u, c in tops
                ],
            },
        }


def _layer(layer) -> dict:
    if layer.values.ndim == 3:
        h, w, c = layer.values.shape
        return {
            "name": layer.name,
            "title": layer.title,
            "kind": "maps",
            "shape": [h, w, c],
            "png": _maps_png(layer.values),
        }
    return {
        "name": layer.name,
        "title": layer.title,
        "kind": "units",
        "values": np.round(layer.values, 5).tolist(),
    }


def add_route(app, run, predictor, timeout: float) -> None:
    """Register ``POST /inside`` on ``app`` for ``run``; the work runs on ``predictor``'s
    threads (``POST /predict``'s: the same bound on the decoding memory in flight) with its
    limits on the body and the pixels."""
    import asyncio

    import anyio
    from fastapi import Request
    from fastapi.responses import Response

    inside = Inside(run)

    @app.post("/inside", include_in_schema=False)
    async def look_inside(request: Request) -> Response:
        with anyio.move_on_after(timeout):
            try:
                work = await _work(request, inside, predictor)
                # Cancelled (the time limit, a client gone), a request that waits in the queue
                # leaves it; a running one keeps its thread until it is done.
                future = predictor.pool.submit(work)
                try:
                    body = await asyncio.wrap_future(future)
                finally:
                    future.cancel()
                return Response(body, media_type="application/json")
            except Reject as exc:
                return error(exc.status, exc.message)
        return error(503, f"the request took longer than the {timeout:g} s limit; try again")


async def _work(request, inside: Inside, predictor):
    """What to compute for a JSON, multipart or raw image body, read as ``POST /predict``
    reads them: an upload's header is checked here, its pixels decoded in the thread."""
    from starlette.datastructures import UploadFile

    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()  # the app's BodyLimit bounds it
    if ctype == "application/json" or ctype.endswith("+json"):
        return functools.partial(inside.compute, *parse_pixels(body))
    if ctype == "multipart/form-data":
        limits = {"max_files": 1, "max_fields": 4, "max_part_size": predictor.max_body}
        async with request.form(**limits) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise Reject(422, "file: expected a multipart file field named 'file'")
            body = await upload.read()
    elif not (ctype.startswith("image/") or ctype == "application/octet-stream"):
        raise Reject(
            415,
            "content-type: expected application/json, multipart/form-data or image/*, got "
            f"{ctype or 'none'!r}",
        )
    img = open_upload(body, predictor.max_pixels)
    return lambda: inside.compute(decode_upload(img), True)
