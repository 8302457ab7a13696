"""imagefile: decoding with bounded memory, measured as the peak RSS of a fresh process."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab.use import imagefile


def test_reads_bytes_and_reduces_large_images_at_once():
    import io

    buf = io.BytesIO()
    Image.new("RGB", (2 * imagefile.WORK_SIDE + 10, 300), "white").save(buf, "PNG")
    img = imagefile.read_image(buf.getvalue())
    assert img.size == (imagefile.WORK_SIDE + 5, 150)  # box-reduced by 2 before anything else


PEAK_RSS = """
import resource, sys
try:  # this process's own peak: VmHWM belongs to the memory map exec() made
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
except OSError:  # no /proc: getrusage, which on Linux also counts the parent's pages at fork
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("peak_rss_mb", peak / 1024, file=sys.stderr)
"""


def _peak_rss_mb(code: str, *args) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``code`` in a fresh interpreter; its peak RSS (MB) as it reports it at exit."""
    p = subprocess.run(
        [sys.executable, "-c", code + PEAK_RSS, *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return float(p.stderr.rsplit("peak_rss_mb", 1)[1]), p


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    """A 13000 x 13000 page with one stroke, as a ~200 KB PNG and as a JPEG."""
    d = tmp_path_factory.mktemp("huge")
    img = Image.new("L", (13000, 13000), 255)
    ImageDraw.Draw(img).line([(6000, 3000), (6500, 9000)], fill=0, width=400)
    img.save(d / "huge.png", compress_level=9)
    img.save(d / "huge.jpg", quality=80)
    return d


LOAD = (
    "import sys\nfrom mnistlab.use import imageprep\nfrom mnistlab.errors import DataError\n"
    "try:\n    x = imageprep.load_image(sys.argv[1])\n    print('ink', int(x.max()))\n"
    "except DataError as exc:\n    print('error:', exc)\n"
)


def test_huge_png_is_refused_before_decoding_in_bounded_memory(huge):
    assert (huge / "huge.png").stat().st_size < 400_000
    rss, p = _peak_rss_mb(LOAD, huge / "huge.png")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("error: ") and "13000x13000 pixels" in p.stdout, p.stdout
    assert p.stdout.strip().count("\n") == 0
    assert "DecompressionBomb" not in p.stderr and "Warning" not in p.stderr, p.stderr
    assert rss < 200, rss  # nothing was decoded


def test_huge_jpeg_decodes_downscaled_in_bounded_memory(huge):
    rss, p = _peak_rss_mb(LOAD, huge / "huge.jpg")
    assert p.stdout.strip() == "ink 255", (p.stdout, p.stderr)
    assert "Warning" not in p.stderr, p.stderr
    assert rss < 500, rss


def test_largest_accepted_image_stays_under_500_mb(tmp_path):
    # just under the limits, RGBA (4 bytes a pixel in Pillow): the worst case
    side = int(np.sqrt(min(imagefile.MAX_PIXELS, imagefile.MAX_DECODE_BYTES / 4))) - 1
    img = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    ImageDraw.Draw(img).line(
        [(side // 2, side // 5), (side // 2, 4 * side // 5)], fill=(0, 0, 0, 255), width=side // 20
    )
    img.save(tmp_path / "big.png", compress_level=1)
    del img
    rss, p = _peak_rss_mb(LOAD, tmp_path / "big.png")
    assert p.stdout.strip() == "ink 255", (p.stdout, p.stderr)
    assert rss < 500, rss
