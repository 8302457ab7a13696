"""What a request to ``mnistlab serve`` carries, turned into what the model sees.

An uploaded image file is opened (its header only) and its size checked against a pixel limit
before anything is decoded; then decoded upright and at most about DRAFT_SIDE on its longer side;
then prepared as ``mnistlab predict`` prepares a photo. A JSON body is checked field by field.
Anything unusable raises ``Reject``: an HTTP status and a one-line reason naming the field.

``see_and_predict`` is the one place that calls into predict's preparation.

>>> x, prepare = parse_pixels(b'{"image": ' + str([[0] * 28] * 28).encode() + b'}')
>>> x.shape, x.dtype, prepare
((28, 28), dtype('uint8'), False)
>>> try:
...     parse_pixels(b'{"image": [[1, 2]]}')
... except Reject as exc:
...     print(exc.status, exc.message)
422 image: expected a 28x28 array of numbers 0-255 (rows of pixels), got numbers of shape 1x2
"""

import io
import json
from typing import Any

import numpy as np

from mnistlab.errors import DataError

SIZE = 28
MAX_PIXELS = 40_000_000  # a 40-megapixel camera; decoding stays below ~200 MB
DRAFT_SIDE = 1600  # longer side images are reduced to (JPEGs decode at 1/2..1/8 scale)


class Reject(Exception):
    """A request the server refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# ---- image files --------------------------------------------------------------------------
def open_image(data: bytes, max_pixels: int = MAX_PIXELS):
    """Image file bytes -> a Pillow image whose header is read and whose size is within
    ``max_pixels``; nothing is decoded yet, so a small file that would unpack to gigabytes is
    refused cheaply."""
    from PIL import Image

    if not data:
        raise Reject(422, "file: empty upload")
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
    except Image.DecompressionBombError as exc:  # over twice Pillow's limit: refused at open
        raise Reject(413, f"file: more than the limit of {max_pixels:,} pixels ({exc})") from None
    except Exception:  # noqa: BLE001 - Pillow raises many types for bytes that are no image
        raise Reject(
            422, "file: not an image Pillow can read (expected PNG, JPEG, BMP, ...)"
        ) from None
    if width * height > max_pixels:
        raise Reject(
            413,
            f"file: {width}x{height} is {width * height:,} pixels, more than "
            f"the limit of {max_pixels:,}",
        )
    return img


def to_array(img) -> np.ndarray:
    """An opened image -> (H, W) grayscale or (H, W, 4) RGBA array, as predict's ``prepare``
    takes it: upright (EXIF), and at most about DRAFT_SIDE on its longer side (JPEGs decode at
    reduced scale, others are box-averaged down), so what follows takes bounded time and memory."""
    from PIL import ImageOps

    try:
        img.draft("L", (DRAFT_SIDE, DRAFT_SIDE))
        img.load()
        img = ImageOps.exif_transpose(img)
        deep = img.mode in ("I", "I;16", "I;16B", "I;16L", "F")  # 16-bit or float scans
        alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        img = img.convert("F" if deep else "RGBA" if alpha else "L")  # RGBA: prepare composites
        factor = max(img.size) // DRAFT_SIDE
        if factor >= 2:
            img = img.reduce(factor)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data in a known format
        raise Reject(422, f"file: damaged image ({str(exc).splitlines()[0][:200]})") from None
    a = np.asarray(img)
    if deep:  # stretch to 0..255: a cast would clip everything above 255 to white
        lo, hi = float(a.min()), float(a.max())
        a = (
            ((a.astype(np.float64) - lo) * (255.0 / (hi - lo))).astype(np.float32)
            if hi > lo
            else np.zeros_like(a)
        )
    return a


def see_and_predict(
    run, image: np.ndarray, prepare: bool, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """(the 28x28 uint8 the model saw, class probabilities) for a decoded image or a 28x28;
    the one place that calls predict's preparation."""
    from mnistlab import predict as pr

    if prepare:
        try:
            x = pr.prepare(image, name, pr.style_for(run.dataset_name))
        except DataError as exc:
            raise Reject(422, str(exc)) from None
    else:
        x = np.asarray(image, dtype=np.uint8)
    return x, run.predict_proba(x[None])[0]


# ---- JSON ---------------------------------------------------------------------------------
def parse_pixels(body: bytes) -> tuple[np.ndarray, bool]:
    """A JSON body -> (28x28 uint8, prepare); Reject with the field and what was expected."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Reject(400, f"body: not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(obj, dict) or "image" not in obj:
        raise Reject(422, 'body: expected a JSON object {"image": [[...28 numbers...] x 28]}')
    unknown = sorted(set(obj) - {"image", "prepare"})
    if unknown:
        raise Reject(422, f"body: unknown field {unknown[0]!r} (expected 'image', 'prepare')")
    prepare = obj.get("prepare", False)
    if not isinstance(prepare, bool):
        raise Reject(422, f"prepare: expected true or false, got {json.dumps(prepare)[:40]}")
    try:
        a = np.array(obj["image"])
    except (ValueError, TypeError):  # ragged rows
        a = np.empty(0, dtype=object)
    if a.shape != (SIZE, SIZE) or a.dtype.kind not in "iuf":
        raise Reject(
            422,
            f"image: expected a {SIZE}x{SIZE} array of numbers 0-255 (rows of "
            f"pixels), got {_describe(obj['image'], a)}",
        )
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise Reject(422, "image: expected numbers 0-255, got NaN or infinity")
    lo, hi = a.min(), a.max()
    if lo < 0 or hi > 255:
        raise Reject(422, f"image: expected numbers 0-255, got values from {lo:g} to {hi:g}")
    return (np.rint(a) if a.dtype.kind == "f" else a).astype(np.uint8), prepare


def _describe(value: Any, a: np.ndarray) -> str:
    if not isinstance(value, list):
        return type(value).__name__ if value is not None else "null"
    if a.dtype.kind in "iuf" or a.dtype == bool:
        kind = "booleans" if a.dtype == bool else "numbers"
        return f"{kind} of shape {'x'.join(map(str, a.shape))}"
    return "a list holding something other than rows of numbers"
