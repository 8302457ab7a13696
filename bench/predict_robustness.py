"""Does `mnistlab predict` read digits the way people hand them over? Accuracy per condition.

MNIST TEST digits (never training ones) are rendered at high resolution from their 28x28 and
then put under one condition each (tight crop, low resolution, thick marker, thin pen, lined
and squared paper, shadow, chalkboard, a small digit on a large page, colour ink, JPEG, a
drawing app's transparent PNG), plus digits drawn stroke by stroke as a canvas would (the
digit's skeleton traced as polylines with a round brush). Every image is encoded to a file's
bytes (PNG, or JPEG) and goes through mnistlab's whole reading path. The accuracy per condition
is printed next to the accuracy of the same digits' original 28x28; the goal is every condition
within 2 points of it.

    python bench/predict_robustness.py                    # train the notebook recipe, 500 digits
    python bench/predict_robustness.py runs/<run> --n 1000
    python bench/predict_robustness.py --preset fast-cnn --conditions canvas,thin-pen

Deterministic: the digits and every condition's randomness come from --seed.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _machine  # noqa: E402  (bench/_machine.py)

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "mnist"
GOAL_POINTS = 2.0
PAPER, INK = (238, 236, 230), (25, 25, 35)


# ---- rendering helpers ------------------------------------------------------------------
def coverage(digit: np.ndarray, side: int) -> np.ndarray:
    """The 28x28 digit upscaled smoothly to side x side: ink coverage 0..1 (float32)."""
    big = Image.fromarray(np.asarray(digit, np.uint8)).resize(
        (side, side), Image.Resampling.BICUBIC
    )
    return np.clip(np.asarray(big, np.float32) / 255.0, 0.0, 1.0)


def on_paper(cov: np.ndarray, paper=PAPER, ink=INK, noise: float = 2.0, rng=None) -> np.ndarray:
    """Ink coverage laid on paper: (H, W, 3) float RGB, with the paper's sensor noise."""
    paper = np.asarray(paper, np.float32)
    ink = np.asarray(ink, np.float32)
    img = paper * (1.0 - cov[..., None]) + ink * cov[..., None]
    if noise and rng is not None:
        img = img + rng.normal(0.0, noise, img.shape[:2])[..., None]
    return img


def encode(img, fmt: str = "PNG", **kw) -> bytes:
    """An image (float/uint8 array or PIL image) as a file's bytes."""
    if not isinstance(img, Image.Image):
        a = np.clip(np.rint(np.asarray(img, np.float32)), 0, 255).astype(np.uint8)
        img = Image.fromarray(a)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def skeleton(digit: np.ndarray, scale: int = 4) -> np.ndarray:
    """Zhang-Suen thinning of the digit (upscaled ``scale`` times, ink above half): the pen's
    path, a boolean (28*scale)^2 image one pixel wide."""
    m = coverage(digit, 28 * scale) > 0.45
    m = np.pad(m, 1)
    while True:
        changed = False
        for step in (0, 1):
            p = [
                np.roll(np.roll(m, -dy, 0), -dx, 1)
                for dy, dx in ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
            ]
            b = sum(q.astype(np.int8) for q in p)
            a = sum(((~p[i]) & p[(i + 1) % 8]).astype(np.int8) for i in range(8))
            if step == 0:
                c = ~(p[0] & p[2] & p[4]) & ~(p[2] & p[4] & p[6])
            else:
                c = ~(p[0] & p[2] & p[6]) & ~(p[0] & p[4] & p[6])
            kill = m & (b >= 2) & (b <= 6) & (a == 1) & c
            if kill.any():
                m = m & ~kill
                changed = True
        if not changed:
            return m[1:-1, 1:-1]


def draw_strokes(
    digit: np.ndarray, side: int, width: float, fg, bg, mode: str = "RGB", margin: float = 0.0
) -> Image.Image:
    """The digit's skeleton drawn as polylines between neighbouring path pixels with a round
    brush ``width`` px wide, as a canvas app draws a stroke (segments plus round joins)."""
    sk = skeleton(digit)
    s = sk.shape[0]
    k = side * (1.0 - 2 * margin) / s
    off = side * margin
    img = Image.new(mode, (side, side), bg)
    d = ImageDraw.Draw(img)
    ys, xs = np.nonzero(sk)
    pts = set(zip(ys.tolist(), xs.tolist()))
    r = width / 2.0
    for y, x in pts:
        cx, cy = off + (x + 0.5) * k, off + (y + 0.5) * k
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
            if (y + dy, x + dx) in pts:
                d.line(
                    [(cx, cy), (off + (x + dx + 0.5) * k, off + (y + dy + 0.5) * k)],
                    fill=fg,
                    width=max(1, round(width)),
                )
    return img


# ---- the conditions: (digit 28x28 uint8, rng) -> encoded image bytes ----------------------
def clean(d, rng):
    return encode(on_paper(coverage(d, 280), rng=rng))


