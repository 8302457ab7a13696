"""Where a dataset's files are found, how they are verified, and the parsed-array cache.

Resolution order for a downloadable dataset:

1. ``data_dir`` argument (``--data-dir``): the folder itself or its ``<name>/`` sub-folder;
   given explicitly, missing files there are an error (no silent detour elsewhere);
2. ``$MNISTLAB_DATA_DIR``, same layout (skipped when it has none of the files);
3. the cache, ``mnistlab.paths.datasets_dir()/<name>/``;
4. known system copies (Debian's /usr/share/datasets/fashion-mnist);
5. download into the cache (see download.py).

Every file is verified before use: SHA-256 of the .gz, else of the decompressed payload. The
result is remembered in ``<cache>/verified.json`` keyed by path, size and mtime, so a second
load hashes nothing. Parsed arrays are saved as ``<cache>/*.npy``, so a second load is four
``np.load(mmap_mode="r")``. ``arrays.json`` ties them to the payloads they came from and records
each one's size and mtime, checked on every load: an array changed since is rebuilt from the
verified files (a warning says so), never served.

>>> sorted(locate(SAMPLE_DIR, registry.get("mnist-sample")))[0]
'test_images'
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnistlab import paths
from mnistlab.datasets import idx, registry
from mnistlab.datasets.registry import SAMPLE_DIR, DatasetSpec, FileSpec
from mnistlab.errors import DataError, MnistlabError
from mnistlab.fsio import atomic_path, atomic_write_json

if TYPE_CHECKING:  # download pulls in urllib/http.client (~0.1 s): imported only to download
    from mnistlab.datasets import download

LOCK_TIMEOUT = 1800  # s; another process may be downloading 30 MB on a slow line


class NotAvailable(DataError):
    """The dataset's files are nowhere to be found and could not be downloaded."""

    def __init__(self, message: str, looked: list[str], download_error: str | None):
        super().__init__(message)
        self.looked, self.download_error = looked, download_error


class NoCache(DataError):
    """The cache folder cannot be created (MNISTLAB_HOME is a file, read-only, ...)."""


def cache_dir(name: str) -> Path:
    return paths.datasets_dir() / name


@dataclass
class Resolved:
    spec: DatasetSpec
    folder: Path
    origin: str  # "data_dir", "MNISTLAB_DATA_DIR", "cache", "system", "download", "bundled"
    files: dict[str, Path] = field(default_factory=dict)  # role -> path

    @property
    def source(self) -> str:
        return f"{self.origin}: {self.folder}"


def find(folder: Path, f: FileSpec) -> Path | None:
    """``folder/name.gz`` or the uncompressed ``folder/name``, whichever exists."""
    for candidate in (folder / f.name, folder / f.raw_name):
        if candidate.is_file():
            return candidate
    return None


def locate(folder: Path, spec: DatasetSpec) -> dict[str, Path]:
    """The dataset's files present in ``folder``, by role."""
    return {f.role: p for f in spec.files if (p := find(folder, f)) is not None}


def _missing(spec: DatasetSpec, found: dict[str, Path]) -> str:
    return ", ".join(f.name for f in spec.files if f.role not in found)


def _dataset_folder(root: Path, spec: DatasetSpec) -> Path:
    # Accept both DIR/<four files> and DIR/<name>/<four files> (like ../shared/data).
    return root / spec.name if not locate(root, spec) and (root / spec.name).is_dir() else root


def where_to_put(spec: DatasetSpec) -> str:
    names = ", ".join(f.name for f in spec.files)
    return (
        f"put the four files ({names}; .gz or uncompressed) into {cache_dir(spec.name)}, "
        f"or run `mnistlab data import DIR --dataset {spec.name}`, or pass --data-dir DIR / "
        "set MNISTLAB_DATA_DIR"
    )


