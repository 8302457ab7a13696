"""The page of a comparison of trained models (``mnistlab compare RUN_A RUN_B ... --out DIR``):
its ``comparison.json`` as one self-contained HTML page.

Nothing was trained, so nothing is ranked: the first model is the baseline and every other is
tested against it on the very same test images (exact McNemar, Holm over the others). The page
shows each model's test accuracy, the difference, the images only one of the two got right, the
p-values and the verdict in the words of every comparison (``evaluation.significance``), and
links to the run folders' own pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistlab import rundir
from mnistlab.errors import RunError
from mnistlab.evaluation import significance
from mnistlab.fsio import atomic_write_text
from mnistlab.pages.html import footer, href, join, page, section, table, tag
from mnistlab.rundir.listing import COMPARISON

_MARK_CLASS = {"real: better": "badge ok", "real: worse": "badge bad"}


def read_comparison(folder: str | Path) -> dict[str, Any]:
    """comparison.json, checked enough to draw; RunError naming what is wrong otherwise."""
    path = Path(folder) / COMPARISON
    doc = rundir.read_json(path, what="a comparison of trained models")
    models = doc.get("models")
    if not isinstance(models, list) or len(models) < 2:
        raise RunError(f"{path}: expected 'models', a list of two or more")
    for i, m in enumerate(models):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            raise RunError(f"{path}: models[{i}] must be an object with a 'name' string")
    return doc


def _num(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "\u2014"


def _verdict(m: dict[str, Any], baseline: str) -> Any:
    if m["name"] == baseline:
        return tag("span", "baseline", class_="badge")
    p = m.get("p_holm") if isinstance(m.get("p_holm"), (int, float)) else None
    diff = m.get("diff_test") if isinstance(m.get("diff_test"), (int, float)) else None
    word = significance.verdict(diff, p)
    badge = tag("span", word, class_=_MARK_CLASS.get(word, "badge"))
    return join((badge, f" (p = {significance.p_text(p)})")) if word == "not shown" else badge


def _name(m: dict[str, Any], page_dir: Path) -> Any:
    """A run's name links to its page where it has one."""
    report = Path(str(m.get("path", ""))) / rundir.REPORT
    if m.get("kind") == "run" and report.is_file():
        return tag("a", tag("b", m["name"]), href=href(report, page_dir))
    return tag("b", m["name"])


def render(folder: str | Path, page_dir: str | Path | None = None) -> str:
    """The page as an HTML string; links are relative to ``page_dir`` (default ``folder``)."""
    root = rundir.run_folder(folder)
    page_dir = Path(page_dir) if page_dir is not None else root
    doc = read_comparison(root)
    baseline, models = str(doc.get("baseline", "")), doc["models"]
    data = doc.get("dataset") if isinstance(doc.get("dataset"), dict) else {}
    rows = [
        (
            _name(m, page_dir),
            m.get("kind", "\u2014"),
            _num(m.get("test_accuracy"), ".2%"),
            _num(m.get("diff_test"), "+.2%"),
            _num((m.get("discordant") or {}).get("baseline_only"), ","),
            _num((m.get("discordant") or {}).get("variant_only"), ","),
            _num(m.get("p_holm"), ".3g"),
            _verdict(m, baseline),
        )
        for m in models
    ]
    header = ("model", "kind", "test accuracy", "\u0394 test", "only baseline right",
              "only it right", "p (Holm)", "verdict")  # fmt: skip
    test = doc.get("test") if isinstance(doc.get("test"), dict) else {}
    how = tag(
        "p",
        "The test: ",
        test.get("method", "a paired test"),
        f". Real means p < {test.get('alpha', significance.ALPHA)}; not shown means these images "
        "cannot tell the model from the baseline, which is not proof that they are equal. One "
        "trained model each: this speaks of these models, not of their recipes over seeds (a "
        "variants compare measures that).",
    )
    title = tag("h1", "Compare ", tag("code", root.resolve().name))
    intro = tag(
        "p",
        f"{len(models)} trained models on {data.get('name', 'an unnamed dataset')} "
        f"({_num(data.get('test'), ',')} test images), baseline ",
        tag("code", baseline or "\u2014"),
        ".",
    )
    body = [section("models", "Models", table(header, rows, numeric=range(2, 7)), how)]
    return page(
        f"mnistlab compare {root.resolve().name}",
        join((title, intro)),
        body,
        footer(root / COMPARISON),
    )


def write(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the page of a comparison folder to ``out`` (default ``<folder>/report.html``)
    atomically; return its path."""
    dest = Path(out) if out is not None else Path(folder) / rundir.REPORT
    atomic_write_text(dest, render(folder, page_dir=dest.parent))
    return dest
