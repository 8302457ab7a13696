"""The run report: one self-contained HTML page per run folder, figures embedded.

``write(run_dir)`` writes ``<run_dir>/report.html``: the recipe, the dataset and its checksums,
the learning curves, the test set's confusion matrix, per-class precision/recall/F1, the
most-confused pairs and the most confident mistakes (as digits), the honest R², the health
check's verdict, and the environment with its timings. The test-set numbers are recomputed from
``model.safetensors`` and the recorded dataset, so a page never depends on ``mnistlab evaluate``
having run. Every piece is read on its own: a run folder missing one (no history, a damaged
metrics.json, a dataset no longer on this machine) gives a page that says what is missing in
that section and renders everything else. What each section shows is in
:mod:`mnistlab.pages.run_sections`; the compare page is in :mod:`mnistlab.pages.compare_page`
(``write_compare``).

>>> import tempfile, dataclasses
>>> from mnistlab import datasets, report
>>> from mnistlab.recipe import Recipe
>>> from mnistlab.training.fit import fit
>>> ds = datasets.load("mnist-sample")
>>> small = dataclasses.replace(ds, x_train=ds.x_train[:600], y_train=ds.y_train[:600])
>>> run = fit(Recipe(epochs=1, hidden=[16]), small, out=tempfile.mkdtemp() + "/r", quiet=True)
>>> report.write(run.path).name                                   # doctest: +SKIP
'report.html'
"""

from __future__ import annotations

from pathlib import Path

from mnistlab.fsio import atomic_write_text
from mnistlab.pages.html import footer, page, section
from mnistlab.pages.run_pieces import REPORT, SECTIONS, gather
from mnistlab.pages.run_sections import RENDER, header


def render(run_dir: str | Path) -> str:
    """The report page of a run folder as an HTML string."""
    path = Path(run_dir)
    parts = gather(path)
    body = [section(key, title, RENDER[key](parts)) for key, title in SECTIONS.items()]
    return page(f"mnistlab run {path.name}", header(path, parts), body, footer(path))


def write(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``<run_dir>/report.html``)
    atomically; return the file's path."""
    dest = Path(out) if out is not None else Path(run_dir) / REPORT
    text = render(run_dir)
    atomic_write_text(dest, text)
    return dest
