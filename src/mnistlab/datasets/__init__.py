"""MNIST-format datasets: one obvious function, ``load(name)``.

``load()`` gives full MNIST when it is available (given folder, cache, system copy or download)
and otherwise the bundled ``mnist-sample``, with ``Dataset.note`` saying so. Naming a dataset
(``load("mnist")``) never falls back: it raises :class:`DataError` with what to do.

>>> from mnistlab import datasets
>>> ds = datasets.load("mnist-sample")
>>> ds.x_train.shape, ds.x_train.dtype, ds.y_test.shape
((10000, 28, 28), dtype('uint8'), (2000,))
>>> ds.class_names[:3]
('0', '1', '2')

See store.py for the resolution order and the caches, download.py for mirrors and resumption.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistlab.datasets import registry, store
from mnistlab.datasets.registry import NAMES
from mnistlab.errors import DataError
from mnistlab.fsio import atomic_path, make_dirs

__all__ = [
    "Dataset",
    "load",
    "fetch",
    "import_dir",
    "info",
    "verify",
    "path",
    "NAMES",
    "DataError",
    "MNIST_CLASSES",
]

MNIST_CLASSES = tuple(str(i) for i in range(10))
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Dataset:
    """Images ``x_*`` (N, 28, 28) uint8 and labels ``y_*`` (N,) uint8 of one dataset.

    Arrays are read-only (memory-mapped from the cache when full datasets are loaded).
    ``checksums`` maps each file name to the SHA-256 it was verified against (of the
    decompressed payload where known). ``note`` is set when the default fell back to the sample.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] = MNIST_CLASSES
    source: str = ""
    checksums: dict[str, str] = field(default_factory=dict)
    note: str | None = None
    verified_by: dict[str, str] = field(default_factory=dict)  # file -> gz-sha256/payload-sha256


def _load(name: str, data_dir: PathLike | None, download: bool, quiet: bool) -> Dataset:
    resolved = store.resolve(name, data_dir, allow_download=download, quiet=quiet)
    how = store.verify(resolved)
    a = store.arrays(resolved)
    spec = resolved.spec
    return Dataset(
        name=spec.name,
        x_train=a["train_images"],
        y_train=a["train_labels"],
        x_test=a["test_images"],
        y_test=a["test_labels"],
        class_names=spec.class_names,
        source=resolved.source,
        checksums={f.name: f.payload_sha256 or f.gz_sha256 for f in spec.files},
        verified_by={resolved.files[role].name: h for role, h in how.items()},
    )


def load(
    name: str | None = None,
    data_dir: PathLike | None = None,
    *,
    download: bool = True,
    quiet: bool = False,
) -> Dataset:
    """Load a dataset by name (``mnist``, ``fashion-mnist``, ``kmnist``, ``mnist-sample``).

    ``name=None`` means full MNIST when it can be had, else the bundled sample (``note`` says
    why). ``data_dir`` is a folder holding the four files (or a ``<name>/`` folder of them);
    ``download=False`` never touches the network; ``quiet`` hides the download progress.

    >>> load("mnist-sample").note is None
    True
    """
    if name is not None or data_dir is not None:
        return _load(name or "mnist", data_dir, download, quiet)
    try:
        return _load("mnist", None, download, quiet)
    except store.NotAvailable as exc:
        sample = _load("mnist-sample", None, False, True)
        why = f"looked in {'; '.join(exc.looked)}"
        why += f"; download failed: {exc.download_error}" if exc.download_error else ""
        note = (
            f"full MNIST not found ({why}); using the bundled sample mnist-sample "
            f"({len(sample.y_train):,} train / {len(sample.y_test):,} test images); "
            "run `mnistlab data fetch` or `mnistlab data import DIR` for the full set"
        )
        return dataclasses.replace(sample, note=note)


