"""Write docs/recipe-fields.md from the recipe's own field declarations (section, default,
accepted values, help, when it applies), so the page can never disagree with the code.

    python scripts/make_docs.py            # rewrite the page
    python scripts/make_docs.py --check    # exit 1 if the page is out of date (a test runs this)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnistlab.fsio import atomic_write_text
from mnistlab.recipe import SECTIONS, SPECS, Recipe, default_text
from mnistlab.recipe.applies import WHEN

PAGE = Path(__file__).resolve().parents[1] / "docs" / "recipe-fields.md"
HEAD = """# Recipe fields

Every field of a recipe, by the section it has in a `recipe.toml`. Each one is also a flag of
`mnistlab train`, `compare` and `search` (`--batch-size 64`; true/false fields are switches:
`--batch-norm`, `--no-shuffle`), and `mnistlab.Recipe(batch_size=64)` in Python. A value outside
its range is refused when the recipe is built, in one line naming the field and what it accepts.
The defaults are the notebook's final recipe. "Read when" says when training uses a field; the
run report hides a field it does not read.

This page is written by `scripts/make_docs.py` from the declarations in
`src/mnistlab/recipe/__init__.py`; do not edit it by hand.
"""


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render() -> str:
    out = [HEAD]
    groups = {"run": ["name"], **{s: list(names) for s, names in SECTIONS.items()}}
    for section, names in groups.items():
        out.append(f"\n## [{section}]\n" if section != "run" else "\n## (top level)\n")
        out.append("| field | default | accepts | read when | what it does |")
        out.append("|---|---|---|---|---|")
        for name in names:
            spec = SPECS[name]
            when = WHEN[name].words if name in WHEN else "always"
            alias = f" (alias `{spec.alias}`)" if spec.alias else ""
            help_text = spec.help.split(" — ")[0]
            out.append(
                f"| `{name}`{alias} | {_cell(default_text(name, spec).split(': ', 1)[1])} | "
                f"{_cell(spec.constraint.describe())} | {_cell(when)} | {_cell(help_text)} |"
            )
    assert all(name in SPECS for names in groups.values() for name in names)
    assert {n for names in groups.values() for n in names} == set(SPECS), "a field is missing"
    assert Recipe() == Recipe()  # the defaults build
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else ""
        if current != text:
            print(f"{PAGE} is out of date: run python scripts/make_docs.py", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(PAGE, text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
