"""The compare page: a compare folder's ``leaderboard.json`` as one self-contained HTML page.

The leaderboard (written by ``mnistlab compare``) holds, per variant, its recipe, parameter count,
the runs of every seed (folder relative to the compare folder, validation and test accuracy,
seconds), mean and std of each, the test difference to the baseline with its p-value, the
Holm-corrected p and the verdict, and its rank. Ranks come from validation accuracy only; the
test numbers are reported and never used to choose. The page shows accuracy +- std per variant
(a figure and a table) with the Wilson 95 % interval of the test accuracy (around the mean over
seeds, on the number of test images: the seeds share them), which differences the paired test
shows and which it does not (with the p-value either way), the training seconds of each (the
epochs' own time, from each run's history: a worker's start-up, imports and data loading are
not in it), and links to each run's own ``report.html``. A compare ranked on another metric
(``--metric ece``) shows that metric's columns too, and its test decides the verdicts.

>>> from mnistlab.pages.compare_page import verdict
>>> verdict({"name": "adam", "diff_test": 0.02, "p_holm": 0.004}, "sgd")
('real: better', 'a real difference: better (Holm-corrected p = 0.004)')
>>> verdict({"name": "dropout", "diff_test": 0.001, "p_holm": 0.31}, "sgd")[1]
'not shown by the paired test (Holm-corrected p = 0.31)'
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mnistlab import plots
from mnistlab.errors import MnistlabError, RunError
from mnistlab.evaluation import significance
from mnistlab.fsio import atomic_write_text
from mnistlab.pages.html import (
    Html,
    esc,
    figure,
    footer,
    join,
    missing,
    page,
    section,
    table,
    tag,
)
from mnistlab.pages.run_page import write
from mnistlab.rundir import (
    REPORT,  # a compare folder's page has a run page's name
    read_json,
)

LEADERBOARD = "leaderboard.json"
METRIC_NAMES = {
    "accuracy": "accuracy",
    "ece": "ECE (expected calibration error)",
    "robust_accuracy": "robust accuracy (under 12 corruptions x 3 severities)",
}
SECTIONS = {
    "accuracy": "Accuracy per variant",
    "leaderboard": "Leaderboard",
    "significance": "Which differences are real?",
    "runs": "Runs",
}


def _stat(v: Any) -> tuple[float | None, float | None]:
    """(mean, std) of a {"mean", "std"} entry; (None, None) when absent or malformed."""
    if isinstance(v, dict) and isinstance(v.get("mean"), (int, float)):
        std = v.get("std")
        return float(v["mean"]), float(std) if isinstance(std, (int, float)) else None
    return None, None


def _pm(v: Any, spec: str = ".2%") -> str:
    mean, std = _stat(v)
    if mean is None:
        return "\u2014"
    return format(mean, spec) + ("" if std is None else f" \u00b1 {format(std, spec)}")


def verdict(v: dict[str, Any], baseline: str) -> tuple[str, str]:
    """(mark, sentence) for a variant: 'baseline', or ``significance.verdict`` of its test
    difference and Holm-corrected p ('real: better', 'real: worse', 'not shown', 'untested')."""
    if v.get("name") == baseline:
        return "baseline", "the reference every other variant is tested against"
    p = v.get("p_holm") if isinstance(v.get("p_holm"), (int, float)) else None
    diff = v.get("diff_test") if isinstance(v.get("diff_test"), (int, float)) else None
    # the leaderboard's own verdict knows its metric's direction (lower ECE is better)
    mark = v.get("verdict") if v.get("verdict") in _MARK_CLASS else significance.verdict(diff, p)
    if mark == "untested":
        return mark, "not tested (no p-value: too few seeds or images for a paired test)"
    p_words = f"Holm-corrected p {_p_equals(p)}"
    if mark == "not shown":
        return mark, f"not shown by the paired test ({p_words})"
    return mark, f"a real difference: {mark.split(': ')[1]} ({p_words})"


def _p_equals(p: float) -> str:
    text = significance.p_text(p)
    return text if text.startswith("<") else f"= {text}"


_MARK_CLASS = {
    "real: better": "badge ok",
    "real: worse": "badge bad",
    "not shown": "badge",
    "baseline": "badge",
    "untested": "badge",
}


def read_leaderboard(compare_dir: str | Path) -> dict[str, Any]:
    """``leaderboard.json`` of a compare folder, checked enough to draw; RunError otherwise."""

    path = Path(compare_dir) / LEADERBOARD
    board = read_json(path)
    variants = board.get("variants")
    if not isinstance(variants, list) or not variants:
        raise RunError(f"{path}: expected 'variants', a non-empty list")
    for i, v in enumerate(variants):
        if not isinstance(v, dict) or not isinstance(v.get("name"), str):
            raise RunError(f"{path}: variants[{i}] must be an object with a 'name' string")
        if not isinstance(v.get("runs", []), list):
            raise RunError(f"{path}: variants[{i}].runs must be a list")
    return board


def _ranked(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(variants, key=lambda v: (not isinstance(v.get("rank"), int), v.get("rank") or 0))


def _changes(recipe: Any, base: Any) -> str:
    """The recipe fields in which a variant differs from the baseline, 'key=value, ...'."""

    def flat(r):
        out = {}
        for k, val in (r or {}).items():
            if isinstance(val, dict):
                out.update(flat(val))
            else:
                out[k] = val
        return out

    a, b = (
        flat(recipe if isinstance(recipe, dict) else {}),
        flat(base if isinstance(base, dict) else {}),
    )
    diff = [f"{k}={a[k]}" for k in a if k != "name" and a.get(k) != b.get(k)]
    diff += [f"{k} unset" for k in b if k != "name" and k not in a]
    return ", ".join(diff) or "same recipe"


def _figure(variants: list[dict[str, Any]]) -> Html:

    def triple(v, key):
        mean, std = _stat(v.get(key))
        seeds = [
            r.get(key)
            for r in v.get("runs", [])
            if isinstance(r, dict) and isinstance(r.get(key), (int, float))
        ]
        return mean, std, seeds

    buf = io.BytesIO()
    plots.variant_accuracy(
        [v["name"] for v in variants],
        [triple(v, "val_accuracy") for v in variants],
        [triple(v, "test_accuracy") for v in variants],
        buf,
    )
    return figure(
        buf.getvalue(),
        "validation and test accuracy per variant, mean and standard deviation",
        "Mean \u00b1 std over seeds, best-ranked variant on top; each dot is one seed's run.",
        name="accuracy",
    )


def _run_link(compare_dir: Path, run: dict[str, Any], run_reports: bool, page_dir: Path) -> Html:
    rel = run.get("path")
    seed = run.get("seed", "?")
    if not isinstance(rel, str):
        return tag("span", f"seed {seed}: no folder recorded", class_="muted")
    folder = compare_dir / rel
    if run_reports and not (folder / REPORT).is_file() and folder.is_dir():
        write(folder)
    label = f"seed {seed}"
    acc = run.get("test_accuracy")
    detail = (
        f" (val {run['val_accuracy']:.2%}, test {acc:.2%})"
        if isinstance(acc, (int, float)) and isinstance(run.get("val_accuracy"), (int, float))
        else ""
    )
    if (folder / REPORT).is_file():
        # relative to the page, so the compare folder can be moved or zipped as a whole
        target = os.path.relpath(os.path.abspath(folder / REPORT), os.path.abspath(page_dir))
        href = "/".join(quote(part) for part in Path(target).parts)
        return join((tag("a", label, href=href), detail))
    return join(
        (label, detail, " ", tag("span", f"(no report yet: mnistlab report {rel})", class_="muted"))
    )


def render_compare(
    compare_dir: str | Path, *, run_reports: bool = False, page_dir: str | Path | None = None
) -> str:
    """The compare page as an HTML string (``run_reports``: write missing run reports first;
    ``page_dir``: the folder the page will be saved in, which links are relative to, default
    ``compare_dir``)."""
    root = Path(compare_dir)
    page_dir = Path(page_dir) if page_dir is not None else root
    board = read_leaderboard(root)
    variants = _ranked(board["variants"])
    baseline = str(board.get("baseline", ""))
    seeds = board.get("seeds") if isinstance(board.get("seeds"), list) else []
    metric = board.get("metric") if isinstance(board.get("metric"), str) else "accuracy"
    selection = f"{board.get('selection', 'validation')} {METRIC_NAMES.get(metric, metric)}"
    body = [
        _accuracy_section(variants, selection, seeds),
        _leaderboard_section(variants, baseline, metric),
        _significance_section(variants, baseline, METRIC_NAMES.get(metric, metric)),
        _runs_section(variants, root, run_reports, page_dir),
    ]
    head = _head(root, variants, baseline, selection)
    return page(f"mnistlab compare {root.resolve().name}", head, body, footer(root / LEADERBOARD))


def _accuracy_section(variants: list[dict[str, Any]], selection: str, seeds: list) -> Html:
    rule = tag(
        "p",
        tag("b", "How to read it. "),
        f"Variants are ranked by {selection} only. The test accuracy is reported "
        "for each variant but was never used to choose or tune anything, so it is an honest "
        f"estimate. Each number is the mean \u00b1 std over {len(seeds) or 'the'} seed"
        f"{'s' if len(seeds) != 1 else ''}"
        + (f" ({', '.join(map(str, seeds))})." if seeds else ".")
        + " The 95 % interval of the test accuracy (Wilson) is around that mean, on the number "
        "of test images: the seeds share the same images, so more seeds do not narrow it.",
    )
    try:
        fig = _figure(variants)
    except (MnistlabError, ValueError, TypeError) as exc:
        fig = missing("the accuracy figure", str(exc))
    return section("accuracy", SECTIONS["accuracy"], rule, fig)


def _num(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "\u2014"


def _ci(v: Any) -> str:
    """'97.71\u201398.26 %' from a {"low", "high"} interval; a dash when absent."""
    if isinstance(v, dict) and all(isinstance(v.get(k), (int, float)) for k in ("low", "high")):
        return f"{100 * v['low']:.2f}\u2013{100 * v['high']:.2f} %"
    return "\u2014"


def _leaderboard_section(
    variants: list[dict[str, Any]], baseline: str, metric: str = "accuracy"
) -> Html:
    short = METRIC_NAMES.get(metric, metric).split(" (")[0]
    other = [] if metric == "accuracy" else [f"val {short}", f"test {short}"]
    header = (
        "rank",
        "variant",
        *other,
        "val accuracy",
        "test accuracy",
        "test accuracy, 95 % CI",
        "verdict",
        f"\u0394 test {short} vs baseline",
        "p",
        "p (Holm)",
        "trainable parameters",
        "training s",
    )
    rows = []
    for v in variants:  # what matters first: a phone shows the left columns, the rest scrolls
        mark, _ = verdict(v, baseline)
        rows.append(
            (
                v.get("rank", "\u2014"),
                tag("b", v["name"]),
                *[_pm(v.get(f"{split}_{metric}")) for split in ("val", "test") if other],
                _pm(v.get("val_accuracy")),
                _pm(v.get("test_accuracy")),
                _ci(v.get("test_accuracy_ci")),
                _verdict_cell(mark, v.get("p_holm")),
                _num(v.get("diff_test"), "+.2%"),
                _num(v.get("p_value"), ".3g"),
                _num(v.get("p_holm"), ".3g"),
                f"{v['params']:,}" if isinstance(v.get("params"), int) else "\u2014",
                _pm(v.get("seconds"), ".1f"),
            )
        )
    verdict_col = 5 + len(other)
    numeric = [i for i in range(len(header)) if i not in (1, verdict_col)]
    table_ = table(header, rows, numeric=numeric)
    note = tag(
        "p",
        "training s: the seconds of each run's epochs, from its history, mean \u00b1 std over "
        "seeds; a worker's start-up (imports, data loading, setting up the engine) is not in it.",
        class_="muted",
    )
    return section("leaderboard", SECTIONS["leaderboard"], table_, note)


def _verdict_cell(mark: str, p: Any) -> Html:
    """The verdict's badge; a difference not shown carries its p-value beside it."""
    badge = tag("span", mark, class_=_MARK_CLASS[mark])
    if mark == "not shown" and isinstance(p, (int, float)):
        return join((badge, f" (p {_p_equals(p)})"))
    return badge


