"""Pictures of two checks of the exercise notebook, as a learner sees them in Jupyter.

The exercise notebook is executed on the bundled sample in a fresh kernel (nbclient), every
exercise filled with its solution from the answer key except one: the standardization cell takes
its mean and std from the test set, the most common wrong answer. Then the two cells and what
their checks printed are drawn the way Jupyter shows them and photographed in Debian's Chromium:

- ``standardization.png``: "not yet", what leaks and the hint;
- ``beat-this.png``: the paired test of the learner's runs against the baseline, seed by seed.

    python scripts/make_check_pictures.py                 # rewrite docs/img/checks/*.png
    python scripts/make_check_pictures.py --out /tmp/img  # somewhere else

Same data, seeds and machine: the same words and figures (the notebook's numbers are seeded).
"""

from __future__ import annotations

import argparse
import html
import os
import re
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "checks"
KEY = ROOT / "notebooks" / "mnist_tutorial.ipynb"
MARKER = re.compile(r"^[ \t]*# (BEGIN|END) SOLUTION\n?", re.M)
PLACEHOLDER = re.compile(r"^[^#\n]*= \.\.\.(  #.*)?\n?", re.M)  # `x = ...  # what goes here`

# The learner's wrong answer: the test set's statistics (the check explains why that leaks).
LEAKY = (
    "mean, std = x_test.mean(), x_test.std()  # the test set's\n"
    "x_train_std = (x_train - mean) / std\n"
    "x_test_std = (x_test - mean) / std"
)
PICTURES = {  # exercise cell -> (its check's name, picture)
    "standardize": ("standardization", "standardization.png"),
    "beat": ("beat this", "beat-this.png"),
}

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; padding: 16px; width: 940px;
       background: #fff; color: #212121; }
.cell { display: grid; grid-template-columns: 70px 1fr; margin: 0 0 6px 0; }
.prompt { color: #303f9f; font: 13px/1.45 monospace; text-align: right; padding: 6px 8px 0 0; }
.out .prompt { color: #d84315; }
pre { margin: 0; padding: 6px 8px; font: 13px/1.45 monospace; white-space: pre-wrap; }
.in pre { background: #f5f5f5; border: 1px solid #e0e0e0; border-radius: 2px; }
.cap { font-weight: 600; margin: 0 0 10px 0; }
"""


def solved(source: str) -> str:
    """An exercise cell of the key as a learner who solved it would have written it."""
    if not MARKER.search(source):
        raise SystemExit(f"no solution block in the key's exercise cell:\n{source}")
    return PLACEHOLDER.sub("", MARKER.sub("", source)).strip("\n")


def execute(work: Path):
    """The key, filled as described above, executed on the sample in a fresh kernel."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(KEY, as_version=4)
    for cell in nb.cells:
        cell.outputs = [] if cell.cell_type == "code" else cell.get("outputs")
        name = cell.metadata.get("exercise")
        if name:
            cell.source = LEAKY if name == "standardize" else solved(cell.source)
    env = {"MNISTLAB_TUTORIAL_OUT": str(work / "tutorial-out"), "MNISTLAB_OFFLINE": "1"}
    for key in ("MNISTLAB_TUTORIAL_FULL", "MNISTLAB_DATA_DIR"):
        os.environ.pop(key, None)
    os.environ.update(env, MPLBACKEND="module://matplotlib_inline.backend_inline")
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(work)}}).execute()
    return nb


def page(cells, caption: str) -> str:
    """Two notebook cells (an exercise, its check) with their outputs, drawn as Jupyter does."""
    parts = [f"<p class=cap>{html.escape(caption)}</p>"]
    for cell in cells:
        n = cell.get("execution_count") or " "
        parts.append(
            f"<div class='cell in'><div class=prompt>[{n}]:</div>"
            f"<pre>{html.escape(cell.source)}</pre></div>"
        )
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        if text:
            shown = html.escape(text)
            parts.append(f"<div class='cell out'><div class=prompt></div><pre>{shown}</pre></div>")
    return f"<!doctype html><meta charset=utf-8><style>{STYLE}</style><body>{''.join(parts)}"


def make(out: Path) -> list[Path]:
    from make_screenshots import ARGS, CHROMIUM  # the same browser as README's pictures
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    made = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        nb = execute(work)
        index = {c.metadata.get("exercise"): i for i, c in enumerate(nb.cells)}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            view = browser.new_page(viewport={"width": 972, "height": 400}, device_scale_factor=1)
            for name, (check, picture) in PICTURES.items():
                i = index[name]
                caption = f"notebooks/exercises.ipynb on the bundled sample: the {check} check"
                source = work / f"{name}.html"
                source.write_text(page(nb.cells[i : i + 2], caption), encoding="utf-8")
                view.goto(source.as_uri())
                view.locator("body").screenshot(path=str(out / picture))
                made.append(out / picture)
            browser.close()
    return made


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT, help="folder for the PNG files")
    args = p.parse_args(argv)
    for path in make(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
