"""The table of MNIST-format datasets: file names, where to get them, how to recognise them.

Every file has two identities: the SHA-256 of the ``.gz`` as the publisher serves it, and the
SHA-256 of the decompressed IDX payload. A file is accepted when either matches, so a repackaged
copy (Debian recompresses Fashion-MNIST) is accepted and a corrupted one is not.

Provenance of the numbers below (none is guessed):

* mnist: ``.gz`` and payload SHA-256 computed from the official files in ../shared/data/mnist,
  which match the published md5s.
* fashion-mnist: official ``.gz`` md5 and SHA-256 as published by Zalando Research (also used by
  tensorflow-datasets); payload SHA-256 computed from Debian's copy, whose payloads are the
  official ones. Debian's own ``.gz`` bytes differ, so they verify by payload.
* kmnist: official ``.gz`` md5 (torchvision) and SHA-256 (torchvision prototype datasets,
  tensorflow-datasets). The payload SHA-256 is NOT known here (the files could not be downloaded
  on the machine this was written on), so ``payload_sha256`` is None: only byte-exact official
  ``.gz`` files verify; a recompressed or raw KMNIST copy is refused, never called verified.

>>> spec = get("mnist")
>>> [f.name for f in spec.files][0]
'train-images-idx3-ubyte.gz'
>>> spec.n_train, spec.n_test
(60000, 10000)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mnistlab.errors import DataError

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


@dataclass(frozen=True)
class FileSpec:
    role: str  # one of ROLES
    name: str  # file name as published, always ending in .gz
    payload_size: int  # bytes of the decompressed IDX file
    payload_sha256: str | None  # None: unknown, so only gz_sha256 can verify this file
    gz_sha256: str | None = None
    gz_md5: str | None = None  # recorded for reference (the publishers' own checksum)
    gz_size: int | None = None

    @property
    def raw_name(self) -> str:
        """The name of the decompressed file, e.g. ``train-images-idx3-ubyte``."""
        return self.name[: -len(".gz")]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    files: tuple[FileSpec, ...]  # in ROLES order
    urls: tuple[str, ...]  # base URLs (ending in "/"), official first, then mirrors
    class_names: tuple[str, ...]
    license: str
    attribution: str
    homepage: str
    n_train: int
    n_test: int
    system_dirs: tuple[str, ...] = ()  # known installs by OS packages
    bundled: bool = False  # ships inside the package (never downloaded)

    def file(self, role: str) -> FileSpec:
        return self.files[ROLES.index(role)]


def _files(n_train: int, n_test: int, gz: dict[str, tuple], payload: dict[str, str | None]):
    sizes = {
        "train_images": 16 + n_train * 784,
        "train_labels": 8 + n_train,
        "test_images": 16 + n_test * 784,
        "test_labels": 8 + n_test,
    }
    return tuple(
        FileSpec(role, FILE_NAMES[role], sizes[role], payload[role], *gz[role]) for role in ROLES
    )


_MNIST = DatasetSpec(
    name="mnist",
    title="MNIST handwritten digits",
    files=_files(
        60000,
        10000,
        gz={  # (sha256, md5, size) of the official .gz
            "train_images": (
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                9912422,
            ),
            "train_labels": (
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "d53e105ee54ea40749a09fcbcd1e9432",
                28881,
            ),
            "test_images": (
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "9fb629c4189551a2d022fa330f9573f3",
                1648877,
            ),
            "test_labels": (
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                "ec29112dd5afa0611ce80d1b7f02629c",
                4542,
            ),
        },
        payload={
            "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    ),
    urls=(
        "https://yann.lecun.com/exdb/mnist/",  # official; often answers 403 nowadays
        "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
        "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's mirror
    ),
    class_names=tuple(str(i) for i in range(10)),
    license="CC BY-SA 3.0",
    attribution="MNIST database by Yann LeCun and Corinna Cortes (with Christopher J.C. Burges), "
    "https://yann.lecun.com/exdb/mnist/, licensed CC BY-SA 3.0.",
    homepage="https://yann.lecun.com/exdb/mnist/",
    n_train=60000,
    n_test=10000,
)

_FASHION = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST (Zalando article images)",
    files=_files(
        60000,
        10000,
        gz={
            "train_images": (
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                26421880,
            ),
            "train_labels": (
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "25c81989df183df01b3e8a0aad5dffbe",
                29515,
            ),
            "test_images": (
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "bef4ecab320f06d8554ea6380940ec79",
                4422102,
            ),
            "test_labels": (
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "bb300cfdad3c16e7a12a480ee83cd310",
                5148,
            ),
        },
        payload={
            "train_images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train_labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "test_images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "test_labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    ),
    urls=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # official
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    license="MIT",
    attribution="Fashion-MNIST by Han Xiao, Kashif Rasul and Roland Vollgraf, Zalando Research, "
    "https://github.com/zalandoresearch/fashion-mnist, MIT License.",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    n_train=60000,
    n_test=10000,
    system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian: dataset-fashion-mnist
)

_KMNIST = DatasetSpec(
    name="kmnist",
    title="Kuzushiji-MNIST (cursive Japanese hiragana)",
    files=_files(
        60000,
        10000,
        gz={
            "train_images": (
                "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                "bdb82020997e1d708af4cf47b453dcf7",
                None,
            ),
            "train_labels": (
                "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                "e144d726b3acfaa3e44228e80efcd344",
                None,
            ),
            "test_images": (
                "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                "5c965bf0a639b31b8f53240b1b52f4d7",
                None,
            ),
            "test_labels": (
                "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
                "7320c461ea6c1c855c0b718fb2a4b134",
                None,
            ),
        },
        # Unknown: see the module docstring. Only the official .gz bytes can verify KMNIST.
        payload={role: None for role in ROLES},
    ),
    urls=(
        "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",  # official
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",  # same host over plain HTTP; no
        # independent mirror of the IDX files is known. The SHA-256 check makes any URL safe.
    ),
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    license="CC BY-SA 4.0",
    attribution="KMNIST Dataset (created by CODH), adapted from Kuzushiji Dataset (created by "
    "NIJL and others), doi:10.20676/00000341, licensed CC BY-SA 4.0. Clanuwat et al., "
    "'Deep Learning for Classical Japanese Literature', arXiv:1812.01718.",
    homepage="https://github.com/rois-codh/kmnist",
    n_train=60000,
    n_test=10000,
)


@lru_cache(maxsize=1)
def _sample() -> DatasetSpec:
    # The sample's identities live in its manifest, written by scripts/make_sample.py beside the
    # files; tests/test_datasets_sample.py rebuilds it from official MNIST and compares.
    manifest_path = SAMPLE_DIR / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = manifest["files"]
        files = tuple(
            FileSpec(
                role,
                FILE_NAMES[role],
                int(entries[FILE_NAMES[role]]["payload_size"]),
                entries[FILE_NAMES[role]]["payload_sha256"],
                entries[FILE_NAMES[role]]["gz_sha256"],
                None,
                int(entries[FILE_NAMES[role]]["gz_size"]),
            )
            for role in ROLES
        )
        n_train, n_test = int(manifest["n_train"]), int(manifest["n_test"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{manifest_path}: bundled sample manifest missing or unreadable ({exc}); "
            "reinstall mnistlab or run scripts/make_sample.py"
        ) from None
    return DatasetSpec(
        name="mnist-sample",
        title=f"MNIST sample bundled with mnistlab ({n_train:,} train / {n_test:,} test images)",
        files=files,
        urls=(),
        class_names=_MNIST.class_names,
        license=_MNIST.license,
        attribution="Stratified subset of " + _MNIST.attribution,
        homepage=_MNIST.homepage,
        n_train=n_train,
        n_test=n_test,
        bundled=True,
    )


DOWNLOADABLE = {s.name: s for s in (_MNIST, _FASHION, _KMNIST)}
NAMES = (*DOWNLOADABLE, "mnist-sample")


def get(name: str) -> DatasetSpec:
    """The table entry of ``name``; an unknown name is a DataError listing the known ones."""
    if name == "mnist-sample":
        return _sample()
    try:
        return DOWNLOADABLE[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; expected one of: {', '.join(NAMES)}") from None