def fetch(
    name: str = "mnist",
    data_dir: PathLike | None = None,
    *,
    mirrors: list[str] | None = None,
    quiet: bool = False,
) -> Path:
    """Download whatever the cache lacks (verified, resumable, locked); return the folder.

    ``data_dir`` downloads into that folder instead of the cache. ``mirrors`` overrides the base
    URLs (else ``$MNISTLAB_MIRRORS``, else the registry's). Files already there and verified
    are kept; a corrupt one is replaced.
    """
    folder = Path(data_dir).expanduser() if data_dir is not None else None
    return store.fetch(name, mirrors=mirrors, quiet=quiet, folder=folder).folder


def import_dir(src: PathLike, name: str = "mnist") -> Path:
    """Verify the four files in ``src`` (gz or raw) and copy them into the cache.

    Nothing is copied unless every file verifies; each lands atomically. Returns the cache folder.
    """
    spec = registry.get(name)
    if spec.bundled:
        raise DataError(f"{name} is bundled with mnistlab; there is nothing to import")
    resolved = store.resolve(name, src, allow_download=False)  # raises naming missing files
    store.verify(resolved, rehash=True)
    dest_dir = store.cache_dir(name)
    from filelock import FileLock

    make_dirs(dest_dir)
    with FileLock(dest_dir / ".lock", timeout=store.LOCK_TIMEOUT):
        memo = store.Memo(dest_dir)
        for f in spec.files:
            src_path = resolved.files[f.role]
            dest = dest_dir / src_path.name
            if src_path.resolve() == dest.resolve():
                continue
            with atomic_path(dest) as tmp:
                shutil.copyfile(src_path, tmp)
                how = store.verify_file(tmp, f, name)  # the copy itself, not just the source
            memo.remember(dest, f, how)
            other = dest_dir / (f.raw_name if dest.name == f.name else f.name)
            if other.exists():  # a stale copy in the other form would shadow or confuse
                other.unlink()
                memo.forget(other)
        memo.save()
    return dest_dir


def verify(name: str = "mnist", data_dir: PathLike | None = None) -> dict[str, str]:
    """Re-hash the files ``load`` would use (no download) and re-check the array cache.

    Returns file name -> how it matched, plus ``"array cache"`` -> "absent" / "matches" /
    "rebuilt" (the cached .npy differed from the files and was rebuilt from them).
    Raises DataError naming the first bad file.
    """
    resolved = store.resolve(name, data_dir, allow_download=False)
    how = store.verify(resolved, rehash=True)
    result = {resolved.files[role].name: h for role, h in how.items()}
    result["array cache"] = store.check_array_cache(resolved)
    return result


def path(name: str = "mnist", data_dir: PathLike | None = None) -> Path:
    """The folder ``load`` would read ``name`` from; the cache folder when it is nowhere yet."""
    try:
        return store.resolve(name, data_dir, allow_download=False).folder
    except store.NotAvailable:
        return store.cache_dir(name)


def info(
    name: str | None = None, data_dir: PathLike | None = None, *, download: bool = False
) -> dict:
    """What ``load`` would give, summarised: shapes, class balance, source, checksum status."""
    ds = load(name, data_dir, download=download, quiet=True)
    spec = registry.get(ds.name)
    n = len(ds.class_names)
    return {
        "name": ds.name,
        "title": spec.title,
        "source": ds.source,
        "note": ds.note,
        "shapes": {
            k: tuple(getattr(ds, k).shape) for k in ("x_train", "y_train", "x_test", "y_test")
        },
        "class_names": ds.class_names,
        "train_counts": np.bincount(ds.y_train, minlength=n).tolist(),
        "test_counts": np.bincount(ds.y_test, minlength=n).tolist(),
        "checksums": ds.checksums,
        "verified_by": ds.verified_by,
        "files": [
            {"file": fname, "how": how, "sha256": _matched_hash(spec, fname, how)}
            for fname, how in ds.verified_by.items()
        ],
        "license": spec.license,
        "attribution": spec.attribution,
    }


def _matched_hash(spec: registry.DatasetSpec, fname: str, how: str) -> str:
    f = next(f for f in spec.files if fname in (f.name, f.raw_name))
    return (f.gz_sha256 if how == "gz-sha256" else f.payload_sha256) or ""
