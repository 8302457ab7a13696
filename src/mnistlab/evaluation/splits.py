"""The splits of a run's data, loaded again exactly as the run had them: the test set, and the
validation part its training held out (the last ``validation_split`` of the training set, as
Keras takes it), which calibration fits on and which must never be the test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistlab import rundir
from mnistlab.datasets.preprocess import split_validation
from mnistlab.errors import RunError

SPLITS = ("test", "val")  # "val": the validation part the run held out in training


def check_split(split: str) -> str:
    """``split`` if it names a split a run can be evaluated on, else a one-line RunError."""
    if split not in SPLITS:
        raise RunError(f"split (--split): expected 'test' or 'val', got {split!r}")
    return split


def run_dataset(run):
    """The data ``run`` trained on, loaded again and verified (``DatasetRecord.load``: by name,
    from the folder it recorded, with the checksums it recorded)."""

    env_file = Path(run.path) / rundir.ENVIRONMENT
    return run.dataset.load(env_file, recipe_dir=getattr(run.recipe, "data_dir", None))


def training_parts(run, ds=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_fit, y_fit, x_val, y_val): the training set of ``run`` (``ds``, default
    ``run_dataset(run)``) split as training split it, the last ``validation_split`` held out.

    It must have the number of training images the run had, and a validation part.
    """

    ds = ds if ds is not None else run_dataset(run)
    env_file = Path(run.path) / rundir.ENVIRONMENT
    record = run.dataset
    frac = run.recipe.validation_split
    if not frac:
        raise RunError(
            f"{Path(run.path) / rundir.RECIPE}: validation_split is {frac}, the run "
            "held out no validation data; use --split test"
        )
    if record.train is not None and record.train != len(ds.x_train):
        # Trained on a subset passed as a Dataset object: its validation part cannot be rebuilt,
        # and guessing would score the model on images it trained on.
        raise RunError(
            f"{env_file}: the run trained on {record.train:,} training images but "
            f"{ds.name!r} has {len(ds.x_train):,}; its validation split cannot be "
            "rebuilt, use --split test"
        )
    return split_validation(ds.x_train, ds.y_train, frac)


def split_data(run, split: str, ds=None) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (N, H, W), labels) of ``split`` for a run: "test", or "val" = the same last
    ``validation_split`` fraction of the training set that training held out.

    The data is the run's dataset record loaded again (``run_dataset``; ``ds`` if given) and,
    for "val", it must have the number of training images the run had.
    """
    check_split(split)
    ds = ds if ds is not None else run_dataset(run)
    if split == "test":
        return ds.x_test, ds.y_test
    _, _, x_val, y_val = training_parts(run, ds)
    return x_val, y_val
