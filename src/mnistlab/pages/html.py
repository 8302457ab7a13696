"""A tiny escaping HTML builder for the self-contained report pages.

Every string is escaped unless it is already :class:`Html` (markup this module built), so data
from a run folder (a recipe name, a dataset note, a path) can never inject markup. The page shell
carries its own CSS (responsive, print-friendly, no external fonts or scripts), so a page opens
offline, on a phone, or on paper.

>>> str(tag("p", "1 < 2", class_="note"))
'<p class="note">1 &lt; 2</p>'
>>> str(tag("p", Html("<b>bold</b>")))
'<p><b>bold</b></p>'
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mnistlab._version import __version__

_VOID = {"img", "meta", "br", "hr", "link"}


class Html(str):
    """Markup that is safe to insert as is."""


def esc(value: Any) -> Html:
    """``value`` as HTML text: Html passes through, anything else is escaped."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    return Html(sep.join(esc(p) for p in parts))


def tag(name: str, /, *children: Any, **attrs: Any) -> Html:
    """``<name attrs>children</name>``; ``class_`` -> class, ``data_x`` -> data-x; an attribute
    that is None or False is left out, True writes the bare name."""
    parts = [name]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        key = key.rstrip("_").replace("_", "-")
        parts.append(key if value is True else f'{key}="{esc(value)}"')
    open_ = "<" + " ".join(parts) + ">"
    if name in _VOID:
        return Html(open_)
    return Html(open_ + join(c for c in children if c is not None) + f"</{name}>")


def href(target: str | os.PathLike[str], page_dir: str | os.PathLike[str]) -> str:
    """A link from a page saved in ``page_dir`` to ``target``: relative, so a folder and its
    pages can move or be zipped as a whole; each part URL-quoted.

    >>> href("/r/search/trials/trial-0001/report.html", "/r/search")
    'trials/trial-0001/report.html'
    """
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(page_dir))
    return "/".join(quote(part) for part in Path(rel).parts)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(
    png: bytes, alt: str, caption: Any = None, *, name: str, class_: str | None = None
) -> Html:
    """An embedded PNG with its caption; ``name`` tags it (``data-figure``) for tests and links."""
    return tag(
        "figure",
        tag("img", src=data_uri(png), alt=alt),
        tag("figcaption", caption) if caption is not None else None,
        data_figure=name,
        class_=class_,
    )


def table(
    header: Iterable[Any],
    rows: Iterable[Iterable[Any]],
    *,
    numeric: Iterable[int] = (),
    class_: str | None = None,
) -> Html:
    """A table in a horizontally scrolling box (wide tables never widen a phone's page);
    ``numeric``: indices of right-aligned columns."""
    num = set(numeric)

    def cells(row, kind):
        return join(tag(kind, c, class_="num" if i in num else None) for i, c in enumerate(row))

    head = tag("thead", tag("tr", cells(header, "th")))
    body = tag("tbody", join(tag("tr", cells(r, "td")) for r in rows))
    return tag("div", tag("table", head, body, class_=class_), class_="scroll")


def definitions(items: Iterable[tuple[Any, Any]]) -> Html:
    """A two-column key/value list."""
    return tag("dl", join(join((tag("dt", k), tag("dd", v))) for k, v in items), class_="kv")


def missing(what: str, why: Any) -> Html:
    """The box a section shows instead of its content when a piece of the run is absent."""
    return tag(
        "div",
        tag("strong", "Missing: "),
        what,
        tag("br"),
        tag("span", why, class_="why"),
        class_="missing",
        role="note",
    )


def section(id_: str, title: str, *body: Any) -> Html:
    return tag("section", tag("h2", title), *body, id=id_)


