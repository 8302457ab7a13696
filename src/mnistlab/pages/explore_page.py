"""The explore page: an explore folder (``mnistlab explore``) as one self-contained HTML page.

An explore folder holds ``summary.json`` (class counts and shares, pixel statistics, per-pixel
numbers, what they mean for training) and the PNG figures it names. The page shows the lesson
first, then the class balance, the pixel values, the per-pixel and per-class means and the
samples, each figure with its numbers as a table. A figure or a part of the summary that is
absent or damaged is a "missing" box in its section.

>>> _figure_name({"figures": {"samples": "../x.png"}}, "samples")
'samples.png'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistlab import rundir
from mnistlab.errors import MnistlabError, RunError
from mnistlab.exploration import FIGURES, PIXEL_ROWS
from mnistlab.fsio import atomic_write_text, read_bytes
from mnistlab.pages.html import (
    Html,
    definitions,
    figure,
    footer,
    join,
    missing,
    page,
    section,
    table,
    tag,
)
from mnistlab.rundir.listing import SUMMARY

SECTIONS = {
    "classes": "Class balance",
    "pixels": "Pixel values",
    "means": "Per-pixel and per-class means",
    "samples": "Samples",
}
PNG_LIMIT = 32 * 2**20
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_BROKEN = (MnistlabError, OSError, ValueError, KeyError, TypeError, IndexError)


def _figure_name(summary: dict[str, Any], key: str) -> str:
    """The file of figure ``key``: the one summary.json names when it is a plain file name in
    the folder, else the name ``mnistlab explore`` gives it."""
    named = (
        summary.get("figures", {}).get(key) if isinstance(summary.get("figures"), dict) else None
    )
    if isinstance(named, str) and named.endswith(".png") and Path(named).name == named:
        return named
    return FIGURES[key]


def _embedded(root: Path, summary: dict[str, Any], key: str, alt: str, caption: Any) -> Html:
    name = _figure_name(summary, key)
    try:
        png = read_bytes(root / name, "a PNG figure", PNG_LIMIT, RunError)
        if not png.startswith(PNG_MAGIC):
            raise RunError(f"{root / name}: not a PNG image")
    except FileNotFoundError:
        return missing(name, "the file is missing; `mnistlab explore --out` writes it again")
    except (MnistlabError, OSError) as exc:
        return missing(name, str(exc))
    return figure(png, alt, caption, name=key.replace("_", "-"))


def _broken(what: str, exc: Exception) -> Html:
    return missing(f"{SUMMARY}'s {what}", f"not as `mnistlab explore` writes it ({exc!r})")


# ---- sections ---------------------------------------------------------------------------
def _classes_section(root: Path, s: dict[str, Any]) -> Html:
    fig = _embedded(
        root,
        s,
        "class_balance",
        "bars of each class's share of the training and test images",
        "Share of each class in the training and test images (counts on the bars); the dashed "
        "line is a perfectly balanced set.",
    )
    try:
        tr, te, names = s["classes"]["train"], s["classes"]["test"], s["class_names"]
        rows = [
            (
                name,
                f"{tr['counts'][i]:,}",
                f"{tr['shares'][i]:.2%}",
                f"{te['counts'][i]:,}",
                f"{te['shares'][i]:.2%}",
            )
            for i, name in enumerate(names)
        ]
        rows.append((tag("b", "total"), f"{tr['n']:,}", "100%", f"{te['n']:,}", "100%"))
        ratio = [
            f"{split} {'n/a (an empty class)' if r is None else format(r, '.3f')}"
            for split, r in (("train", tr["imbalance_ratio"]), ("test", te["imbalance_ratio"]))
        ]
        numbers = join(
            (
                table(("class", "train", "train %", "test", "test %"), rows, numeric=range(1, 5)),
                tag("p", "Imbalance ratio (largest class / smallest): ", "; ".join(ratio), "."),
            )
        )
    except _BROKEN as exc:
        numbers = _broken("class counts", exc)
    return join((fig, numbers))


def _pixels_section(root: Path, s: dict[str, Any]) -> Html:
    fig = _embedded(
        root,
        s,
        "pixel_histogram",
        "histogram of pixel intensities in the training and test images",
        "How often each intensity 0-255 occurs over all pixels (log scale).",
    )
    try:
        tr, te = s["pixels"]["train"], s["pixels"]["test"]
        rows = [(label, f.format(tr[k]), f.format(te[k])) for label, f, k in PIXEL_ROWS]
        numbers = table(("statistic", "train", "test"), rows, numeric=(1, 2))
    except _BROKEN as exc:
        numbers = _broken("pixel statistics", exc)
    return join((fig, numbers))


def _means_section(root: Path, s: dict[str, Any]) -> Html:
    try:
        pp, shape = s["per_pixel"], s["image_shape"]
        line = tag(
            "p",
            f"{pp['always_zero_pixels']:,} of {shape[0] * shape[1]:,} pixel positions are 0 in "
            "every training image: inputs that carry no information.",
        )
    except _BROKEN as exc:
        line = _broken("per-pixel numbers", exc)
    return join(
        (
            _embedded(
                root,
                s,
                "pixel_mean_std",
                "per-pixel mean and standard deviation over the training images",
                "Mean and standard deviation of each pixel position over the training images.",
            ),
            line,
            _embedded(
                root,
                s,
                "class_means",
                "the mean training image of each class",
                "The average training image of every class.",
            ),
        )
    )


def _samples_section(root: Path, s: dict[str, Any]) -> Html:
    return _embedded(
        root,
        s,
        "samples",
        "random training images of every class",
        f"Random training images of every class (seed {s.get('seed', '?')}).",
    )


def _head(root: Path, s: dict[str, Any]) -> Html:
    name = s.get("dataset") if isinstance(s.get("dataset"), str) else root.resolve().name
    classes = s.get("classes") if isinstance(s.get("classes"), dict) else {}

    def n(split):
        v = classes.get(split, {}).get("n") if isinstance(classes.get(split), dict) else None
        return f"{v:,}" if isinstance(v, int) else "\u2014"

    shape = s.get("image_shape")
    names = s.get("class_names") if isinstance(s.get("class_names"), list) else []
    stats = [
        (n("train"), "training images"),
        (n("test"), "test images"),
        ("\u00d7".join(map(str, shape)) if isinstance(shape, list) else "\u2014", "image size"),
        (str(len(names)) if names else "\u2014", "classes"),
    ]
    items = [("source", s.get("source") or "\u2014")]
    if s.get("note"):
        items.append(("note", s["note"]))
    advice = s.get("advice")
    return join(
        (
            tag("h1", "Explore ", tag("code", name)),
            definitions(items),
            tag(
                "div",
                join(tag("div", tag("b", v), tag("span", k), class_="stat") for v, k in stats),
                class_="headline",
            ),
            tag("div", tag("b", "What this means for training. "), advice, class_="lesson")
            if isinstance(advice, str)
            else None,
            tag(
                "nav",
                tag("ul", join(tag("li", tag("a", t, href=f"#{k}")) for k, t in SECTIONS.items())),
                class_="toc",
                aria_label="sections",
            ),
        )
    )


def render(folder: str | Path) -> str:
    """The explore page of ``folder`` as an HTML string; RunError when its summary.json cannot
    be read."""
    root = rundir.run_folder(folder)
    s = rundir.read_json(root / SUMMARY, what="an explore summary")
    body = [
        section("classes", SECTIONS["classes"], _classes_section(root, s)),
        section("pixels", SECTIONS["pixels"], _pixels_section(root, s)),
        section("means", SECTIONS["means"], _means_section(root, s)),
        section("samples", SECTIONS["samples"], _samples_section(root, s)),
    ]
    title = s.get("dataset") if isinstance(s.get("dataset"), str) else root.resolve().name
    return page(f"mnistlab explore {title}", _head(root, s), body, footer(root / SUMMARY))


def write(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the page of an explore folder to ``out`` (default ``<folder>/report.html``)
    atomically; return its path."""
    dest = Path(out) if out is not None else Path(folder) / rundir.REPORT
    atomic_write_text(dest, render(folder))
    return dest
