"""The IDX file format (MNIST's), read and written strictly.

An IDX file is: two zero bytes, a dtype code, the number of dimensions, one big-endian uint32
per dimension, then the values in C order. Readers accept the raw file or its gzip.
Every defect is a one-line :class:`DataError` naming the file and what was expected; a header
declaring an absurd size fails before anything is allocated or decompressed.

>>> import numpy as np, tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x-idx3-ubyte.gz"
>>> write_idx(p, np.zeros((2, 28, 28), np.uint8))
>>> read_images(p).shape
(2, 28, 28)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from mnistlab.errors import DataError
from mnistlab.fsio import atomic_path

DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES = {dt.newbyteorder("="): code for code, dt in DTYPES.items()}
# 2 GiB: 40x the largest real file (47 MB). Declared sizes above this are refused up front.
MAX_PAYLOAD = 2 << 30
_CHUNK = 1 << 20


def is_gzip(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open(path: Path):
    # Decide by content, not by name: a raw file named .gz (or the reverse) still reads.
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def _read_exact(fh, n: int, path: Path, what: str) -> bytes:
    """Read exactly ``n`` bytes in chunks, so memory grows with what is really there."""
    parts, got = [], 0
    while got < n:
        chunk = fh.read(min(_CHUNK, n - got))
        if not chunk:
            raise DataError(f"{path}: truncated {what}: expected {n} bytes, file ends after {got}")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _read(path: Path) -> tuple[tuple[int, ...], np.dtype, bytes]:
    try:
        with _open(path) as fh:
            head = fh.read(4)
            if len(head) < 4:
                raise DataError(
                    f"{path}: not an IDX file: {len(head)} bytes, expected a 4-byte "
                    "magic number (00 00 <dtype> <ndim>)"
                )
            zero, code, ndim = struct.unpack(">HBB", head)
            if zero != 0:
                raise DataError(
                    f"{path}: bad IDX magic number 0x{head.hex()}: expected the first "
                    "two bytes to be 0 (is this an IDX file?)"
                )
            if code not in DTYPES:
                raise DataError(
                    f"{path}: unknown IDX dtype code 0x{code:02x}: expected one of "
                    + ", ".join(f"0x{c:02x}" for c in DTYPES)
                )
            if not 1 <= ndim <= 4:
                raise DataError(f"{path}: IDX header declares {ndim} dimensions, expected 1 to 4")
            shape = struct.unpack(f">{ndim}I", _read_exact(fh, 4 * ndim, path, "IDX header"))
            dtype = DTYPES[code]
            size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if size > MAX_PAYLOAD:
                raise DataError(
                    f"{path}: IDX header declares shape {shape} ({size:,} bytes); "
                    f"refusing anything above {MAX_PAYLOAD:,} bytes"
                )
            if not is_gzip(path) and path.stat().st_size != 4 + 4 * ndim + size:
                raise DataError(
                    f"{path}: IDX header declares shape {shape} = {size:,} data bytes, "
                    f"but the file holds {path.stat().st_size - 4 - 4 * ndim:,}"
                )
            data = _read_exact(fh, size, path, f"IDX data for shape {shape}")
            if fh.read(1):
                raise DataError(
                    f"{path}: trailing bytes after the {size:,} data bytes that the "
                    f"header's shape {shape} declares"
                )
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(
            f"{path}: truncated or corrupt gzip stream ({exc}); "
            "delete the file and fetch or import it again"
        ) from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an IDX file") from None
    return shape, dtype, data


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Any IDX file (raw or gzip) as a native-endian array of the declared shape and dtype."""
    path = Path(path)
    shape, dtype, data = _read(path)
    return (
        np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)
    )


def read_images(path: str | os.PathLike[str], rows: int = 28, cols: int = 28) -> np.ndarray:
    """An image file: must be uint8 with shape (N, rows, cols)."""
    path = Path(path)
    shape, dtype, data = _read(path)
    if dtype != DTYPES[0x08] or len(shape) != 3 or shape[1:] != (rows, cols):
        raise DataError(
            f"{path}: expected unsigned-byte images of shape (N, {rows}, {cols}), "
            f"header declares dtype code 0x{CODES[dtype.newbyteorder('=')]:02x} "
            f"shape {shape}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def read_labels(path: str | os.PathLike[str], n_classes: int = 10) -> np.ndarray:
    """A label file: must be uint8 with shape (N,) and every value below ``n_classes``."""
    path = Path(path)
    shape, dtype, data = _read(path)
    if dtype != DTYPES[0x08] or len(shape) != 1:
        raise DataError(
            f"{path}: expected unsigned-byte labels of shape (N,), header declares "
            f"dtype code 0x{CODES[dtype.newbyteorder('=')]:02x} shape {shape}"
        )
    labels = np.frombuffer(data, dtype=np.uint8)
    if labels.size and int(labels.max()) >= n_classes:
        bad = int(np.argmax(labels >= n_classes))
        raise DataError(
            f"{path}: label {int(labels[bad])} at index {bad} is out of range; "
            f"expected 0..{n_classes - 1}"
        )
    return labels


def check_pair(images: np.ndarray, labels: np.ndarray, images_path, labels_path) -> None:
    """Images and labels of one split must have the same count."""
    if len(images) != len(labels):
        raise DataError(
            f"{labels_path}: {len(labels)} labels but {images_path} holds "
            f"{len(images)} images; expected the same count"
        )


def encode(array: np.ndarray) -> bytes:
    """The IDX bytes (uncompressed) of ``array``."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=") if array.dtype.byteorder not in "=|" else array.dtype
    if native not in CODES:
        raise DataError(
            f"cannot write dtype {array.dtype} as IDX; expected one of "
            + ", ".join(str(d) for d in CODES)
        )
    if not 1 <= array.ndim <= 4:
        raise DataError(f"cannot write a {array.ndim}-d array as IDX; expected 1 to 4 dimensions")
    code = CODES[native]
    head = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    return head + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()


def write_idx(
    path: str | os.PathLike[str], array: np.ndarray, compress: bool | None = None
) -> None:
    """Write ``array`` as IDX, gzipped when ``path`` ends in .gz (or ``compress``), atomically.

    Gzip output is reproducible: no file name, mtime 0, so equal arrays give equal bytes.
    """
    path = Path(path)
    data = encode(array)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip_bytes(data)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (mtime 0, no name, level 9)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def payload_sha256(path: str | os.PathLike[str], limit: int | None = None) -> tuple[str, int]:
    """SHA-256 and size of the decompressed content (the file itself when not gzipped). With
    ``limit``, hashing stops one byte past it, so a gzip bomb is not inflated to its end: a size
    of ``limit + 1`` means "more than ``limit``"."""
    path = Path(path)
    h, n = hashlib.sha256(), 0
    try:
        with _open(path) as fh:
            while chunk := fh.read(_CHUNK if limit is None else min(_CHUNK, limit + 1 - n)):
                h.update(chunk)
                n += len(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(
            f"{path}: truncated or corrupt gzip stream ({exc}); "
            "delete the file and fetch or import it again"
        ) from None
    return h.hexdigest(), n


def file_sha256(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
