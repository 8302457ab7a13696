"""Self-contained HTML pages, one per kind of folder: a run, a compare.

``write(folder)`` picks the page that fits the folder and writes it atomically.
"""

from __future__ import annotations

from pathlib import Path


def write(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the page of ``folder`` (a run folder or a compare folder) to ``out`` (default
    ``<folder>/report.html``); return the page's path."""
    from mnistlab.pages import compare_page, run_page

    if (Path(folder) / compare_page.LEADERBOARD).is_file():
        return compare_page.write_compare(folder, out, run_reports=True)  # every run link works
    return run_page.write(folder, out)