def _significance_section(
    variants: list[dict[str, Any]], baseline: str, metric: str = "accuracy"
) -> Html:
    base = next((v for v in variants if v["name"] == baseline), None)
    items = []
    for v in variants:
        mark, sentence = verdict(v, baseline)
        what = None
        if v is not base:
            changes = _changes(v.get("recipe"), base.get("recipe") if base else None)
            what = tag("span", changes, class_="muted")
        items.append(
            tag(
                "li",
                tag("span", mark, class_=_MARK_CLASS[mark]),
                " ",
                tag("b", v["name"]),
                ": ",
                sentence,
                tag("br") if what else None,
                what,
            )
        )
    text = tag(
        "p",
        f"Each variant's test {metric} is compared with the baseline's, seed by seed on the "
        "same images (a paired test). With several variants some small p-values appear by "
        "luck alone, so the p-values are corrected with Holm's method before calling a "
        "difference real. "
        f"Not shown means p \u2265 {significance.ALPHA}: these seeds and test images cannot "
        "tell the variant from the baseline, which is not proof that they are equal.",
    )
    return section("significance", SECTIONS["significance"], text, tag("ul", join(items)))


def _runs_section(
    variants: list[dict[str, Any]], root: Path, run_reports: bool, page_dir: Path
) -> Html:
    items = []
    for v in variants:
        runs = v.get("runs", [])
        links = [_run_link(root, r, run_reports, page_dir) for r in runs if isinstance(r, dict)]
        items.append(
            tag("li", tag("b", v["name"]), ": ", join(_sep(links) or ["no runs recorded"]))
        )
    return section("runs", SECTIONS["runs"], tag("ul", join(items)))