def resolve(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    allow_download: bool = True,
    quiet: bool = False,
) -> Resolved:
    """Find (or download) the four files of ``name``; they are not verified yet."""
    spec = registry.get(name)
    if spec.bundled:
        return Resolved(spec, SAMPLE_DIR, "bundled", locate(SAMPLE_DIR, spec))
    if data_dir is not None:
        folder = _dataset_folder(Path(data_dir).expanduser(), spec)
        found = locate(folder, spec)
        if len(found) < 4:
            raise DataError(
                f"{folder}: missing {spec.name} files: {_missing(spec, found)} "
                "(expected the four files, .gz or uncompressed)"
            )
        return Resolved(spec, folder, "data_dir", found)
    looked = []
    env = os.environ.get("MNISTLAB_DATA_DIR")
    candidates = [(Path(env).expanduser(), "MNISTLAB_DATA_DIR")] if env else []
    candidates.append((cache_dir(name), "cache"))
    candidates += [(Path(d), "system") for d in spec.system_dirs]
    for root, origin in candidates:
        folder = _dataset_folder(root, spec) if origin != "cache" else root
        found = locate(folder, spec)
        if len(found) == 4:
            return Resolved(spec, folder, origin, found)
        if found and origin == "MNISTLAB_DATA_DIR":
            raise DataError(
                f"{folder} (MNISTLAB_DATA_DIR): missing {spec.name} files: {_missing(spec, found)}"
            )
        looked.append(f"{origin} {folder}")
    if not allow_download:
        raise NotAvailable(
            f"{spec.name} not found (looked in {'; '.join(looked)}); " + where_to_put(spec),
            looked,
            None,
        )
    from mnistlab.datasets import download

    try:
        fetched = fetch(name, quiet=quiet)
    except NoCache as exc:  # nowhere to download to: as unavailable as without a network
        raise NotAvailable(
            f"{spec.name} not found (looked in {'; '.join(looked)}) and cannot be "
            f"downloaded: {exc}",
            looked,
            str(exc),
        ) from None
    except download.DownloadError as exc:
        hint = "To use it offline, " if exc.unreachable else "Alternatively, "
        raise NotAvailable(
            f"{spec.name} not found (looked in {'; '.join(looked)}) and download "
            f"failed: {exc.reason}. {hint}" + where_to_put(spec),
            looked,
            exc.reason,
        ) from None
    fetched.origin = "download"
    return fetched


class Memo:
    """``verified.json``: path -> size, mtime and the identity it was verified against."""

    def __init__(self, folder: Path):
        self.path = folder / "verified.json"
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        if not isinstance(self.data, dict):  # damaged: it only saves hashing, so start over
            self.data = {}
        self.dirty = False

    @staticmethod
    def _stamp(path: Path, f: FileSpec) -> dict:
        st = path.stat()
        return {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "identity": f.payload_sha256 or f.gz_sha256,
        }

    def known(self, path: Path, f: FileSpec) -> str | None:
        entry = self.data.get(str(path.resolve()))
        if not isinstance(entry, dict):
            return None
        if {k: entry.get(k) for k in ("size", "mtime_ns", "identity")} == self._stamp(path, f):
            return entry.get("how")
        return None

    def remember(self, path: Path, f: FileSpec, how: str) -> None:
        self.data[str(path.resolve())] = {**self._stamp(path, f), "how": how}
        self.dirty = True

    def forget(self, path: Path) -> None:
        self.dirty |= self.data.pop(str(path.resolve()), None) is not None

    def save(self) -> None:
        if self.dirty:
            try:
                atomic_write_json(self.path, self.data)
            except (OSError, MnistlabError):  # an unwritable cache only costs a re-hash next time
                pass
            self.dirty = False