CSS = """
:root { --ink: #1f2328; --muted: #57606a; --line: #d0d7de; --bg: #ffffff; --soft: #f6f8fa;
        --good: #1a7f37; --bad: #cf222e; --warn: #9a6700; --accent: #0969da; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: var(--bg); line-height: 1.5;
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
             sans-serif; }
main { max-width: 68rem; margin: 0 auto; padding: 1rem; overflow-wrap: break-word; }
header.page { border-bottom: 1px solid var(--line); margin-bottom: 1rem; }
h1 { font-size: 1.6rem; margin: .3rem 0; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; padding-bottom: .2rem;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
p, li { max-width: 48rem; }
a { color: var(--accent); }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em;
       overflow-wrap: anywhere; }
.muted, figcaption, .why { color: var(--muted); }
nav.toc ul { display: flex; flex-wrap: wrap; gap: .3rem .9rem; padding: 0; margin: .5rem 0;
             list-style: none; }
.headline { display: grid; grid-template-columns: repeat(auto-fit, minmax(9.5rem, 1fr)); gap: .6rem;
            margin: .8rem 0; }
.stat { background: var(--soft); border: 1px solid var(--line); border-radius: 6px;
        padding: .5rem .7rem; }
.stat b { display: block; font-size: 1.3rem; }
.stat span { color: var(--muted); font-size: .85rem; }
.badge { display: inline-block; border-radius: 1rem; padding: 0 .6rem; font-weight: 600;
         font-size: .9rem; background: var(--soft); border: 1px solid var(--line);
         white-space: nowrap; }
.ok { color: var(--good); } .bad { color: var(--bad); } .warn { color: var(--warn); }
.badge.ok { background: #dafbe1; } .badge.bad { background: #ffebe9; }
.badge.warn { background: #fff8c5; }
.missing { border-left: 4px solid var(--warn); background: #fff8c5; padding: .6rem .8rem;
           margin: .6rem 0; overflow-wrap: anywhere; }
.warning { border-left: 4px solid var(--bad); background: #ffebe9; padding: .6rem .8rem;
           margin: .6rem 0; }
.healthy { border-left: 4px solid var(--good); background: #dafbe1; padding: .6rem .8rem;
           margin: .6rem 0; }
.diagnosis { border: 2px solid var(--bad); border-left-width: 6px; border-radius: 6px;
             background: #ffebe9; padding: .6rem 1rem; margin: .8rem 0; }
.diagnosis .title { font-size: 1.15rem; color: var(--bad); margin: 0 0 .3rem; }
.diagnosis ul { margin: .2rem 0; padding-left: 1.2rem; }
.diagnosis p { margin: .3rem 0; max-width: none; }
.diagnosis .fix { background: var(--bg); border: 1px solid var(--line); border-radius: 4px;
                  padding: .3rem .6rem; }
.lesson { border-left: 4px solid var(--accent); background: var(--soft); padding: .6rem .8rem;
          margin: .8rem 0; }
details { margin: .8rem 0; }
details > summary { cursor: pointer; color: var(--accent); }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 4px;
      padding: .6rem .8rem; overflow-x: auto; font-size: .85rem; }
figure { margin: .8rem 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line);
             border-radius: 4px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(19rem, 1fr)); gap: .8rem; }
.grid figure { margin: 0; }
.grid.tables { grid-template-columns: repeat(auto-fit, minmax(15rem, 1fr));
               align-items: start; }
.grid.tables .scroll { margin: 0; }
figure.narrow img { max-width: min(100%, 44rem); }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: .6rem 0; }
table { border-collapse: collapse; font-size: .92rem; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .6rem; text-align: left;
         vertical-align: top; }
th { background: var(--soft); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
dl.kv { display: grid; grid-template-columns: minmax(7rem, max-content) 1fr; gap: .2rem 1rem;
         margin: .5rem 0; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.digits { display: flex; flex-wrap: wrap; gap: .5rem; margin: .5rem 0; padding: 0;
          list-style: none; }
.digits li { width: 5.2rem; text-align: center; font-size: .78rem; line-height: 1.25; }
.digits img { width: 56px; height: 56px; image-rendering: pixelated; border: 1px solid var(--line);
              display: block; margin: 0 auto .15rem; }
.pair { display: grid; grid-template-columns: minmax(8rem, 12rem) 1fr; gap: .3rem 1rem;
        align-items: center; border-bottom: 1px solid var(--line); padding: .4rem 0; }
.pair .digits { margin: 0; }
.pair .digits li { width: auto; }
footer { color: var(--muted); font-size: .85rem; border-top: 1px solid var(--line);
         margin-top: 2rem; padding-top: .6rem; }
@media (max-width: 40rem) {
  main { padding: .6rem; }
  h1 { font-size: 1.3rem; }
  .pair { grid-template-columns: 1fr; }
  dl.kv { grid-template-columns: 1fr; } dl.kv dd { margin-bottom: .3rem; }
}
@media print {
  @page { margin: 14mm; }
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav.toc { display: none; }
  a { color: inherit; text-decoration: none; }
  section { break-inside: auto; }
  h2, h3 { break-after: avoid; }
  figure, tr, .pair, .digits li, .missing, .warning, .healthy, .stat, .diagnosis, .lesson {
    break-inside: avoid; }
  details::details-content { content-visibility: visible; display: block; }
  details > summary { color: inherit; }
  pre { white-space: pre-wrap; }
  .scroll { overflow: visible; }
  figure img { max-height: 23cm; width: auto; }
}
"""


def page(title: str, header: Any, body: Iterable[Any], footer: Any = None) -> str:
    """A complete HTML5 document: inline CSS, viewport meta, nothing fetched from anywhere."""
    head = join(
        (
            tag("meta", charset="utf-8"),
            tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
            tag("meta", name="generator", content="mnistlab"),
            tag("title", title),
            tag("style", Html(CSS)),
        )
    )
    main = tag(
        "main",
        tag("header", header, class_="page"),
        join(body),
        tag("footer", footer) if footer is not None else None,
    )
    return "<!DOCTYPE html>\n" + tag("html", tag("head", head), tag("body", main), lang="en") + "\n"


def footer(source: Any) -> Html:
    """The line every page ends with: who wrote it, when, and from which file or folder."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    return tag(
        "p",
        f"Written by mnistlab {__version__} at {now} from ",
        tag("code", str(source)),
        ". Self-contained: figures are embedded, nothing is fetched.",
    )
