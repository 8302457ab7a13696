"""What a run trained on: the dataset record of environment.json, typed, and the one way back
to that data.

Training writes it (``DatasetRecord.of``); resume, evaluate and the report read it once per run
(``from_environment``) and get the same images again with ``load``, which refuses data whose
checksums are not the recorded ones: a model is never scored on, or continued with, other data.

>>> from mnistlab import datasets
>>> record = DatasetRecord.of(datasets.load("mnist-sample"))
>>> record.name, record.train, record.test
('mnist-sample', 10000, 2000)
>>> record.load("environment.json").name
'mnist-sample'
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistlab import datasets
from mnistlab.errors import RunError
from mnistlab.rundir import schema

if TYPE_CHECKING:
    from mnistlab.datasets import Dataset


@dataclasses.dataclass(frozen=True)
class DatasetRecord:
    """environment.json's "dataset": name, source, checksums, note, data_dir, train, test.

    ``data_dir`` is the folder ``fit`` was given (None: the recipe's, or the cache); ``train``
    and ``test`` count the images the run had, so a run trained on a slice is known as one.
    """

    name: str
    source: str | None = None
    checksums: dict[str, str] = dataclasses.field(default_factory=dict)
    note: str | None = None
    data_dir: str | None = None
    train: int | None = None
    test: int | None = None

    @classmethod
    def of(cls, ds: Dataset, data_dir: str | Path | None = None) -> DatasetRecord:
        """The record of ``ds`` as training uses it (``data_dir``: the folder fit was given)."""
        return cls(
            name=ds.name,
            source=ds.source,
            checksums=dict(ds.checksums),
            note=ds.note,
            data_dir=None if data_dir is None else str(data_dir),
            train=int(len(ds.x_train)),
            test=int(len(ds.x_test)),
        )

    @classmethod
    def from_environment(cls, env: dict[str, Any], path: str | Path) -> DatasetRecord:
        """The record in an environment.json object read from ``path``; RunError when it is
        missing or malformed."""
        if "dataset" not in env:
            raise RunError(f"{path}: ['dataset'] is missing, expected {schema.DATASET.name}")
        known = {f.name for f in dataclasses.fields(cls)}
        record = schema.check(env["dataset"], schema.DATASET, path, "['dataset']")
        return cls(**{k: v for k, v in record.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """As environment.json holds it."""
        return dataclasses.asdict(self)

    def verify(self, ds: Dataset, path: str | Path) -> Dataset:
        """``ds`` when its checksums are the recorded ones, else RunError about ``path``."""
        if dict(ds.checksums) != self.checksums:
            raise RunError(
                f"{path}: dataset {ds.name!r} ({ds.source}) differs from the one the run "
                "was trained on (checksums changed)"
            )
        return ds

    def load(
        self, path: str | Path, data_dir: str | Path | None = None, recipe_dir: str | None = None
    ) -> Dataset:
        """The recorded data again, by name, from ``data_dir``, else the recorded folder, else
        the recipe's ``recipe_dir`` (else the cache); verified (``verify``) against ``path``."""

        folder = data_dir or self.data_dir or recipe_dir
        return self.verify(datasets.load(self.name, data_dir=folder), path)
