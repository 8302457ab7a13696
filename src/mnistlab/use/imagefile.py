"""Image files decoded with bounded memory: a few hundred KB of PNG must not become gigabytes.

``Image.open`` reads only the header, so the size and pixel format are known before any pixel
is decoded. Two limits are checked there, each a one-line refusal: ``MAX_PIXELS``, and
``MAX_DECODE_BYTES``, the memory the decode itself takes (``decode_bytes``: Pillow stores an
8-bit RGB or RGBA pixel in 4 bytes and a greyscale one in 1, and a palette image is converted
to RGB(A) before it is reduced). A 320 KB PNG of 6320 x 6320 RGBA is under the pixel limit yet
decodes to 160 MB; the byte budget refuses it. A JPEG decodes at 1/2..1/8 scale directly
(``draft``). Other formats decode whole and are box-reduced at once to about ``WORK_SIDE``, the
resolution that ``mnistlab.use.imageprep`` works at. Pillow's own DecompressionBombWarning never
prints: the limits here are lower.

>>> from PIL import Image
>>> import io
>>> buf = io.BytesIO()
>>> Image.new("L", (3000, 2000), 255).save(buf, "PNG")
>>> read_image(buf.getvalue()).size      # box-reduced by 2
(1500, 1000)
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

from mnistlab.errors import DataError, ImageTooLarge
from mnistlab.fsio import read_bytes

WORK_SIDE = 1024  # longest side the preparation works at: a digit needs ~200 px, not 12 MP
MAX_PIXELS = 40_000_000  # decoded pixels (after JPEG's draft reduction) above which we refuse
MAX_DECODE_BYTES = 64 * 2**20  # memory one decode may take: a 16 MP RGB(A), a 64 MP greyscale
MAX_FILE_BYTES = 64 * 2**20  # an image file read from disk (a phone photo is 2-5 MB)
# Bytes per pixel in Pillow's storage by mode (any other: 4, as 8-bit RGB/RGBA/LA/CMYK are).
_STORED = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_TO_RGB = ("P", "1", "CMYK", "YCbCr", "LAB", "HSV", "PA", "La", "RGBa", "RGBX")  # see _reduce

Source = str | os.PathLike | bytes | BinaryIO


def read_image(
    source: Source,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_DECODE_BYTES,
):
    """Decode an image file (path, bytes or binary file) into a PIL image, memory bounded.

    ``open_image``, then ``decode``: the size is checked from the header before any pixel is
    decoded. Errors are DataError (ImageTooLarge for the size) naming ``name``.
    """
    if name is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else "<upload>"
    return decode(open_image(source, name, max_pixels, max_bytes), name)


def decode_bytes(img) -> int:
    """The memory decoding ``img`` (an ``open_image`` result) takes at its peak: the decoded
    image in Pillow's storage, plus the RGB(A) or 32-bit copy ``_reduce`` converts it to first.

    >>> from PIL import Image
    >>> decode_bytes(Image.new("RGBA", (100, 100))), decode_bytes(Image.new("P", (100, 100)))
    (40000, 50000)
    """
    w, h = img.size
    converted = img.mode in _TO_RGB or (img.mode.startswith("I;16") and max(w, h) >= 2 * WORK_SIDE)
    return w * h * (_STORED.get(img.mode, 4) + (4 if converted else 0))


def open_image(
    source: Source, name: str, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_DECODE_BYTES
):
    """The image's header only: a PIL image whose size is known and within ``max_pixels`` and
    whose decoding takes at most ``max_bytes`` (after a JPEG's draft reduction), nothing
    decoded yet, so a small file that would unpack to gigabytes costs nothing to refuse
    (ImageTooLarge)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (str, os.PathLike)):
        source = _read_file(source, name)
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    too_large = f"more than mnistlab decodes ({max_pixels:,} pixels); scale it down first"
    try:
        with warnings.catch_warnings():
            # The size limit below is ours; Pillow's own warning would print raw on stderr.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
        w, h = img.size
        if img.format == "JPEG" and max(w, h) > WORK_SIDE:
            s = WORK_SIDE / max(w, h)
            img.draft(img.mode, (max(1, int(w * s)), max(1, int(h * s))))
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{name}: is a folder, expected an image file") from None
    except Image.DecompressionBombError:  # over twice Pillow's own limit: refused at open
        raise ImageTooLarge(f"{name}: {too_large}") from None
    except UnidentifiedImageError:
        raise DataError(
            f"{name}: not an image Pillow can read (expected PNG, JPEG, BMP, ...)"
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # damage inside a known format
        raise DataError(f"{name}: damaged image file ({_first_line(exc)})") from None
    if img.size[0] * img.size[1] > max_pixels:
        img.close()
        raise ImageTooLarge(f"{name}: {w}x{h} pixels is {too_large}")
    if decode_bytes(img) > max_bytes:
        need = decode_bytes(img)
        img.close()
        raise ImageTooLarge(
            f"{name}: {w}x{h} pixels of {img.mode} take {need / 2**20:.0f} MiB to decode, more "
            f"than mnistlab decodes ({max_bytes / 2**20:.0f} MiB); scale it down first"
        )
    return img


def _read_file(path, name: str) -> bytes:
    """The bytes of an image file, at most ``MAX_FILE_BYTES``; a FIFO or a device is refused
    without being opened (Pillow would block reading a FIFO forever)."""
    try:
        return read_bytes(path, "an image file", MAX_FILE_BYTES, DataError)
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except OSError as exc:
        raise DataError(f"{name}: cannot read it ({exc.strerror or exc})") from None


def decode(img, name: str):
    """Decode an ``open_image`` result: upright (EXIF), box-reduced to about ``WORK_SIDE``."""
    from PIL import ImageOps

    try:
        with img:
            img.load()  # decode now, inside the try: truncated files fail here, not later
            img = _reduce(img)
            img = ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(f"{name}: damaged image file ({_first_line(exc)})") from None
    return img


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _reduce(img):
    """Box-average by an integer factor so the longer side is at most ~``WORK_SIDE``: memory
    for the rest is bounded, and averaging lowers the paper's noise rather than aliasing it."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in _TO_RGB:
        img = img.convert("RGBA" if "A" in img.mode or "a" in img.mode else "RGB")
    factor = max(img.size) // WORK_SIDE
    if factor >= 2:
        if img.mode.startswith("I;16"):
            img = img.convert("I")
        img = img.reduce(factor)
    return img
