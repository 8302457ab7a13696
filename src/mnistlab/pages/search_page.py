"""The search page: a search folder (``mnistlab search``) as one self-contained HTML page.

A search folder holds ``trials.csv`` (one row per trial: its state, validation accuracy, the
values it drew, epochs, seconds and run folder), ``best_recipe.toml``, ``importance.json`` (each
searched field's share of the validation accuracy's variance, Optuna's fANOVA, computed where
the search ran) and every trial's run folder under ``trials/``. The page shows the best trial
and its recipe, the validation accuracy of every trial over the search and epoch by epoch (the
pruned ones stop early), the importance, and the table of trials. It reads these files only:
no study database, no Optuna. A piece that is absent or damaged is a "missing" box in its
section; a folder without trials.csv (a search that has not finished) is one line.

>>> _value("0.044119874782081375"), _value("[24, 16]"), _value("adam"), _value("64")
('0.0441', '[24, 16]', 'adam', '64')
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from mnistlab import plots, rundir
from mnistlab.errors import MnistlabError, RunError
from mnistlab.fsio import atomic_write_text, read_text
from mnistlab.pages.html import (
    Html,
    definitions,
    figure,
    footer,
    href,
    join,
    missing,
    page,
    section,
    table,
    tag,
)
from mnistlab.recipe import Recipe
from mnistlab.rundir.listing import BEST, IMPORTANCE, TRIALS

SECTIONS = {
    "best": "Best trial",
    "history": "Validation accuracy over the search",
    "importance": "Parameter importance",
    "trials": "Trials",
}
FIXED = ("number", "state", "val_accuracy", "epochs", "seconds", "run")  # trials.csv's own columns
FEW_TRIALS = 20  # below this many complete trials the importance is a rough hint
_READ_ERRORS = (MnistlabError, OSError, ValueError, KeyError, TypeError)


@dataclass(frozen=True)
class Trial:
    """One row of trials.csv; ``value`` is None unless the trial completed."""

    number: int
    state: str
    value: float | None
    params: dict[str, str]
    epochs: int
    seconds: float | None
    run: str


def read_trials(folder: str | Path) -> tuple[list[str], list[Trial]]:
    """(searched field names, trials by number) from a search folder's trials.csv; RunError
    naming the file when it is absent or not what ``mnistlab search`` writes."""
    path = Path(folder) / TRIALS
    if not path.is_file():
        raise RunError(
            f"{Path(folder)}: no {TRIALS} yet: the search has not finished; run the same "
            "`mnistlab search` command again to finish it (finished trials are kept)"
        )
    text = read_text(path, "a trials file", rundir.LIMITS[rundir.METRICS], RunError)
    reader = csv.DictReader(io.StringIO(text))
    columns = list(reader.fieldnames or [])
    lacking = [c for c in FIXED if c not in columns]
    if lacking:
        raise RunError(f"{path}: expected the columns {', '.join(FIXED)}; missing {lacking[0]}")
    params = columns[columns.index("val_accuracy") + 1 : columns.index("epochs")]
    trials = []
    for line, row in enumerate(reader, 2):
        try:
            trials.append(
                Trial(
                    number=int(row["number"]),
                    state=row["state"],
                    value=float(row["val_accuracy"]) if row["val_accuracy"] else None,
                    params={k: row[k] for k in params},
                    epochs=int(row["epochs"] or 0),
                    seconds=float(row["seconds"]) if row["seconds"] else None,
                    run=row["run"] or "",
                )
            )
        except (TypeError, ValueError) as exc:
            raise RunError(f"{path}: line {line}: {exc}") from None
    return params, sorted(trials, key=lambda t: t.number)


def _best(trials: list[Trial]) -> Trial | None:
    """The best complete trial, as search chose it: highest validation accuracy, first on ties."""
    done = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def _value(text: str) -> str:
    """A drawn value for a table: floats in 3 significant digits, the rest as written."""
    try:
        number = float(text)
    except ValueError:
        return text
    if not math.isfinite(number) or text.lstrip("-").isdigit():
        return text
    return format(number, ".3g")


def _pct(v: float | None) -> str:
    return "\u2014" if v is None else f"{v:.2%}"


def _curves(root: Path, trials: list[Trial]) -> dict[int, tuple[str, list[float]]]:
    """Each trial's validation accuracy per epoch, from its run folder's history (trials whose
    history is gone are left out)."""
    out = {}
    for t in trials:
        try:
            rows = rundir.read_history(root / t.run / rundir.HISTORY) if t.run else []
        except _READ_ERRORS:
            continue
        accs = [r["val_accuracy"] for r in rows if r.get("val_accuracy") is not None]
        if accs:
            out[t.number] = (t.state, accs)
    return out


def _png(draw, *args) -> bytes:
    buf = io.BytesIO()
    draw(*args, buf)
    return buf.getvalue()


# ---- sections ---------------------------------------------------------------------------
def _best_section(root: Path, trials: list[Trial], page_dir: Path, run_reports: bool) -> Html:
    best = _best(trials)
    if best is None:
        return missing("the best trial", "no trial has completed yet")
    items = [
        ("trial", tag("b", str(best.number))),
        ("validation accuracy", tag("b", _pct(best.value))),
        ("epochs", str(best.epochs)),
        *((name, tag("code", _value(v))) for name, v in best.params.items()),
        ("run", _run_link(root, best, page_dir, run_reports)),
    ]
    parts = [definitions(items)]
    recipe = root / BEST
    try:
        text = read_text(recipe, "a recipe (TOML)", 2**20, RunError)
    except _READ_ERRORS as exc:
        parts.append(missing(BEST, str(exc)))
    else:
        parts += [
            tag(
                "p",
                "The best trial's recipe, its searched numbers rounded to 3 significant digits, "
                "is in ",
                tag("code", BEST),
                ". Train it: ",
                tag("code", f"mnistlab train --recipe {recipe}"),
            ),
            tag("details", tag("summary", f"{BEST} as written"), tag("pre", tag("code", text))),
        ]
    return join(parts)


def _run_link(root: Path, trial: Trial, page_dir: Path, write_missing: bool) -> Html:
    """A link to a trial's run report (written first when ``write_missing``), else its folder."""
    folder = root / trial.run
    if not trial.run or not folder.is_dir():
        return tag("span", "no run folder", class_="muted")
    report = folder / rundir.REPORT
    if write_missing and not report.is_file():
        from mnistlab.pages.run_page import write

        write(folder)
    if report.is_file():
        return tag("a", trial.run, href=href(report, page_dir))
    return tag("code", trial.run)


