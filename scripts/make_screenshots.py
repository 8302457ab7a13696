"""The README's "first five minutes" pictures, made from real runs: the explore page, the run
that fails on raw pixels (its report opens on the diagnosis), the run that works (its report),
and the draw page with a 7 drawn on it.

Everything runs as a learner would run it: the CLI on the bundled sample (offline, seeded), each
page opened in Debian's Chromium through Playwright, the draw page against a real
`mnistlab serve`. Same commands, same data, same machine: the same pictures up to the dates and
paths they print; tests/test_readme.py checks that the committed ones still match what this
makes (size and layout, not every pixel).

    python scripts/make_screenshots.py                 # rewrite docs/img/*.png
    python scripts/make_screenshots.py --out /tmp/img  # somewhere else
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
VIEW = {"width": 1000, "height": 760}  # every picture: the top of its page at this size
SEVEN = [[(0.25, 0.2), (0.5, 0.2), (0.74, 0.2)], [(0.74, 0.2), (0.6, 0.5), (0.45, 0.85)]]
PICTURES = ("explore.png", "raw-pixels-run.png", "run.png", "draw.png")


def mnistlab(*args: str, cwd: Path) -> str:
    """Run one `mnistlab` command as the README shows it; its stdout."""
    p = subprocess.run(
        [sys.executable, "-m", "mnistlab", *args], cwd=cwd, capture_output=True, text=True
    )
    if p.returncode not in (0, 1):  # 1: a run that failed its health check, as intended
        raise SystemExit(f"mnistlab {' '.join(args)} failed:\n{p.stderr}")
    return p.stdout


def shoot(page, url: str, dest: Path) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(dest), clip={"x": 0, "y": 0, **VIEW})


def draw(page, strokes) -> None:
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        pts = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*pts[0])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            for k in range(1, 9):
                page.mouse.move(x0 + (x1 - x0) * k / 8, y0 + (y1 - y0) * k / 8)
        page.mouse.up()


def make(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from mnistlab.web.server import serving

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        os.environ.update(MNISTLAB_HOME=str(work / "home"), MNISTLAB_OFFLINE="1")
        mnistlab("explore", "--out", "explore", cwd=work)
        mnistlab("report", "explore", cwd=work)
        mnistlab("train", "--normalize", "none", cwd=work)
        (raw,) = (work / "runs").glob("*-normalize-none")
        run = work / mnistlab("train", "--quiet", cwd=work).strip()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport=VIEW, device_scale_factor=1)
            shoot(page, (work / "explore" / "report.html").as_uri(), out / PICTURES[0])
            shoot(page, (raw / "report.html").as_uri(), out / PICTURES[1])
            shoot(page, (run / "report.html").as_uri(), out / PICTURES[2])
            with serving(run) as server:
                page.goto(server.url)
                page.wait_for_function("document.getElementById('model').textContent !== ''")
                draw(page, SEVEN)
                page.wait_for_function(
                    "document.body.dataset.busy === '0' && "
                    "document.getElementById('label').dataset.label !== ''",
                    timeout=20000,
                )
                page.wait_for_timeout(500)  # the look inside draws after the answer
                page.screenshot(path=str(out / PICTURES[3]), clip={"x": 0, "y": 0, **VIEW})
            browser.close()
    return [out / name for name in PICTURES]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT, help="folder for the PNG files")
    args = p.parse_args(argv)
    for path in make(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
