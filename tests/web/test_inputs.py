"""serve_inputs: request bodies and image files turned into what the model sees."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mnistlab.web import inputs as si


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _reject(call, status: int, fragment: str) -> None:
    with pytest.raises(si.Reject) as info:
        call()
    assert info.value.status == status and fragment in info.value.message
    assert "\n" not in info.value.message


def test_pixels_ints_and_floats():
    x = np.arange(784).reshape(28, 28) % 256
    got, prepare = si.parse_pixels(f'{{"image": {x.tolist()}, "prepare": true}}'.encode())
    assert prepare is True and got.dtype == np.uint8 and (got == x).all()
    got, _ = si.parse_pixels(f'{{"image": {(x + 0.4).clip(0, 255).tolist()}}}'.encode())
    assert (got == x).all()  # rounded to the nearest grey level


def test_pixels_refused():
    _reject(lambda: si.parse_pixels(b"[" * 50000 + b"]" * 50000), 400, "not valid JSON")
    _reject(lambda: si.parse_pixels(b'{"image": [[0.5, "x"]]}'), 422, "other than rows")
    _reject(lambda: si.parse_pixels(b'{"image": 7}'), 422, "got int")


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (its data would not fill it)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_open_upload_checks_the_size_from_the_header():
    _reject(lambda: si.open_upload(_png_header(7000, 7000)), 413, "7000x7000 pixels")
    _reject(lambda: si.open_upload(_png_header(30000, 30000)), 413, "40,000,000")
    _reject(lambda: si.open_upload(_png_header(300, 300), max_pixels=200 * 200), 413, "40,000")
    assert si.open_upload(_png_header(6000, 6000)).size == (6000, 6000)  # under: nothing decoded
    _reject(lambda: si.open_upload(b""), 422, "empty upload")
    _reject(lambda: si.open_upload(b"GIF89a" + b"\0" * 5), 422, "not an image")
    _reject(lambda: si.decode_upload(si.open_upload(_png_header(6000, 6000))), 422, "damaged")


def test_decode_upload_turns_photos_upright_and_reduces_large_ones():
    img = Image.new("L", (60, 40), 255)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees": how phones store a portrait photo
    assert si.decode_upload(si.open_upload(_png(img, "JPEG", exif=exif))).size == (40, 60)
    big = si.decode_upload(si.open_upload(_png(Image.new("L", (4000, 1000), 200))))
    assert big.size == (1334, 334) and big.getpixel((0, 0)) == 200  # box-averaged by 3


def test_an_upload_is_seen_as_mnistlab_predict_sees_the_file():
    from mnistlab.use.imageprep import load_image

    class Run:
        dataset_name = "mnist"

    page = np.full((90, 70, 4), 0, np.uint8)  # a transparent canvas with an opaque stroke
    page[20:70, 30:38] = (20, 20, 20, 255)
    deep = ((np.arange(2500).reshape(50, 50) % 50 > 40) * 60000).astype(np.uint16)
    for img in (Image.fromarray(page, "RGBA"), Image.fromarray(deep)):  # 16-bit: stretched
        data = _png(img)
        seen = si.see(Run, si.decode_upload(si.open_upload(data)), True, "file")
        np.testing.assert_array_equal(seen, load_image(data))


def test_see_passes_28x28_through_or_prepares(tmp_path):
    class Run:  # what see uses of a run
        dataset_name = "mnist"

    x = np.zeros((28, 28), np.uint8)
    x[5:20, 13:15] = 255
    seen = si.see(Run, x, False, "image")
    assert (seen == x).all() and seen.shape == (28, 28)
    seen = si.see(Run, 255 - x, True, "image")  # dark on light: prepared
    assert seen.max() == 255 and seen[0].max() == 0
    _reject(
        lambda: si.see(Run, np.full((40, 40), 200, np.uint8), True, "file"),
        422,
        "file: the image is blank",
    )
