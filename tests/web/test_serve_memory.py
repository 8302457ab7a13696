"""serve under a burst of the worst uploads: decodes in flight are bounded, and so is the memory
of the server process (its peak RSS, read from /proc while 32 clients upload at once)."""

from __future__ import annotations

import io
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

import pytest
from PIL import Image, ImageDraw

from mnistlab import fsio, rundir
from mnistlab.engines.init import init_weights
from mnistlab.recipe import Recipe
from mnistlab.use import imagefile

CEILING_MB = 600  # docs/limits.md: the serve process under 32 concurrent worst-case uploads
CLIENTS = 32


def png_rgba16(side: int) -> bytes:
    """A side x side 16-bit RGBA PNG, white with a black vertical stroke: ~320 KB at 6320 px,
    160 MB once Pillow has decoded it (4 bytes a pixel)."""
    white = b"\x00" + b"\xff" * 8 * side  # filter byte, then 16-bit RGBA pixels
    lo, hi = side // 2 - side // 40, side // 2 + side // 40
    ink = b"\x00" + b"\xff" * 8 * lo + (b"\x00" * 6 + b"\xff" * 2) * (hi - lo)
    ink += b"\xff" * 8 * (side - hi)
    z = zlib.compressobj(9)
    rows = b"".join(
        z.compress(ink if side // 5 <= y < 4 * side // 5 else white) for y in range(side)
    )
    data = rows + z.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def largest_accepted() -> bytes:
    """The most memory an accepted upload can take: RGBA just under the decode byte budget."""
    side = int((imagefile.MAX_DECODE_BYTES / 4) ** 0.5) - 1
    img = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    ImageDraw.Draw(img).line([(side // 2, side // 5), (side // 2, 4 * side // 5)], fill=0, width=99)
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _status(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith(key))


def _wait_until_idle(pid: int, timeout: float = 120.0) -> None:
    """Until the process has used no CPU for a second."""

    def ticks() -> int:
        with open(f"/proc/{pid}/stat") as fh:
            return sum(map(int, fh.read().rsplit(")", 1)[1].split()[11:13]))  # utime + stime

    end, last = time.monotonic() + timeout, -1
    while time.monotonic() < end and (now := ticks()) != last:
        last = now
        time.sleep(1.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_32_concurrent_worst_case_uploads_stay_under_the_memory_ceiling(tmp_path):
    from mnistlab.web.server import serving

    run = tmp_path / "r"
    run.mkdir()
    r = Recipe(hidden=[16])
    r.to_toml(run / rundir.RECIPE)
    rundir.write_model(run / rundir.MODEL, init_weights(r), 33.3, 78.6, tuple("0123456789"), r, "x")
    row = {"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": None, "val_accuracy": None}
    rundir.write_history(run / rundir.HISTORY, [{**row, "learning_rate": 0.01, "seconds": 1.0}])
    rundir.update_metrics(run, {"test": {"loss": 1.0, "accuracy": 0.5}})
    fsio.atomic_write_json(run / rundir.ENVIRONMENT, {"engine": "fast", "dataset": {"name": "x"}})
    bomb = png_rgba16(6320)  # under the 40 MP pixel limit; decoded, 160 MB
    assert len(bomb) < 400_000
    uploads = [largest_accepted()] * CLIENTS + [bomb] * 8
    codes: list[int] = []
    # A 2 s limit: most requests run out of time while their decode is queued or running, the
    # case where a decode used to go on after its request had given back its place.
    with serving(run, extra=("--timeout", "2")) as server:
        pid = server.process.pid
        start = threading.Barrier(len(uploads))

        def upload(body: bytes) -> None:
            req = urllib.request.Request(
                f"{server.url}/predict", data=body, headers={"Content-Type": "image/png"}
            )
            start.wait()
            try:
                with urllib.request.urlopen(req, timeout=120) as answer:
                    codes.append(answer.status)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)

        clients = [threading.Thread(target=upload, args=(u,)) for u in uploads]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        _wait_until_idle(pid)  # a decode that outlived its request counts too
        peak = _status(pid, "VmHWM")
    # the bombs refused from their header; the rest answered, or out of time
    assert codes.count(413) == 8 and set(codes) <= {200, 413, 503}, codes
    assert peak < CEILING_MB, f"peak RSS {peak:.0f} MB"
