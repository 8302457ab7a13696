"""Reading a self-contained HTML page in tests: its ids, figures, links and "missing" boxes."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

VOID = {"meta", "img", "br", "hr", "link", "input", "source"}
RUN_FIGURES = {
    "loss",
    "accuracy",
    "learning-rate",
    "confusion",
    "per-class",
    "gallery",
    "pair",
    "reliability",
}


class Page(HTMLParser):
    """A strict parse: every element closed in order, ids unique; collects what tests look at."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None]] = []  # (tag, id of the enclosing section)
        self.ids: list[str] = []
        self.figures: dict[str, int] = {}
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.text_by_section: dict[str, list[str]] = {}
        self.missing_in: set[str] = set()
        self.tags: set[str] = set()
        self.section: str | None = None
        self.feed(text)
        self.close()
        assert not self.stack, f"unclosed elements: {self.stack}"
        assert text.startswith("<!DOCTYPE html>")

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids.append(a["id"])
        if tag == "section":
            self.section = a["id"]
        if "data-figure" in a:
            self.figures[a["data-figure"]] = self.figures.get(a["data-figure"], 0) + 1
        if "missing" in a.get("class", "").split() and self.section:
            self.missing_in.add(self.section)
        if tag == "img":
            self.images.append(a)
        if tag == "a":
            self.links.append(a.get("href", ""))
        if tag not in VOID:
            self.stack.append((tag, self.section))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        assert tag not in VOID, f"end tag for void element {tag}"
        assert self.stack and self.stack[-1][0] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag == "section":
            self.section = None

    def handle_data(self, data):
        if self.section:
            self.text_by_section.setdefault(self.section, []).append(data)

    def text(self, section: str) -> str:
        return " ".join(" ".join(self.text_by_section.get(section, [])).split())


def check_self_contained(page: Page) -> None:
    """Every image is an embedded PNG, no link or image reaches the network."""
    assert page.images
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,"), img["src"][:60]
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
        assert img.get("alt")
    assert not any(h.startswith(("http:", "https:", "//")) for h in page.links)
    assert "script" not in page.tags and "link" not in page.tags