def tight_crop(d, rng):
    cov = coverage(d, 280)
    rows, cols = np.flatnonzero((cov > 0.02).any(1)), np.flatnonzero((cov > 0.02).any(0))
    return encode(on_paper(cov[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], rng=rng))


def low_res_16(d, rng):
    small = Image.fromarray(255 - d).resize((16, 16), Image.Resampling.BOX)
    return encode(small.resize((256, 256), Image.Resampling.BICUBIC))


def scan_28_upscaled(d, rng):
    # A 28x28 scan enlarged smoothly: no paper grain at all, a wide grey digit.
    return encode(Image.fromarray(255 - d).resize((280, 280), Image.Resampling.BILINEAR))


def thick_marker(d, rng):
    height = 400 * 20 / 28
    img = draw_strokes(d, 400, 0.15 * height, fg=0, bg=255, mode="L")
    return encode(on_paper(1.0 - np.asarray(img, np.float32) / 255.0, rng=rng))


def thin_pen(d, rng):
    # A ballpoint: 2.5 px on a 450 px page, the digit ~320 px tall (a 1 % line).
    img = draw_strokes(d, 450, 2.5, fg=0, bg=255, mode="L").filter(ImageFilter.GaussianBlur(0.6))
    return encode(on_paper(1.0 - np.asarray(img, np.float32) / 255.0, ink=(20, 30, 90), rng=rng))


def lined_paper(d, rng):
    img = on_paper(coverage(d, 320), rng=rng)
    step = int(rng.integers(30, 45))
    for y in range(int(rng.integers(5, step)), 320, step):
        img[y : y + 2] = img[y : y + 2] * 0.3 + np.array([150, 180, 230], np.float32) * 0.7 * (
            img[y : y + 2] / 238.0
        )  # blue rules, multiplied under the ink
    return encode(img)


def squared_paper(d, rng):
    img = on_paper(coverage(d, 320), rng=rng)
    step = int(rng.integers(18, 30))
    shade = np.ones(img.shape[:2], np.float32)
    o1, o2 = int(rng.integers(0, step)), int(rng.integers(0, step))
    shade[o1::step, :] = 0.78
    shade[:, o2::step] = 0.78
    return encode(img * shade[..., None])


def shadow(d, rng):
    img = on_paper(coverage(d, 320), rng=rng)
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1.0 - 0.4 * xx / w - 0.15 * yy / h  # lamp at the top left
    # a soft shadow (a hand or the phone) over one corner
    cx, cy = rng.uniform(0.7, 1.0) * w, rng.uniform(0.6, 1.0) * h
    dist = np.hypot(xx - cx, yy - cy) / w
    light *= 1.0 - 0.35 / (1.0 + np.exp((dist - 0.35) / 0.06))
    return encode(img * light[..., None])


def chalkboard(d, rng):
    cov = coverage(d, 320)
    board = np.array([38, 62, 48], np.float32)
    chalk = np.array([235, 235, 225], np.float32)
    texture = rng.normal(0.0, 4.0, cov.shape)[..., None]
    smudge = np.asarray(
        Image.fromarray((rng.random((8, 8)) * 25).astype(np.float32)).resize(
            cov.shape[::-1], Image.Resampling.BICUBIC
        )
    )[..., None]
    img = board + smudge + texture + (chalk - board) * (cov[..., None] * rng.uniform(0.7, 1.0))
    return encode(img)


def small_on_page(d, rng):
    page_h, page_w = 1200, 900
    side = int(rng.integers(70, 110))
    cov = np.zeros((page_h, page_w), np.float32)
    y, x = int(rng.integers(50, page_h - side - 50)), int(rng.integers(50, page_w - side - 50))
    cov[y : y + side, x : x + side] = coverage(d, side)
    return encode(on_paper(cov, noise=3.0, rng=rng), "JPEG", quality=88)


def colour_ink(d, rng):
    inks = [(30, 60, 200), (200, 30, 40), (30, 140, 60), (120, 40, 160)]
    return encode(on_paper(coverage(d, 280), ink=inks[int(rng.integers(len(inks)))], rng=rng))


def jpeg(d, rng):
    return encode(
        on_paper(coverage(d, 280), noise=3.0, rng=rng), "JPEG", quality=int(rng.integers(12, 25))
    )


def transparent_png(d, rng):
    cov = coverage(d, 280)
    colour = [(0, 0, 0), (255, 255, 255), (20, 90, 220)][int(rng.integers(3))]
    rgba = np.zeros((280, 280, 4), np.float32)
    rgba[..., :3] = colour  # a drawing app leaves RGB at the ink's colour; alpha is the ink
    rgba[..., 3] = cov * 255.0
    return encode(Image.fromarray(np.clip(np.rint(rgba), 0, 255).astype(np.uint8), "RGBA"))


def canvas(d, rng):
    # The draw-a-digit page: 280 px canvas, a round brush ~18 px, white on black.
    img = draw_strokes(d, 280, float(rng.uniform(14, 22)), fg=255, bg=0, mode="L")
    return encode(img)


