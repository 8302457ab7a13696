"""The IDX codec: round trips, and one clear error per kind of malformed file."""

from __future__ import annotations

import gzip
import struct
import tracemalloc

import numpy as np
import pytest

from mnistlab.datasets import idx
from mnistlab.errors import DataError


def _header(code: int, *dims: int) -> bytes:
    return struct.pack(f">HBB{len(dims)}I", 0, code, len(dims), *dims)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_round_trip_every_dtype_gz_and_raw(tmp_path, dtype, suffix):
    a = (np.arange(2 * 3 * 4) - 7).astype(dtype).reshape(2, 3, 4)
    p = tmp_path / f"a{suffix}"
    idx.write_idx(p, a)
    assert idx.is_gzip(p) == (suffix == ".gz")
    b = idx.read_idx(p)
    assert b.dtype == np.dtype(dtype) and b.shape == (2, 3, 4)
    assert np.array_equal(a, b)


def test_images_and_labels_round_trip_and_gzip_is_reproducible(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    y = np.array([0, 9, 3, 3, 1], np.uint8)
    idx.write_idx(tmp_path / "x.gz", x)
    idx.write_idx(tmp_path / "y.gz", y)
    assert np.array_equal(idx.read_images(tmp_path / "x.gz"), x)
    assert np.array_equal(idx.read_labels(tmp_path / "y.gz"), y)
    first = (tmp_path / "x.gz").read_bytes()
    idx.write_idx(tmp_path / "x.gz", x)
    assert (tmp_path / "x.gz").read_bytes() == first  # mtime 0: same array, same bytes
    assert gzip.decompress(first) == idx.encode(x)


def test_content_decides_gzip_not_the_name(tmp_path):
    y = np.arange(10, dtype=np.uint8)
    (tmp_path / "labels.gz").write_bytes(idx.encode(y))  # raw bytes behind a .gz name
    assert np.array_equal(idx.read_labels(tmp_path / "labels.gz"), y)


CASES = {
    "empty file": (b"", r"not an IDX file: 0 bytes"),
    "bad magic": (b"\x1f\x00\x08\x01" + b"\0" * 8, r"bad IDX magic number 0x1f000801"),
    "html page": (b"<html><body>404</body></html>", r"bad IDX magic number"),
    "unknown dtype": (_header(0x07, 3) + b"abc", r"unknown IDX dtype code 0x07"),
    "zero dims": (b"\0\0\x08\x00", r"declares 0 dimensions, expected 1 to 4"),
    "short header": (b"\0\0\x08\x03\0\0\0\x05", r"truncated IDX header: expected 12 bytes"),
    "data too short": (
        _header(0x08, 10) + b"\0" * 9,
        r"declares shape \(10,\) = 10 data bytes, "
        r"but the file holds 9",
    ),
    "data too long": (
        _header(0x08, 10) + b"\0" * 11,
        r"declares shape \(10,\) = 10 data bytes, "
        r"but the file holds 11",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_raw_file_is_a_one_line_error_naming_it(tmp_path, case):
    content, message = CASES[case]
    p = tmp_path / "bad-idx1-ubyte"
    p.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        idx.read_idx(p)
    assert str(err.value).startswith(str(p) + ": ") and "\n" not in str(err.value)


def test_gzipped_length_errors(tmp_path):
    p = tmp_path / "y.gz"
    p.write_bytes(gzip.compress(_header(0x08, 10) + b"\0" * 9))
    with pytest.raises(
        DataError,
        match=r"y\.gz: truncated IDX data for shape \(10,\): expected "
        r"10 bytes, file ends after 9",
    ):
        idx.read_idx(p)
    p.write_bytes(gzip.compress(_header(0x08, 10) + b"\0" * 11))
    with pytest.raises(DataError, match=r"y\.gz: trailing bytes after the 10 data bytes"):
        idx.read_idx(p)


def test_truncated_gzip_stream(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    whole = gzip.compress(idx.encode(x))
    p = tmp_path / "x.gz"
    p.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(
        DataError,
        match=r"x\.gz: truncated or corrupt gzip stream .*fetch or "
        r"import it again",
    ):
        idx.read_images(p)
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        idx.payload_sha256(p)
    p.write_bytes(whole[:-12] + b"\xff" * 12)  # damaged trailer: CRC check fails
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        idx.read_images(p)


def test_images_must_be_uint8_n_28_28(tmp_path):
    p = tmp_path / "x"
    idx.write_idx(p, np.zeros((3, 28, 27), np.uint8))
    with pytest.raises(
        DataError,
        match=r"expected unsigned-byte images of shape \(N, 28, 28\), "
        r"header declares dtype code 0x08 shape \(3, 28, 27\)",
    ):
        idx.read_images(p)
    idx.write_idx(p, np.zeros((3, 28, 28), np.float32))
    with pytest.raises(DataError, match="dtype code 0x0d"):
        idx.read_images(p)


def test_labels_must_be_1d_uint8_in_range(tmp_path):
    p = tmp_path / "y"
    idx.write_idx(p, np.zeros((3, 2), np.uint8))
    with pytest.raises(DataError, match=r"expected unsigned-byte labels of shape \(N,\)"):
        idx.read_labels(p)
    idx.write_idx(p, np.array([1, 2, 10, 3], np.uint8))
    with pytest.raises(DataError, match=r"label 10 at index 2 is out of range; expected 0\.\.9"):
        idx.read_labels(p)
    assert idx.read_labels(p, n_classes=11).tolist() == [1, 2, 10, 3]


def test_image_and_label_counts_must_match(tmp_path):
    with pytest.raises(DataError, match=r"y: 4 labels but x holds 5 images"):
        idx.check_pair(np.zeros((5, 28, 28)), np.zeros(4), "x", "y")


@pytest.mark.parametrize("gz", [False, True])
def test_billion_image_header_fails_fast_with_bounded_memory(tmp_path, gz):
    p = tmp_path / ("huge.gz" if gz else "huge")
    content = _header(0x08, 10**9, 28, 28) + b"\0" * 100
    p.write_bytes(gzip.compress(content) if gz else content)
    tracemalloc.start()
    try:
        with pytest.raises(
            DataError,
            match=r"declares shape \(1000000000, 28, 28\) "
            r"\(784,000,000,000 bytes\); refusing",
        ):
            idx.read_images(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_large_but_allowed_header_on_tiny_file_fails_without_allocating_it(tmp_path):
    # 10^6 images (784 MB) is under the cap: reading must still stop at the real data.
    p = tmp_path / "big.gz"
    p.write_bytes(gzip.compress(_header(0x08, 10**6, 28, 28) + b"\0" * 5000))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"truncated IDX data .* file ends after 5000"):
            idx.read_images(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_write_rejects_unsupported_arrays(tmp_path):
    with pytest.raises(DataError, match="cannot write dtype uint16"):
        idx.write_idx(tmp_path / "a", np.zeros(3, np.uint16))
    with pytest.raises(DataError, match="cannot write a 5-d array"):
        idx.write_idx(tmp_path / "a", np.zeros((1,) * 5, np.uint8))
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such file"):
        idx.read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is a folder"):
        idx.read_idx(tmp_path)
