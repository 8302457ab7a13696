"""What a request to ``mnistlab serve`` carries, turned into what the model sees.

An uploaded image file is read as ``mnistlab predict`` reads one (``mnistlab.use.imagefile``): its
header first, its size checked against a pixel limit before anything is decoded, then decoded
upright at a bounded size, then prepared as a photo. A JSON body is checked field by field.
Anything unusable raises ``Reject``: an HTTP status and a one-line reason naming the field.

``see`` is the one place that calls into predict's preparation.

>>> x, prepare = parse_pixels(b'{"image": ' + str([[0] * 28] * 28).encode() + b'}')
>>> x.shape, x.dtype, prepare
((28, 28), dtype('uint8'), False)
>>> try:
...     parse_pixels(b'{"image": [[1, 2]]}')
... except Reject as exc:
...     print(exc.status, exc.message)
422 image: expected a 28x28 array of numbers 0-255 (rows of pixels), got numbers of shape 1x2
"""

import json
from typing import Any

import numpy as np

from mnistlab.errors import DataError, ImageTooLarge
from mnistlab.use import imagefile
from mnistlab.use import predict as pr

SIZE = 28


class Reject(Exception):
    """A request the server refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# ---- image files --------------------------------------------------------------------------
# Uploads are read by ``mnistlab.use.imagefile``, as ``mnistlab predict`` reads files: the same
# limits, the same decoding, so a file gets the same answer from the page and from the CLI.
def open_upload(data: bytes, max_pixels: int = imagefile.MAX_PIXELS):
    """Image file bytes -> a Pillow image whose header is read and whose size is within
    ``max_pixels`` (else 413); nothing is decoded yet, so a small file that would unpack to
    gigabytes is refused cheaply."""
    if not data:
        raise Reject(422, "file: empty upload")
    try:
        return imagefile.open_image(data, "file", max_pixels)
    except ImageTooLarge as exc:
        raise Reject(413, str(exc)) from None
    except DataError as exc:
        raise Reject(422, str(exc)) from None


def decode_upload(img):
    """An ``open_upload`` image, decoded (upright, reduced to imagefile's working size)."""
    try:
        return imagefile.decode(img, "file")
    except DataError as exc:
        raise Reject(422, str(exc)) from None


def see(run, image: np.ndarray, prepare: bool, name: str) -> np.ndarray:
    """The 28x28 uint8 the model sees for a decoded image (a PIL image or an array) or a
    28x28; the one place that calls predict's preparation."""

    if prepare:
        try:
            return pr.prepare(image, name, pr.style_for(run.dataset_name))
        except DataError as exc:
            raise Reject(422, str(exc)) from None
    return np.asarray(image, dtype=np.uint8)


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
