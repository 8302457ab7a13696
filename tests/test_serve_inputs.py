"""serve_inputs: request bodies and image files turned into what the model sees."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mnistlab import serve_inputs as si


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


def test_open_image_checks_the_size_from_the_header():
    _reject(lambda: si.open_image(_png_header(7000, 7000)), 413, "49,000,000 pixels")
    _reject(lambda: si.open_image(_png_header(30000, 30000)), 413, "40,000,000")
    assert si.open_image(_png_header(6000, 6000)).size == (6000, 6000)  # under: nothing decoded
    _reject(lambda: si.open_image(b""), 422, "empty upload")
    _reject(lambda: si.open_image(b"GIF89a" + b"\0" * 5), 422, "not an image")
    _reject(lambda: si.to_array(si.open_image(_png_header(6000, 6000))), 422, "damaged")


def test_to_array_modes():
    deep = Image.fromarray(np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)
    a = si.to_array(si.open_image(_png(deep)))
    assert a.dtype == np.float32 and a.min() == 0 and a.max() == 255  # 16-bit stretched
    rgba = Image.new("RGBA", (30, 20), (0, 0, 0, 0))
    assert si.to_array(si.open_image(_png(rgba))).shape == (20, 30, 4)  # alpha kept for prepare
    palette = Image.new("P", (8, 8), 0)
    palette.info["transparency"] = 0
    assert si.to_array(si.open_image(_png(palette))).shape == (8, 8, 4)
    assert si.to_array(si.open_image(_png(Image.new("RGB", (9, 7), "red")))).shape == (7, 9)


def test_to_array_turns_photos_upright_and_reduces_large_ones():
    img = Image.new("L", (60, 40), 255)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees": how phones store a portrait photo
    assert si.to_array(si.open_image(_png(img, "JPEG", exif=exif))).shape == (60, 40)
    big = si.to_array(si.open_image(_png(Image.new("L", (4000, 1000), 200))))
    assert big.shape == (500, 2000) and int(big[0, 0]) == 200  # box-averaged by 2


def test_see_and_predict_passes_28x28_through_or_prepares(tmp_path):
    class Run:  # what see_and_predict uses of a run
        dataset_name = "mnist"

        @staticmethod
        def predict_proba(x):
            return np.full((len(x), 10), 0.1, np.float32)

    x = np.zeros((28, 28), np.uint8)
    x[5:20, 13:15] = 255
    seen, p = si.see_and_predict(Run, x, False, "image")
    assert (seen == x).all() and p.shape == (10,)
    seen, _ = si.see_and_predict(Run, 255 - x, True, "image")  # dark on light: prepared
    assert seen.max() == 255 and seen[0].max() == 0
    _reject(
        lambda: si.see_and_predict(Run, np.full((40, 40), 200, np.uint8), True, "file"),
        422,
        "file: the image is blank",
    )