def _history_section(root: Path, trials: list[Trial]) -> Html:

    last = _curves(root, trials)
    values = [
        t.value if t.value is not None else last[t.number][1][-1] if t.number in last else None
        for t in trials
    ]
    figs = [
        figure(
            _png(
                plots.search_history, [t.number for t in trials], values, [t.state for t in trials]
            ),
            "validation accuracy of every trial by trial number, with the best so far",
            "Each trial's validation accuracy in the order the trials started; pruned trials at "
            "the last epoch they reached; the line is the best complete trial so far.",
            name="search-history",
        )
    ]
    if last:
        figs.append(
            figure(
                _png(plots.trial_curves, last),
                "validation accuracy per epoch of every trial",
                "Every trial epoch by epoch: grey ones were pruned (stopped when below the median "
                "of earlier trials at the same epoch), orange is the best.",
                name="trial-curves",
            )
        )
    else:
        figs.append(missing("the per-epoch curves", "no trial's run folder has a history"))
    rule = tag(
        "p",
        "Trials are scored and chosen on validation accuracy only; the test set was never "
        "looked at, so the best trial's test accuracy (on its run page) is an honest estimate.",
    )
    return join((rule, tag("div", join(figs), class_="grid")))


def _importance_section(root: Path) -> Html:

    path = root / IMPORTANCE
    try:
        doc = rundir.read_json(path, what="a parameter importance file")
    except _READ_ERRORS as exc:
        return missing(
            IMPORTANCE,
            f"{exc}; `mnistlab search` writes it when it ends: run the same search command "
            "again to write it (finished trials are kept)",
        )
    shares, n = doc.get("importances"), doc.get("complete_trials")
    if not isinstance(shares, dict) or not all(
        isinstance(v, (int, float)) for v in shares.values()
    ):
        return missing("the parameter importance", doc.get("problem") or f"{path} holds none")
    ranked = dict(sorted(shares.items(), key=lambda kv: -kv[1]))
    caveat = (
        f" From {n} complete trials only: read it as a rough hint."
        if isinstance(n, int) and n < FEW_TRIALS
        else ""
    )
    return join(
        (
            tag(
                "p",
                f"How much of the validation accuracy's variance over the {n} complete trials "
                "each searched field explains, by ",
                tag("code", doc.get("method", "fANOVA")),
                f" (seed {doc.get('seed', '?')}); the shares add up to 1. Pruned trials are not "
                "in it." + caveat,
            ),
            figure(
                _png(plots.param_importance, ranked),
                "importance of each searched field as horizontal bars",
                "Share of the variance each field explains.",
                name="importance",
                class_="narrow",
            ),
            table(
                ("field", "importance"),
                [(tag("code", k), f"{v:.3f}") for k, v in ranked.items()],
                numeric=(1,),
            ),
        )
    )


