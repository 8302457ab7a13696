"""Build the bundled ``mnist-sample`` dataset from the official MNIST files, deterministically.

A stratified subset that keeps MNIST's own class proportions: ``--train`` training and
``--test`` test images, each digit's share of them its share of the official set (counts by
the largest-remainder rule, so they add up exactly), drawn with a fixed seed and kept in their
original order. Writes the four gzip IDX files (mtime 0, so reruns give identical bytes),
``manifest.json`` (checksums, counts per class and the source index of every image),
``SHA256SUMS`` and ``ATTRIBUTION.md`` into ``--out``.

Usage (from the repository root)::

    python scripts/make_sample.py                      # ../shared/data/mnist -> the package
    python scripts/make_sample.py --source DIR --out /tmp/sample
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from mnistlab.datasets import idx, registry
from mnistlab.fsio import atomic_write_bytes, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "mnist"
DEFAULT_OUT = ROOT / "src" / "mnistlab" / "datasets" / "sample"
SEED = 20240229
ATTRIBUTION = """\
# mnist-sample: attribution and license

These four files are a stratified subset ({n_train:,} training and {n_test:,} test images,
each digit in the proportion MNIST itself has) of the MNIST database of handwritten digits,
by Yann LeCun and Corinna Cortes (with Christopher J.C. Burges),
https://yann.lecun.com/exdb/mnist/ .

MNIST is made available under the Creative Commons Attribution-Share Alike 3.0 license
(CC BY-SA 3.0, https://creativecommons.org/licenses/by-sa/3.0/). This subset is distributed
under the same license. Images and labels are byte-identical to the official files; the
index of each one in the official training or test set is recorded in manifest.json.

Made by scripts/make_sample.py (seed {seed}) from the official files
(train-images-idx3-ubyte.gz sha256 {src_sha}).
"""


def proportional(counts: np.ndarray, total: int) -> np.ndarray:
    """``total`` split over classes in proportion to ``counts``: each class gets the floor of
    its exact share, and the images left go to the largest remainders (ties: lower class).

    >>> proportional(np.array([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]), 10000)
    array([ 987, 1124,  993, 1022,  974,  904,  986, 1044,  975,  991])
    """
    exact = counts * total / counts.sum()
    quota = np.floor(exact).astype(np.int64)
    left = total - int(quota.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - quota)))  # largest remainder first
    quota[order[:left]] += 1
    return quota


def stratified(labels: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` indices drawn without replacement, each class in its share of ``labels``,
    returned sorted."""
    counts = np.bincount(labels, minlength=10)
    picks = [
        rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False)
        for c, k in enumerate(proportional(counts, total))
    ]
    return np.sort(np.concatenate(picks))


def build(source: Path, out: Path, n_train: int = 10_000, n_test: int = 2_000) -> dict:
    """Write the sample into ``out``; return the manifest."""
    spec = registry.get("mnist")
    for f in spec.files:  # only ever derive the sample from verified official files
        got = idx.file_sha256(source / f.name)
        if got != f.gz_sha256:
            raise SystemExit(f"{source / f.name}: sha256 {got}, expected official {f.gz_sha256}")
    rng = np.random.default_rng(SEED)
    arrays, indices = {}, {}
    for split in ("train", "test"):
        x = idx.read_images(source / spec.file(f"{split}_images").name)
        y = idx.read_labels(source / spec.file(f"{split}_labels").name)
        chosen = stratified(y, n_train if split == "train" else n_test, rng)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x[chosen], y[chosen]
        indices[split] = chosen.tolist()
    files = {}
    out.mkdir(parents=True, exist_ok=True)
    for role in registry.ROLES:
        name = registry.FILE_NAMES[role]
        payload = idx.encode(arrays[role])
        gz = idx.gzip_bytes(payload)
        atomic_write_bytes(out / name, gz)
        files[name] = {
            "gz_sha256": hashlib.sha256(gz).hexdigest(),
            "gz_size": len(gz),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "payload_size": len(payload),
        }
    manifest = {
        "name": "mnist-sample",
        "made_by": "scripts/make_sample.py",
        "seed": SEED,
        "n_train": len(indices["train"]),
        "n_test": len(indices["test"]),
        "class_counts": {
            split: np.bincount(arrays[f"{split}_labels"], minlength=10).tolist()
            for split in ("train", "test")
        },
        "files": files,
        "source": {"dataset": "mnist", "gz_sha256": {f.name: f.gz_sha256 for f in spec.files}},
        "source_indices": indices,
    }
    # One line per list keeps the 12,000 source indices readable and the file small.
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in manifest.items())
    atomic_write_text(out / "manifest.json", "{\n" + body + "\n}\n")
    atomic_write_text(
        out / "SHA256SUMS", "".join(f"{files[n]['gz_sha256']}  {n}\n" for n in sorted(files))
    )
    atomic_write_text(
        out / "ATTRIBUTION.md",
        ATTRIBUTION.format(
            n_train=manifest["n_train"],
            n_test=manifest["n_test"],
            seed=SEED,
            src_sha=spec.file("train_images").gz_sha256,
        ),
    )
    for p in out.iterdir():  # mkstemp makes 0600 files; the package data must be world-readable
        p.chmod(0o644)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--source",
        type=Path,
        default=DEFAULT_SOURCE,
        help="folder with the four official MNIST .gz files",
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    ap.add_argument("--train", type=int, default=10_000, help="training images")
    ap.add_argument("--test", type=int, default=2_000, help="test images")
    args = ap.parse_args(argv)
    m = build(args.source, args.out, args.train, args.test)
    total = sum(f["gz_size"] for f in m["files"].values())
    print(
        f"wrote {args.out}: {m['n_train']:,} train / {m['n_test']:,} test images, "
        f"{total / 1e6:.2f} MB gzip"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