CONDITIONS = {
    "clean": clean,
    "tight-crop": tight_crop,
    "low-res-16": low_res_16,
    "scan-28-upscaled": scan_28_upscaled,
    "thick-marker": thick_marker,
    "thin-pen": thin_pen,
    "lined-paper": lined_paper,
    "squared-paper": squared_paper,
    "shadow": shadow,
    "chalkboard": chalkboard,
    "small-on-page": small_on_page,
    "colour-ink": colour_ink,
    "jpeg": jpeg,
    "transparent-png": transparent_png,
    "canvas": canvas,
}


def render(name: str, digit: np.ndarray, seed: int, index: int) -> bytes:
    """Condition ``name`` applied to one digit; the same (seed, index) gives the same bytes."""
    rng = np.random.default_rng([seed, index, list(CONDITIONS).index(name)])
    return CONDITIONS[name](np.asarray(digit, np.uint8), rng)


# ---- measuring --------------------------------------------------------------------------
def test_digits(data_dir: Path, n: int, seed: int):
    """n MNIST test digits (full MNIST at ``data_dir``, else the bundled sample's test part)."""
    from mnistlab import datasets
    from mnistlab.errors import MnistlabError

    try:
        ds = datasets.load("mnist", data_dir=data_dir, download=False, quiet=True)
    except MnistlabError:
        ds = datasets.load("mnist-sample")
    idx = np.sort(
        np.random.default_rng(seed).choice(len(ds.x_test), min(n, len(ds.x_test)), replace=False)
    )
    return ds, ds.x_test[idx], ds.y_test[idx]


def accuracy_under(run, name: str, x: np.ndarray, y: np.ndarray, seed: int):
    """(accuracy, number refused) of ``run`` on the digits rendered under ``name``."""
    from mnistlab.errors import MnistlabError
    from mnistlab.use import predict as pr

    style = pr.style_for(run.dataset_name)
    prepared, refused = [], 0
    for i, d in enumerate(x):
        try:
            prepared.append(pr.load_image(render(name, d, seed, i), style, name=f"{name}[{i}]"))
        except MnistlabError:  # a refused image (blank, unreadable) counts as wrong
            prepared.append(None)
            refused += 1
    ok = [p is not None for p in prepared]
    pred = np.full(len(x), -1)
    if any(ok):
        proba = run.predict_proba(np.stack([p for p in prepared if p is not None]))
        pred[np.flatnonzero(ok)] = proba.argmax(1)
    return float((pred == y).mean()), refused


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "run",
        nargs="?",
        type=Path,
        default=None,
        help="a run folder (default: train --preset on MNIST in a temporary folder)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA,
        help="full MNIST's IDX files (default ../shared/data/mnist; else the bundled sample)",
    )
    p.add_argument("--preset", default="notebook", help="recipe of the quick model")
    p.add_argument("--n", type=int, default=500, help="test digits per condition")
    p.add_argument("--seed", type=int, default=0, help="picks the digits and the conditions' noise")
    p.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help="comma-separated subset of: " + ", ".join(CONDITIONS),
    )
    args = p.parse_args(argv)
    if args.n < 1:
        p.error("--n: expected an integer >= 1")
    names = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONDITIONS]
    if unknown or not names:
        p.error(
            f"--conditions: unknown {', '.join(unknown) or '(none given)'}; "
            f"expected some of {', '.join(CONDITIONS)}"
        )
    _machine.header()

    from mnistlab import rundir
    from mnistlab.errors import MnistlabError
    from mnistlab.recipe import load_preset
    from mnistlab.training import fit as train

    try:
        ds, x, y = test_digits(args.data_dir, args.n, args.seed)
        with tempfile.TemporaryDirectory(prefix="mnistlab-robustness-") as tmp:
            if args.run is None:
                print(f"training {args.preset} on {ds.name} ...", flush=True)
                run = train.fit(load_preset(args.preset), ds, out=Path(tmp) / "run", quiet=True)
            else:
                run = rundir.load_run(args.run)
            base = float((run.predict_proba(x).argmax(1) == y).mean())
            print(
                f"model: {run.recipe.name} ({run.recipe.kind}); {len(x)} {ds.name} test digits, "
                f"seed {args.seed}"
            )
            print(
                f"{'condition':<18} {'accuracy':>9} {'original':>9} {'diff':>7} {'refused':>8}"
                f" {'s':>6}  goal (within {GOAL_POINTS:.0f} points)"
            )
            worst = 0.0
            for name in names:
                t0 = time.perf_counter()
                acc, refused = accuracy_under(run, name, x, y, args.seed)
                diff = (acc - base) * 100
                worst = min(worst, diff)
                print(
                    f"{name:<18} {acc * 100:8.2f}% {base * 100:8.2f}% {diff:+7.2f} {refused:8d}"
                    f" {time.perf_counter() - t0:6.1f}  "
                    f"{'meets' if diff >= -GOAL_POINTS else 'MISSES'}",
                    flush=True,
                )
            print(f"worst difference: {worst:+.2f} points")
    except MnistlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
