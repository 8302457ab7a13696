"""mnistlab: the classic deep-learning-on-MNIST workflow as one command or one call per step.

The public API is the plain functions below, one per step of the workflow; each imports its
step on first use, so ``import mnistlab`` loads NumPy only::

    summary = mnistlab.explore("mnist")                  # dataset (name or Dataset) -> dict
    run = mnistlab.fit(mnistlab.Recipe(epochs=5))        # recipe (+ dataset) -> Run
    metrics = mnistlab.evaluate(run, split="test")       # run -> metrics
    answers = mnistlab.predict(run, ["seven.jpg"])       # run + images -> top classes
    page = mnistlab.report(run)                          # folder -> report.html
    table = mnistlab.runs()                              # runs/ -> one entry per folder

>>> import mnistlab
>>> ds = mnistlab.datasets.load("mnist-sample")
>>> ds.x_train.shape[1:]
(28, 28)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnistlab import datasets  # light: NumPy only
from mnistlab._version import __version__

if TYPE_CHECKING:  # for readers and type checkers; at run time each verb imports on first use
    from mnistlab.recipe import Recipe
    from mnistlab.rundir import Run

__all__ = [
    "Recipe",
    "__version__",
    "compare",
    "datasets",
    "evaluate",
    "explore",
    "export",
    "fit",
    "load_run",
    "predict",
    "report",
    "resume",
    "runs",
    "search",
    "serve",
]


def fit(recipe: Recipe | None = None, dataset=None, out=None, **options: Any) -> Run:
    """Train ``recipe`` (default: the notebook's) on ``dataset`` and return the finished Run,
    calibrated on its validation part as ``mnistlab train`` leaves it (where it cannot be, e.g.
    without a validation part, ``run.warnings`` says why).

    Options: see :func:`mnistlab.training.fit.fit`.
    """
    from mnistlab.training.fit import fit as _fit

    return _calibrated(_fit(recipe, dataset, out, **options))


def _calibrated(run: Run) -> Run:
    from mnistlab.errors import MnistlabError
    from mnistlab.evaluation.calibration import calibrate

    try:
        calibrate(run)
    except MnistlabError as exc:
        run.warnings.append(f"not calibrated: {exc}")
    return run


def resume(run, **options: Any) -> Run:
    """Continue the run folder ``run`` from its last checkpoint, exactly as it started, and
    calibrate it as ``fit`` does.

    Options: see :func:`mnistlab.training.fit.resume`.
    """
    from mnistlab.training.fit import resume as _resume

    return _calibrated(_resume(run, **options))


def explore(dataset=None, **options: Any) -> dict[str, Any]:
    """Class balance and pixel statistics of a dataset (a name or a Dataset), as a dict."""
    from mnistlab.exploration import explore as _explore

    return _explore(dataset, **options)


def evaluate(run, split: str = "test", out=None, **source: Any) -> dict[str, Any]:
    """Precision, recall, confusion and R² of a run (a folder or a Run) on ``split``, or of
    test-set predictions from any framework (a .npy file or an ONNX model; ``source``: its
    ``dataset``, ``data_dir`` and ``pixels``, see :mod:`mnistlab.evaluation.sources`)."""
    from mnistlab.evaluation.evaluate import evaluate as _evaluate

    return _evaluate(run, split=split, out=out, **source)


def predict(run, images, top: int = 3, **options: Any):
    """The ``top`` classes a run sees in each image (files, arrays or PIL images)."""
    from mnistlab.use.predict import predict as _predict

    return _predict(run, images, top=top, **options)


def compare(variants, **options: Any):
    """Train variants x seeds and rank them with paired tests; ``variants`` is a TOML file,
    a preset name or a parsed ``Variants``. A list of trained models (run folders, .npy
    predictions, .onnx models) is compared as it is, on the same test images.

    Options: :func:`mnistlab.experiments.compare.compare`, or for a list
    :func:`mnistlab.experiments.paired.compare_trained`.
    """
    from mnistlab.experiments.compare import compare as _compare
    from mnistlab.experiments.compare import load_preset, load_variants

    if isinstance(variants, (list, tuple)):
        from mnistlab.experiments.paired import compare_trained

        return compare_trained(variants, **options)
    if isinstance(variants, (str, Path)):
        variants = load_variants(variants) if Path(variants).suffix else load_preset(variants)
    return _compare(variants, **options)


def search(space, trials: int, **options: Any):
    """An Optuna study over a space (a TOML file or a parsed ``Space``) for ``trials`` trials."""
    from mnistlab.experiments.search import load_space
    from mnistlab.experiments.search import search as _search

    if isinstance(space, (str, Path)):
        space = load_space(space)
    return _search(space, trials, **options)


def report(folder, out=None) -> Path:
    """Write the HTML page of a run, compare, search or explore folder (a ``Run`` too);
    returns the page's path. Any other path is one ``RunError`` line."""
    from mnistlab.pages import write

    return write(getattr(folder, "path", folder), out)


def export(run, format: str = "onnx", out=None) -> Path:
    """Write a run as a self-contained model file (ONNX); returns the file's path."""
    from mnistlab.use.export import export as _export

    return _export(run, format, out)


def serve(run, **options: Any) -> None:
    """Serve a run over HTTP (API + draw-a-digit page) until interrupted."""
    from mnistlab.web.server import serve as _serve

    _serve(getattr(run, "path", run), **options)


def runs(folder=None) -> list:
    """One entry per run, compare, search or explore folder under ``folder`` (default: the
    runs folder), oldest first: name, kind, dataset, what it changes from the notebook's
    recipe, epochs, test accuracy, health and date (``rundir.listing.Entry``; ``to_dict()``
    for JSON or a DataFrame). A damaged folder is an entry whose health says why."""
    from mnistlab.rundir.listing import listing

    return listing(folder)


def load_run(path) -> Run:
    """A finished run folder, read and verified."""
    from mnistlab.rundir import load_run as _load_run

    return _load_run(path)


def __getattr__(name: str):
    if name == "Recipe":  # a class, not a verb: imported on first use like the rest
        from mnistlab.recipe import Recipe

        return Recipe
    if name == "check":  # the exercises' checks (notebooks/exercises.ipynb), on first use
        import importlib

        return importlib.import_module("mnistlab.check")
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