def verify_file(path: Path, f: FileSpec, dataset: str) -> str:
    """Hash ``path``; return how it matched ("gz-sha256" / "payload-sha256") or raise DataError."""
    fix = (
        f"delete it and run `mnistlab data fetch --dataset {dataset}` or import a good copy"
        if dataset != "mnist-sample"
        else "reinstall mnistlab"
    )
    if f.gz_sha256 and idx.is_gzip(path) and idx.file_sha256(path) == f.gz_sha256:
        return "gz-sha256"
    if f.payload_sha256 is None:
        raise DataError(
            f"{path}: cannot verify: it is not byte-identical to the official "
            f"{f.name} (sha256 {f.gz_sha256}) and the SHA-256 of {dataset}'s "
            f"decompressed data is not known; use the official .gz file ({fix})"
        )
    got, size = idx.payload_sha256(path, limit=f.payload_size)
    if size > f.payload_size:
        raise DataError(
            f"{path}: checksum mismatch: decompressed data is larger than the "
            f"{f.payload_size:,} bytes of {dataset} {f.name} (stopped there); {fix}"
        )
    if got != f.payload_sha256:
        raise DataError(
            f"{path}: checksum mismatch: decompressed data has sha256 {got[:16]}... "
            f"({size:,} bytes), expected {f.payload_sha256[:16]}... "
            f"({f.payload_size:,} bytes) for {dataset} {f.name}; {fix}"
        )
    return "payload-sha256"


def verify(resolved: Resolved, *, rehash: bool = False) -> dict[str, str]:
    """Verify every file of ``resolved``; return role -> how it matched."""
    spec = resolved.spec
    memo = None if spec.bundled else Memo(cache_dir(spec.name))
    result = {}
    try:
        for f in spec.files:
            path = resolved.files[f.role]
            how = None if (rehash or memo is None) else memo.known(path, f)
            if how is None:
                if memo is not None:
                    memo.forget(path)
                how = verify_file(path, f, spec.name)
                if memo is not None:
                    memo.remember(path, f, how)
            result[f.role] = how
    finally:
        if memo is not None:
            memo.save()
    return result


