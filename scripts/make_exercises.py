"""Write notebooks/exercises.ipynb from the answer key's source, notebooks/mnist_tutorial.py.

The key (a jupytext percent script, paired with mnist_tutorial.ipynb) holds each exercise's
solution between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` lines, after the placeholder lines
(``model = ...``) the learner starts from; text that would give a solution away sits between
``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->`` in a markdown cell. The exercise
notebook is the key with those blocks cut out and the cells they leave empty dropped: the two
cannot drift, and a test checks that the committed exercises.ipynb is what this script writes
now.

    python scripts/make_exercises.py            # write notebooks/exercises.ipynb
    python scripts/make_exercises.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = ROOT / "notebooks" / "mnist_tutorial.py"
EXERCISES = ROOT / "notebooks" / "exercises.ipynb"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
# in a markdown cell the markers are HTML comments: the key's rendered text does not show them
MARKDOWN_MARKERS = ("<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->")
EXERCISE = "exercise"  # the cell metadata key naming an exercise cell: exercise="model"


def strip_solutions(source: str, where: str, markers: tuple[str, str] = (BEGIN, END)) -> str:
    """``source`` without its solution blocks (``markers`` included); a marker out of place is
    a ValueError naming ``where`` and the line."""
    begin, end = markers
    kept, inside = [], False
    for number, line in enumerate(source.splitlines(), 1):
        mark = line.strip()
        if mark in markers and (mark == begin) == inside:
            raise ValueError(f"{where}, line {number}: {mark} where it does not belong")
        if mark in markers:
            inside = mark == begin
        elif not inside:
            kept.append(line)
    if inside:
        raise ValueError(f"{where}: {begin} without its {end}")
    return "\n".join(kept).rstrip()


def exercise_notebook(key: Path = KEY) -> str:
    """The exercise notebook's JSON text, made from the key's percent script."""
    import jupytext
    import nbformat

    source = jupytext.read(key)
    out = nbformat.v4.new_notebook(metadata={"kernelspec": source.metadata["kernelspec"]})
    for index, cell in enumerate(source.cells):
        where = f"{key.name}, cell {index + 1}"
        if cell.cell_type == "markdown":
            text = strip_solutions(cell.source, where, MARKDOWN_MARKERS)
            out.cells.append(nbformat.v4.new_markdown_cell(text))
            continue
        code = strip_solutions(cell.source, where)
        if EXERCISE in cell.metadata and BEGIN not in cell.source:
            raise ValueError(f"{where}: an exercise cell without a solution")
        if code.strip():
            metadata = {k: v for k, v in cell.metadata.items() if k == EXERCISE}
            out.cells.append(nbformat.v4.new_code_cell(code, metadata=metadata))
    for index, cell in enumerate(out.cells):
        cell["id"] = f"cell-{index:02d}"  # stable ids: the file is compared as text
    nbformat.validate(out)
    return nbformat.writes(out) + "\n"


def main(argv: list[str]) -> int:
    text = exercise_notebook()
    if argv == ["--check"]:
        current = EXERCISES.read_text(encoding="utf-8") if EXERCISES.exists() else ""
        if current != text:
            print(f"{EXERCISES} is out of date: run python scripts/make_exercises.py")
            return 1
        return 0
    if argv:
        print("usage: python scripts/make_exercises.py [--check]")
        return 2
    EXERCISES.write_text(text, encoding="utf-8")
    print(f"wrote {EXERCISES.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