def _head(root: Path, variants: list[dict[str, Any]], baseline: str, selection: str) -> Html:
    best = variants[0]
    toc = tag("ul", join(tag("li", tag("a", t, href=f"#{k}")) for k, t in SECTIONS.items()))
    return join(
        (
            tag("h1", "Compare ", tag("code", root.resolve().name)),
            tag(
                "p",
                f"{len(variants)} variants, baseline ",
                tag("code", baseline or "\u2014"),
                f"; best by {selection}: ",
                tag("b", best["name"]),
                (
                    f" ({_pm(best.get('val_accuracy'))} validation, "
                    f"{_pm(best.get('test_accuracy'))} test)."
                ),
            ),
            tag("nav", toc, class_="toc"),
        )
    )


def _sep(items: list[Html]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out += [esc(" \u00b7 "), item] if out else [item]
    return out


def write_compare(
    compare_dir: str | Path, out: str | Path | None = None, *, run_reports: bool = False
) -> Path:
    """Write ``<compare_dir>/report.html`` (or ``out``) atomically; return its path.
    ``run_reports=True`` first writes the report of every run folder that lacks one, so each
    link leads somewhere."""
    dest = Path(out) if out is not None else Path(compare_dir) / REPORT
    atomic_write_text(
        dest, render_compare(compare_dir, run_reports=run_reports, page_dir=dest.parent)
    )
    return dest