def fetch(
    name: str,
    *,
    mirrors: list[str] | None = None,
    quiet: bool = False,
    session: download.Session | None = None,
    folder: Path | None = None,
) -> Resolved:
    """Make the cache (or ``folder``) hold a verified copy of every file, downloading what lacks."""
    from filelock import FileLock, Timeout

    from mnistlab.datasets import download
    from mnistlab.datasets.progress import progress_hook

    spec = registry.get(name)
    if spec.bundled:
        raise DataError(f"{name} is bundled with mnistlab; there is nothing to fetch")
    folder = Path(folder) if folder is not None else cache_dir(name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NoCache(
            f"{folder}: cannot create the dataset folder ({exc.strerror}); set "
            "MNISTLAB_HOME (or --data-dir) to a writable folder"
        ) from None
    urls = download.mirrors(name, spec.urls, mirrors)
    session = session or download.Session()
    try:
        lock = FileLock(folder / ".lock", timeout=LOCK_TIMEOUT)
        with lock, progress_hook(session, quiet=quiet):
            memo = Memo(cache_dir(name))  # one memo per dataset, keyed by absolute path
            try:
                for f in spec.files:
                    _fetch_file(session, memo, folder, f, urls, name)
            finally:
                memo.save()
    except download.DownloadError as exc:
        reason = (
            f"no network (cannot reach {', '.join(sorted(session.dead_hosts))})"
            if exc.unreachable and session.dead_hosts
            else str(exc)
        )
        hint = "To use it offline, " if exc.unreachable else "Alternatively, "
        raise download.DownloadError(
            f"{name}: download failed: {reason}. {hint}" + where_to_put(spec),
            exc.unreachable,
            reason,
        ) from None
    except Timeout:
        raise DataError(
            f"{folder / '.lock'}: another mnistlab process has held this lock for "
            f"{LOCK_TIMEOUT} s; if none is running, delete the lock file"
        ) from None
    return Resolved(
        spec, folder, "cache" if folder == cache_dir(name) else "data_dir", locate(folder, spec)
    )


def _fetch_file(session, memo: Memo, folder: Path, f: FileSpec, urls: list[str], name: str):
    """One file of ``fetch``: a verified copy in ``folder`` is kept, else it is downloaded."""
    from mnistlab.datasets import download

    path = find(folder, f)
    if path is not None:
        try:
            memo.remember(path, f, memo.known(path, f) or verify_file(path, f, name))
            return
        except DataError:
            memo.forget(path)  # corrupt: download a fresh copy over it
    if download.offline():
        raise download.DownloadError(
            f"could not download {f.name}: downloads are disabled (MNISTLAB_OFFLINE is set)",
            unreachable=True,
        )
    session.probe(urls)
    dest = folder / f.name
    how: list[str] = []
    check = lambda p: how.append(verify_file(p, f, name))  # noqa: E731
    session.fetch(f.name, urls, dest, check, size=f.gz_size, limit=largest_gz(f))
    memo.remember(dest, f, how[-1])  # rename keeps size and mtime
    if path is not None and path != dest:
        path.unlink(missing_ok=True)  # the corrupt raw copy


def largest_gz(f: FileSpec) -> int | None:
    """The most bytes a download of ``f`` can have and still verify: the official file's size
    when only its own SHA-256 is known, else the most any gzip of the payload takes (zlib's
    ``deflateBound`` of stored blocks plus the gzip wrapper), since a mirror may compress it
    differently. A mirror streaming more is stopped one byte past it.

    >>> largest_gz(registry.get("mnist").files[0])  # train images: 47,040,016 bytes of payload
    47054397
    """
    if f.payload_sha256 is None:
        return f.gz_size
    n = f.payload_size
    return max(f.gz_size or 0, n + (n >> 12) + (n >> 14) + (n >> 25) + 7 + 18)


_ARRAYS = {
    "train_images": "x_train",
    "train_labels": "y_train",
    "test_images": "x_test",
    "test_labels": "y_test",
}


def _identity(f: FileSpec) -> str:
    return f.payload_sha256 or f"gz:{f.gz_sha256}"


def _expected_shape(spec: DatasetSpec, role: str) -> tuple[int, ...]:
    n = spec.n_train if role.startswith("train") else spec.n_test
    return (n, 28, 28) if role.endswith("images") else (n,)


ARRAYS_FORMAT = 2  # arrays.json: {"format", "source": role -> identity, "files": npy -> stamp}


def _npy_stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cached_arrays(
    spec: DatasetSpec, folder: Path
) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """(arrays, None) from an intact cache; (None, why) when a cache is there but cannot be
    trusted; (None, None) when there is none for these source files (first load, other data).

    Each .npy is tied to the verified payloads it was parsed from (their SHA-256) and to its own
    size and mtime when written, checked like the IDX files are: an array edited in place is
    never served.
    """
    try:
        meta = json.loads((folder / "arrays.json").read_text())
    except (OSError, ValueError):
        return None, None
    if (
        not isinstance(meta, dict)
        or meta.get("format") != ARRAYS_FORMAT
        or not isinstance(meta.get("files"), dict)
        or not isinstance(meta.get("source"), dict)
    ):
        return None, None  # an older layout, without stamps: rebuilt like a first load
    if any(meta["source"].get(f.role) != _identity(f) for f in spec.files):
        return None, None
    out = {}
    for f in spec.files:
        name = f"{_ARRAYS[f.role]}.npy"
        try:
            if _npy_stamp(folder / name) != meta["files"].get(name):
                return None, f"{name} was modified after it was written (size or mtime differ)"
            arr = np.load(folder / name, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None, f"{name} is missing or unreadable"
        if arr.dtype != np.uint8 or arr.shape != _expected_shape(spec, f.role):
            return None, f"{name} has shape {arr.shape} {arr.dtype}, not the dataset's"
        out[f.role] = arr
    return out, None


def arrays(resolved: Resolved) -> dict[str, np.ndarray]:
    """The four verified arrays by role; memory-mapped from the .npy cache when it is intact.

    A cache that differs from what was written is rebuilt from the verified files (a warning
    says so); a cache folder that cannot be written costs only speed (a warning says so).
    """
    spec = resolved.spec
    folder = cache_dir(spec.name)
    if spec.bundled:  # the sample parses in ~0.1 s; not worth a cache entry per MNISTLAB_HOME
        return _parse(resolved)
    cached, _ = _cached_arrays(spec, folder)
    if cached is not None:
        return cached
    # One builder at a time: another process may be rewriting the cache right now, and what
    # looked changed may be its work in progress; under the lock that is settled.
    with _cache_lock(folder):
        cached, problem = _cached_arrays(spec, folder)
        if cached is not None:
            return cached
        return _rebuild(resolved, folder, problem)


@contextlib.contextmanager
def _cache_lock(folder: Path) -> Iterator[None]:
    """``folder/.arrays.lock`` held for the block; where it cannot be made (a read-only cache),
    nothing will be written there either, so the block runs unlocked."""
    from filelock import FileLock

    lock = FileLock(folder / ".arrays.lock", timeout=LOCK_TIMEOUT)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _parse(resolved: Resolved) -> dict[str, np.ndarray]:
    """The four arrays parsed from the verified files, each pair checked."""
    spec = resolved.spec
    files, n = resolved.files, len(spec.class_names)
    out = {
        "train_images": idx.read_images(files["train_images"]),
        "train_labels": idx.read_labels(files["train_labels"], n),
        "test_images": idx.read_images(files["test_images"]),
        "test_labels": idx.read_labels(files["test_labels"], n),
    }
    for split in ("train", "test"):
        idx.check_pair(
            out[f"{split}_images"],
            out[f"{split}_labels"],
            files[f"{split}_images"],
            files[f"{split}_labels"],
        )
    return out


def _rebuild(resolved: Resolved, folder: Path, problem: str | None) -> dict[str, np.ndarray]:
    """Parse the verified files and write them as the array cache (a warning when it cannot
    be written, or when it replaces a cache that had ``problem``)."""
    spec = resolved.spec
    out = _parse(resolved)
    why = f"the array cache in {folder}: {problem}; " if problem else ""
    try:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            (folder / "arrays.json").unlink()  # invalid until every array is rewritten
        stamps = {}
        for role, arr in out.items():
            name = f"{_ARRAYS[role]}.npy"
            with atomic_path(folder / name) as tmp, open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
            stamps[name] = _npy_stamp(folder / name)
        atomic_write_json(
            folder / "arrays.json",
            {
                "format": ARRAYS_FORMAT,
                "source": {f.role: _identity(f) for f in spec.files},
                "files": stamps,
            },
        )
    except (OSError, MnistlabError) as exc:  # the data is fine; only the next load is slower
        warnings.warn(
            f"{why}cannot write the array cache in {folder} ({exc}); using the "
            f"verified files in {resolved.folder}, and loads stay slow until "
            "MNISTLAB_HOME points at a writable folder",
            stacklevel=4,
        )
        return out
    if problem:
        warnings.warn(f"{why}rebuilt it from the verified files in {resolved.folder}", stacklevel=4)
    return out


def check_array_cache(resolved: Resolved) -> str:
    """Compare the cached .npy arrays with freshly parsed files; rebuild them when they differ.

    Returns "absent", "matches" or "rebuilt".
    """
    spec = resolved.spec
    folder = cache_dir(spec.name)
    cached, problem = (None, None) if spec.bundled else _cached_arrays(spec, folder)
    if cached is None:
        if problem is None:
            return "absent"
        with warnings.catch_warnings():  # the result says it
            warnings.simplefilter("ignore")
            arrays(resolved)
        return "rebuilt"
    (folder / "arrays.json").unlink()  # parse the verified files, not the cache
    fresh = arrays(resolved)
    same = all(np.array_equal(cached[r], fresh[r]) for r in registry.ROLES)
    return "matches" if same else "rebuilt"