_STATE_CLASS = {"COMPLETE": "badge ok", "PRUNED": "badge", "FAIL": "badge bad"}


def _trials_section(root: Path, params: list[str], trials: list[Trial], page_dir: Path) -> Html:
    best = _best(trials)
    rows = []
    for t in trials:
        report = root / t.run / rundir.REPORT
        rows.append(
            (
                tag("b", str(t.number)) if t is best else str(t.number),
                tag("span", t.state.lower(), class_=_STATE_CLASS.get(t.state, "badge warn")),
                _pct(t.value),
                *(_value(t.params[p]) for p in params),
                str(t.epochs),
                "\u2014" if t.seconds is None else f"{t.seconds:.1f}",
                tag("a", t.run, href=href(report, page_dir)) if report.is_file() else t.run,
            )
        )
    header = ("trial", "state", "val accuracy", *params, "epochs", "seconds", "run")
    numeric = (0, 2, *range(3 + len(params), 5 + len(params)))
    return join(
        (
            table(header, rows, numeric=numeric),
            tag(
                "p",
                "seconds: from the trial's start to its end (its worker's wall time). A trial's "
                "own page: ",
                tag("code", f"mnistlab report {root}/trials/trial-NNNN"),
                ".",
                class_="muted",
            ),
        )
    )


def _head(root: Path, trials: list[Trial], dataset: str | None) -> Html:
    best = _best(trials)
    count = {s: sum(t.state == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    stats = [
        (_pct(best.value) if best else "\u2014", "best validation accuracy"),
        (str(best.number) if best else "\u2014", "best trial"),
        (str(len(trials)), "trials"),
        (f"{count['COMPLETE']} / {count['PRUNED']}", "complete / pruned"),
        (dataset or "\u2014", "dataset"),
    ]
    failed = f", {count['FAIL']} failed" if count["FAIL"] else ""
    return join(
        (
            tag("h1", "Search ", tag("code", root.resolve().name)),
            tag(
                "p",
                f"{len(trials)} trials: {count['COMPLETE']} complete, {count['PRUNED']} pruned"
                f"{failed}. Each trial trained one recipe drawn by Optuna; the best is chosen "
                "on validation accuracy.",
            ),
            tag(
                "div",
                join(tag("div", tag("b", v), tag("span", k), class_="stat") for v, k in stats),
                class_="headline",
            ),
            tag(
                "nav",
                tag("ul", join(tag("li", tag("a", t, href=f"#{k}")) for k, t in SECTIONS.items())),
                class_="toc",
                aria_label="sections",
            ),
        )
    )


def _dataset(root: Path) -> str | None:

    try:
        return Recipe.from_toml(root / BEST).dataset
    except _READ_ERRORS:
        return None


def render(folder: str | Path, *, run_reports: bool = False, page_dir: str | Path | None = None):
    """The search page as an HTML string (``run_reports``: write the best trial's run report
    first when it lacks one; ``page_dir``: where the page will be saved, which links are
    relative to, default ``folder``)."""
    root = rundir.run_folder(folder)
    page_dir = Path(page_dir) if page_dir is not None else root
    params, trials = read_trials(root)
    body = [
        section("best", SECTIONS["best"], _best_section(root, trials, page_dir, run_reports)),
        section("history", SECTIONS["history"], _history_section(root, trials)),
        section("importance", SECTIONS["importance"], _importance_section(root)),
        section("trials", SECTIONS["trials"], _trials_section(root, params, trials, page_dir)),
    ]
    head = _head(root, trials, _dataset(root))
    return page(f"mnistlab search {root.resolve().name}", head, body, footer(root / TRIALS))


def write(folder: str | Path, out: str | Path | None = None, *, run_reports: bool = False) -> Path:
    """Write the page of a search folder to ``out`` (default ``<folder>/report.html``)
    atomically; return its path."""
    dest = Path(out) if out is not None else Path(folder) / rundir.REPORT
    atomic_write_text(dest, render(folder, run_reports=run_reports, page_dir=dest.parent))
    return dest
