"""Self-contained HTML pages, one per kind of folder mnistlab writes: a run, a compare (of
variants, or of trained models), a search, an explore.

``write(folder)`` tells what made the folder as ``mnistlab runs`` does
(``rundir.listing.kind_of``) and writes the page that fits it atomically; any other path (a
file, a folder mnistlab did not write, a missing one) is one RunError line saying what a page
needs.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from mnistlab.errors import RunError
from mnistlab.pages import compare_page, comparison_page, explore_page, run_page, search_page
from mnistlab.rundir.listing import COMPARISON, LEADERBOARD, RECIPE, SUMMARY, TRIALS, kind_of

WHAT = "a run, compare, search or explore folder"


def kind(folder: str | Path) -> str:
    """ "run", "compare", "search" or "explore": the kind of page ``folder`` gets; RunError
    (one line) for anything else."""
    path = Path(folder)
    if not path.exists():
        raise RunError(f"{path}: no such folder{_did_you_mean(path)}; expected {WHAT}")
    if not path.is_dir():
        raise RunError(f"{path}: is a file; `mnistlab report` takes {WHAT}")
    found = kind_of(path)
    if found is not None:
        return found
    inside = [p.name for p in sorted(path.iterdir()) if p.is_dir() and kind_of(p) is not None]
    if inside:
        raise RunError(
            f"{path}: holds {len(inside)} mnistlab folder{'s' * (len(inside) != 1)} (e.g. "
            f"{inside[0]}), not one: give one of them; `mnistlab runs {path}` lists them"
        )
    raise RunError(
        f"{path}: not a folder mnistlab wrote; expected {WHAT} (holding {RECIPE}, "
        f"{LEADERBOARD}, {TRIALS} or {SUMMARY})"
    )


def _did_you_mean(path: Path) -> str:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return ""
    names = [p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
    close = difflib.get_close_matches(path.name, names, n=1)
    return f" (did you mean {parent / close[0]}?)" if close else ""


def write(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the page of ``folder`` (see ``kind``) to ``out`` (default
    ``<folder>/report.html``); return the page's path. A compare or search page first writes
    the run pages it links to that are missing."""
    return PAGES[kind(folder)](Path(folder), out)


def _run(folder: Path, out) -> Path:

    return run_page.write(folder, out)


def _compare(folder: Path, out) -> Path:
    """A variants compare's page (leaderboard.json), or a comparison of trained models'."""

    if not (folder / LEADERBOARD).is_file() and (folder / COMPARISON).is_file():
        return comparison_page.write(folder, out)
    if not (folder / LEADERBOARD).is_file():
        raise RunError(
            f"{folder}: a compare that has not finished (no {LEADERBOARD} yet); run the same "
            "`mnistlab compare` command again to finish it"
        )
    return compare_page.write_compare(folder, out, run_reports=True)


def _search(folder: Path, out) -> Path:

    return search_page.write(folder, out, run_reports=True)


def _explore(folder: Path, out) -> Path:

    return explore_page.write(folder, out)


PAGES = {"run": _run, "compare": _compare, "search": _search, "explore": _explore}  # = KINDS
