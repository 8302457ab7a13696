"""A person's digit made the way MNIST's digits were made: any photo, scan or canvas -> 28x28.

A network trained on MNIST has only seen digits prepared one particular way (LeCun et al. made
MNIST from NIST scans), so a photo of a digit on paper must be brought into that form first.
The steps, in order (each says why in its function):

1. decode with bounded memory (``mnistlab.use.imagefile.read_image``): the size is checked before
   any pixel is decoded, JPEGs decode already downscaled, large images are box-reduced;
2. colour to "ink" per channel (blue ink on white is as dark in red as black ink is), alpha as
   ink for a drawing app's transparent PNG;
3. polarity: dark ink on light paper is inverted (MNIST is bright ink on black);
4. the paper removed region by region (uneven light, shadows), ruled or squared lines removed;
5. blank or not, decided against the paper's own noise, measured where the paper is;
6. specks far smaller than the digit dropped; crop to the ink's bounding box, grey edges kept;
7. pen-thin strokes widened to MNIST's stroke width; the longer side scaled to 20 px
   (anti-aliased), pasted into 28x28 with the centre of mass at the centre.

Fashion-MNIST runs get that dataset's recipe instead (one paper level, longest side 28, centred
by the box). Limits: one digit per image; rules of a lined page must be near axis-aligned.

>>> import numpy as np
>>> paper = np.full((120, 90), 235, np.uint8)   # light paper...
>>> paper[20:100, 40:52] = 20                   # ...with a dark vertical stroke: a "1"
>>> x = prepare(paper)
>>> x.shape, x.dtype, int(x[14, 14]) > 200, int(x[0, 0])   # bright ink on black, centred
((28, 28), dtype('uint8'), True, 0)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from mnistlab.errors import DataError
from mnistlab.use.imagefile import MAX_PIXELS, WORK_SIDE, Source, read_image

SIZE, BOX = 28, 20  # MNIST's field, and the box its digits' longer side was fitted into
MIN_CONTRAST = 12.0  # grey levels (of 255) between paper and ink below which nothing is written
NOISE_SIGMAS = 8.0  # a mark must stand this many noise deviations above the paper
SPECK_SHARE = 0.05  # a separate blob with less ink than this share of the largest is a speck
SOLID_SHARE = 40.0  # percent of a digit's inked pixels at full white, as in MNIST
WORK_SCALE = 10  # strokes are measured and thickened at 10x the box (a 200 px digit)
# MNIST's stroke width at that scale: median 27 px, 1st percentile 16. Thinner than 12 is a pen
# line that was never in MNIST; it is widened to the median.
MIN_STROKE, TARGET_STROKE = 12.0, 27.0


def read_gray(source: Source, name: str | None = None) -> np.ndarray:
    """An image file -> float32 (H, W) in 0..255 as the eye sees it (alpha on white paper)."""
    return _luminance(_channels(read_image(source, name)))


# ---- to ink -----------------------------------------------------------------------------
def _channels(image: Any) -> np.ndarray:
    """PIL image or array -> float32 (H, W, C) in 0..255, C = 1 or 3, alpha resolved.

    A drawing app's transparent PNG carries the digit in its alpha channel; its colour under
    transparent pixels is arbitrary. Such an image is laid on a background contrasting with its
    opaque pixels, so the alpha becomes the ink whatever the ink's colour.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        mode = image.mode
        if mode in ("I", "F") or mode.startswith("I;16"):
            a = np.asarray(image, dtype=np.float64)
            lo, hi = float(a.min()), float(a.max())
            # 16-bit/float scans: clipping at 255 would turn everything white.
            a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
            return a.astype(np.float32)[:, :, None]
        if mode not in ("L", "LA", "RGB", "RGBA"):
            image = image.convert("RGBA" if "transparency" in image.info or "A" in mode else "RGB")
        a = np.asarray(image, dtype=np.float32)
    else:
        a = np.asarray(image)
        if a.dtype == bool:
            a = a * np.float32(255)
        a = a.astype(np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or min(a.shape[:2]) < 1:
        raise DataError(
            f"expected a 2-D grayscale or (H, W, 3|4) colour image, got shape {a.shape}"
        )
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise DataError(
            f"{a.shape[1]}x{a.shape[0]} pixels is more than mnistlab prepares "
            f"({MAX_PIXELS // 1_000_000} megapixels)"
        )
    if a.shape[2] in (2, 4):
        alpha, a = a[:, :, -1:] / 255.0, a[:, :, :-1]
        if float(alpha.min()) < 0.5:  # some of it is really transparent
            opaque = alpha[:, :, 0] > 0.5
            seen = float(_luminance(a)[opaque].mean()) if opaque.any() else 0.0
            background = 0.0 if seen > 127.5 else 255.0
            a = a * alpha + background * (1.0 - alpha)
        else:
            a = a * alpha + 255.0 * (1.0 - alpha)
    if (
        a.shape[2] == 3
        and np.array_equal(a[:, :, 0], a[:, :, 1])
        and np.array_equal(a[:, :, 1], a[:, :, 2])
    ):
        a = a[:, :, :1]  # grey stored as RGB: one channel is enough
    return _shrink(np.ascontiguousarray(a, dtype=np.float32))


def _shrink(a: np.ndarray) -> np.ndarray:
    """An array larger than ``WORK_SIDE`` box-reduced like a decoded file would be."""
    factor = max(a.shape[:2]) // WORK_SIDE
    if factor < 2:
        return a
    h, w = a.shape[0] // factor * factor, a.shape[1] // factor * factor
    return a[:h, :w].reshape(h // factor, factor, w // factor, factor, -1).mean(axis=(1, 3))


def _luminance(a: np.ndarray) -> np.ndarray:
    if a.shape[2] == 1:
        return a[:, :, 0]
    return a[:, :, 0] * 0.299 + a[:, :, 1] * 0.587 + a[:, :, 2] * 0.114


def _border(g: np.ndarray, share: float = 0.04) -> np.ndarray:
    """The pixels of a band along the edges (``share`` of each side, at least one pixel)."""
    h, w = g.shape
    bh, bw = max(1, int(h * share)), max(1, int(w * share))
    return np.concatenate([g[:bh].ravel(), g[-bh:].ravel(), g[:, :bw].ravel(), g[:, -bw:].ravel()])


def ink_is_dark(gray: np.ndarray) -> bool:
    """True for dark ink on light paper (a photo or scan), False for MNIST's bright-on-black.

    The border is mostly paper whatever the polarity, so its median is the paper's colour;
    the ink is whatever lies on the other side of the image's mid-range.
    """
    g = np.asarray(gray, dtype=np.float32)
    return float(np.median(_border(g, 0.0))) > (float(g.min()) + float(g.max())) / 2.0


def paper_level(gray: np.ndarray, dark_ink: bool) -> np.ndarray:
    """The paper's brightness under every pixel, (H, W) float32: lighting flattened out.

    A photo's paper is rarely even (lamp on one side, shadow of the phone). The ink is thin
    next to the page, so the paper shows in every large block: take each block's brightest
    pixels (darkest, for light ink on dark), let a block covered by a thick stroke borrow its
    neighbours' paper, and interpolate back up smoothly.
    """
    from PIL import Image

    g = np.asarray(gray, dtype=np.float32)
    h, w = g.shape
    b = max(1, min(h, w) // 8)  # blocks of 1/8 of the shorter side; 3x3 blocks >> a stroke
    ph, pw = -(-h // b) * b, -(-w // b) * b
    padded = np.pad(g, ((0, ph - h), (0, pw - w)), mode="edge")
    blocks = (
        padded.reshape(ph // b, b, pw // b, b)
        .transpose(0, 2, 1, 3)
        .reshape(ph // b, pw // b, b * b)
    )
    pick, other = (np.max, np.min) if dark_ink else (np.min, np.max)
    # The 90th percentile, not the max: one bright speck of sensor noise must not raise the
    # paper above its typical grain. One block more on every side, extrapolated linearly, so
    # the lighting's slope continues past the edges.
    level = _extend(np.percentile(blocks, 90 if dark_ink else 10, axis=2))
    # A closing over 3x3 blocks: fills a block that ink covers entirely, yet keeps a gradient.
    level = _extend(_neighbours(_neighbours(level, pick), other)[1:-1, 1:-1])
    up = Image.fromarray(level.astype(np.float32)).resize(
        (pw + 2 * b, ph + 2 * b), Image.Resampling.BILINEAR
    )
    return np.asarray(up, dtype=np.float32)[b : b + h, b : b + w]


def _extend(a: np.ndarray) -> np.ndarray:
    """Pad one cell on every side by linear extrapolation (edge copy where a side has one cell).

    By hand, as ``np.pad(mode="reflect", reflect_type="odd")`` computes it (2 * edge - next),
    without its per-call overhead, which dominates on these few cells."""
    for axis in (1, 0):
        a = np.moveaxis(a, axis, 0)
        if a.shape[0] > 1:
            first, last = 2 * a[:1] - a[1:2], 2 * a[-1:] - a[-2:-1]
        else:
            first = last = a
        a = np.moveaxis(np.concatenate([first, a, last]), 0, axis)
    return a


def _neighbours(a: np.ndarray, reduce) -> np.ndarray:
    """``reduce`` (np.max or np.min) over each cell's 3x3 neighbourhood, edges included."""
    from scipy import ndimage

    rank_filter = ndimage.maximum_filter if reduce is np.max else ndimage.minimum_filter
    return rank_filter(a, size=3, mode="nearest")


def _border_rgb(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


def _coloured(a: np.ndarray) -> bool:
    """True when some pixels have a clear hue (colour ink), not just grey with a paper tint."""
    r, g, b = a[:, :, 0], a[:, :, 1], a[:, :, 2]
    chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    chroma -= np.median(_border(chroma, 0.0))  # the paper's own tint
    return float(np.percentile(chroma, 99.5)) > 30.0


def ink_map(channels: np.ndarray, local: bool = True) -> np.ndarray:
    """(H, W, C) float -> ink intensity (H, W), 0 = paper, in grey levels above the paper
    (signed: the paper's own noise goes both ways).

    Colour ink is read in the channel where it shows: blue ink on white is as dark in red as
    black ink is, and only averaging it with the other channels (luminance) makes it faint.
    ``local``: the paper's level per region (strokes); else one level, the border's median (solid
    objects filling whole regions).
    """
    lum = _luminance(channels)
    dark = ink_is_dark(lum)
    g = lum
    if channels.shape[2] == 3 and _coloured(channels):
        # White-balanced on the paper (its border), then per pixel the channel where the ink
        # shows most: the darkest for dark ink, the brightest for light ink.
        balance = np.median(_border_rgb(channels), axis=0)
        balanced = channels * (balance.mean() / np.maximum(balance, 1.0))
        pick = np.minimum if dark else np.maximum
        g = pick(pick(balanced[:, :, 0], balanced[:, :, 1]), balanced[:, :, 2])
    paper = paper_level(g, dark) if local else np.float32(np.median(_border(g, 0.0)))
    # Light multiplies: ink in the shade is darker in absolute terms but the same share of its
    # paper's light. Light ink on a dark board adds to it.
    ink = (1.0 - g / np.maximum(paper, 1.0)) * 255.0 if dark else g - paper
    return ink.astype(np.float32)  # signed: the paper's noise stays symmetric for find_ink


def remove_rules(ink: np.ndarray, noise: float = 0.0) -> np.ndarray:
    """Ink minus the lines of ruled or squared paper.

    A rule runs straight through the whole image, edge to edge; a grey opening with a line 90 %
    of the image long keeps exactly such runs (after a small dilation across them, so a page
    photographed ~1 degree askew still counts). Only where two or more run parallel is it
    paper: a digit has at most one edge-to-edge straight stroke per direction (the bar of a
    tightly cropped 7, the stem of a 1), which must stay. Where the pen crosses a rule, the
    rule's share is taken off, not the ink. ``noise``: the paper's grain; a rule stands above
    four times it.
    """
    from scipy import ndimage

    peak = float(ink.max())
    if peak <= 0:
        return ink
    level = max(0.05 * peak, 4.0 * noise)
    rules = []
    inked = ink > level
    for axis in (1, 0):  # horizontal rules, then vertical
        across = 1 - axis
        k = max(1, round(0.01 * ink.shape[across]))
        # Cheaper still, first: a row marked below can hold no more ink than the 2k + 1 rows
        # around it; fewer than two rows with that much cannot make two runs.
        counts = np.count_nonzero(inked, axis=axis)
        near = np.convolve(counts, np.ones(2 * k + 1, np.int64), mode="same")
        if np.count_nonzero(near >= 0.9 * ink.shape[axis] - 1) < 2:
            continue
        # Cheap test first: rows (columns) with ink nearly edge to edge, in >= 2 separate runs.
        marked = ndimage.maximum_filter1d(inked, 2 * k + 1, axis=across)
        if int(ndimage.label(marked.mean(axis=axis) >= 0.9)[1]) < 2:
            continue
        size = [1, 1]
        size[across] = 2 * k + 1
        wide = ndimage.grey_dilation(ink, size=tuple(size))
        size = [1, 1]
        size[axis] = max(3, int(ink.shape[axis] * 0.9))
        opened = np.minimum(ndimage.grey_opening(wide, size=tuple(size)), ink)
        strength = opened.max(axis=axis)  # per row (or column): its strongest straight run
        if int(ndimage.label(strength > level)[1]) >= 2:
            rules.append(opened)
    if not rules:
        return ink
    # Both directions measured on the same page and taken off together: where rules of a
    # squared page cross, the paper is darker by both.
    return np.clip(ink - sum(rules), 0.0, None)


def _smooth_sigma(shape) -> float:
    return max(0.7, min(shape) / 300.0)


def find_ink(ink: np.ndarray, name: str, rules: bool = True) -> np.ndarray:
    """The digit's ink (same shape), paper and specks at 0; DataError if there is none.

    Blank means no mark above the paper's noise, and the noise is measured on the paper: the
    border band, where a digit (even one cropped tight) covers too little to move a median.
    The decision is on a slightly smoothed copy: averaging over a few pixels divides the grain
    by ~5 while a stroke, a few pixels wide, keeps its level, so a faint pencil digit stands
    out of a noisy photo and a lone noise pixel does not.
    """
    from scipy import ndimage

    sigma = _smooth_sigma(ink.shape)
    smooth = ndimage.gaussian_filter(ink, sigma, mode="nearest")
    band = _border(smooth)
    grain = 1.4826 * float(np.median(np.abs(band - np.median(band))))
    raw_band = _border(ink)
    raw_grain = 1.4826 * float(np.median(np.abs(raw_band - np.median(raw_band))))
    # A digit cropped so tight that strokes cover half the border inflates those spreads; the
    # differences of neighbouring pixels do not see flat ink or flat paper, only the grain.
    # Converted to the smoothed scale as for white noise, with a factor 2 for JPEG's blotches.
    steps = np.concatenate(
        [
            np.diff(ink[:2], axis=1).ravel(),
            np.diff(ink[-2:], axis=1).ravel(),
            np.diff(ink[:, :2], axis=0).ravel(),
            np.diff(ink[:, -2:], axis=0).ravel(),
        ]
    )
    step_grain = 1.4826 * float(np.median(np.abs(steps))) / np.sqrt(2.0)
    grain = min(grain, 2.0 * step_grain / (2.0 * np.sqrt(np.pi) * sigma))
    raw_grain = min(raw_grain, step_grain)
    ink = np.clip(ink, 0.0, None)
    smooth = np.clip(smooth, 0.0, None)
    if rules:
        ruled = remove_rules(ink, raw_grain)
        if ruled is not ink:
            ink, smooth = ruled, ndimage.gaussian_filter(ruled, sigma, mode="nearest")
    peak = float(smooth.max())
    floor = max(MIN_CONTRAST, NOISE_SIGMAS * grain + float(np.percentile(band, 25)))
    if peak < floor:
        raise DataError(
            f"{name}: the image is blank (no ink found: the strongest mark is "
            f"{peak:.0f} of 255 above the paper, its noise {grain:.1f})"
        )
    # Blobs of ink: everything clearly above the noise, grouped by 8-connectivity.
    marks = smooth > max(0.5 * floor, 0.15 * peak)
    labels, n = ndimage.label(marks, structure=np.ones((3, 3), bool))
    if n > 1:
        mass = ndimage.sum_labels(ink, labels, index=np.arange(1, n + 1))
        keep = np.flatnonzero(mass >= SPECK_SHARE * mass.max()) + 1
        marks = np.isin(labels, keep)
    # The strokes' soft edges lie just outside the marks: reach ~2 sigma out for them.
    near = _dilate_cross(marks, max(1, round(2 * sigma)))
    out = np.where(near, ink, 0.0).astype(np.float32)
    strong = float(np.percentile(out[marks], 99.5)) if marks.any() else float(out.max())
    # Not a binarization: strokes keep their grey edges; only faint paper texture next to them
    # goes to 0, so it neither widens the crop nor pulls the centre of mass.
    out[out < max(0.1 * strong, 3.0 * raw_grain)] = 0.0
    if not out.any():
        raise DataError(f"{name}: the image is blank (no ink found above the paper's noise)")
    return np.minimum(out * (255.0 / max(strong, 1e-6)), 255.0)


def _dilate_cross(m: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_dilation(m, iterations=...)`` (the 4-neighbourhood, nothing beyond the
    edges) by shifted ORs: the same pixels, without its per-iteration overhead."""
    out = m.copy()
    for _ in range(iterations):
        prev = out.copy()
        out[1:] |= prev[:-1]
        out[:-1] |= prev[1:]
        out[:, 1:] |= prev[:, :-1]
        out[:, :-1] |= prev[:, 1:]
    return out


# ---- fitting ----------------------------------------------------------------------------
def _resize(a: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    # Down: area averaging, as a scanner's coarser sensor (and MNIST's anti-aliasing) would
    # see it; no filter lobes, so no ringing halo around the strokes. Up: bilinear, smooth
    # and, again, without overshoot.
    down = width * height <= a.shape[0] * a.shape[1]
    out = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32)).resize(
        (width, height), Image.Resampling.BOX if down else Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 255.0)


def _fit(a: np.ndarray, box: int) -> np.ndarray:
    """Scale so the longer side is ``box`` pixels, keeping the aspect ratio."""
    h, w = a.shape
    scale = box / max(h, w)
    return _resize(a, max(1, round(w * scale)), max(1, round(h * scale)))


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 * area / boundary of the ink above half its peak (a
    stroke of width w and length L has area w*L and about 2*L boundary pixels)."""
    from scipy import ndimage

    # Smoothed first: a noisy stroke's ragged edge would count as boundary and halve its width.
    ink = ndimage.gaussian_filter(np.asarray(ink, np.float32), 1.5)
    inked = ink[ink > 0.01 * float(ink.max())]
    if inked.size == 0:
        return 0.0
    # Half of a robust peak: one noise spike above the strokes must not halve their width.
    m = ink > 0.5 * float(np.percentile(inked, 95))
    inner = m.copy()  # erosion by the 4-neighbourhood: what is left is not on the boundary
    inner[1:] &= m[:-1]
    inner[:-1] &= m[1:]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return 2.0 * float(m.sum()) / max(int((m & ~inner).sum()), 1)


def thicken(ink: np.ndarray) -> np.ndarray:
    """Widen pen-thin strokes to MNIST's, on an image at the 10x working scale (longer side
    200 px).

    MNIST's digits were written with thick strokes: about 2.7 px of their 20 px box (27 px at
    the working scale; 99 % are wider than 16). A ballpoint on paper is 1-3 % of a digit's
    height, which shrinks to a faint hairline the network has never seen. Strokes clearly
    thinner than any in MNIST (< 12) are dilated (grey-level max filter with an octagon, close
    to a round pen) to MNIST's median width; others are left alone.
    """
    from scipy import ndimage

    width = stroke_width(ink)
    if width >= MIN_STROKE:
        return ink
    steps = round((TARGET_STROKE - width) / 2)  # each step adds 1 px on either side
    out = np.pad(ink, steps)  # room to grow: strokes on the crop's edge widen outwards too
    cross = ndimage.generate_binary_structure(2, 1)
    for step in range(steps):  # cross and square alternately: an octagon
        out = ndimage.grey_dilation(
            out, footprint=cross if step % 2 == 0 else np.ones((3, 3), bool)
        )
    return out


@dataclasses.dataclass(frozen=True)
class Step:
    """One stage of ``prepare`` as an image, for showing how a digit was made ready.

    ``image``: float32 0..255; the "input" step as the eye sees it, every later one in MNIST's
    form (bright ink on black). ``box`` (top, left, height, width) and ``centre`` (row, column):
    where the scaled digit was pasted into the 28x28 field and its centre of mass there, on the
    step that places it."""

    name: str
    title: str
    image: np.ndarray
    note: str = ""
    box: tuple[int, int, int, int] | None = None
    centre: tuple[float, float] | None = None


# The steps ``prepare(..., steps=True)`` returns, in order, by style.
STEPS = {
    "mnist": {
        "input": "the input",
        "ink": "ink found (paper removed)",
        "cropped": "cropped to the ink",
        "box": f"scaled into {BOX}\u00d7{BOX}",
        "centred": "centred by mass",
        "seen": f"the {SIZE}\u00d7{SIZE} the model saw",
    },
    "fashion": {
        "input": "the input",
        "ink": "object found (background removed)",
        "cropped": "cropped to the object",
        "box": f"scaled into {SIZE}\u00d7{SIZE}",
        "centred": "centred by its box",
        "seen": f"the {SIZE}\u00d7{SIZE} the model saw",
    },
}


def _record(steps: list[Step] | None, style: str, name: str, image, **marks) -> None:
    if steps is not None:
        title = STEPS[style][name]
        steps.append(Step(name, title, np.asarray(image, np.float32).copy(), **marks))


def prepare(image: Any, name: str = "<array>", style: str = "mnist", steps: bool = False):
    """A decoded image of any size -> (28, 28) uint8 as in MNIST: bright ink on black.

    ``image``: a PIL image (any mode; alpha is ink) or an array (H, W) grayscale or
    (H, W, 3|4) colour, 0..255. style "mnist": fit the ink's bounding box into 20x20 (aspect
    kept), centre of mass at (14, 14) - LeCun's recipe; "fashion": fit into 28x28, centred by the
    box - Fashion-MNIST's. Raises DataError (naming ``name``) for an image with no ink.
    ``steps=True`` returns ``(x, steps)``: also each stage as a ``Step`` (see ``STEPS``).
    """
    if style not in ("mnist", "fashion"):
        raise ValueError(f"style: expected 'mnist' or 'fashion', got {style!r}")
    try:
        channels = _channels(image)
    except DataError as exc:
        raise DataError(f"{name}: {exc}") from None
    record: list[Step] | None = [] if steps else None
    if record is not None:  # the luminance is made for the record only
        _record(record, style, "input", _luminance(channels))
    ink = find_ink(ink_map(channels, local=style == "mnist"), name, rules=style == "mnist")
    _record(record, style, "ink", ink)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]  # the crop: the ink's bounding box
    _record(record, style, "cropped", ink)
    small = _scaled(ink, style)
    _record(record, style, "box", small)
    h, w = small.shape
    top, left, (cy, cx) = _placement(small, style)
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top : top + h, left : left + w] = small
    centre = (cy + top, cx + left)
    _record(
        record,
        style,
        "centred",
        out,
        note=f"centre of mass at row {centre[0]:.1f}, column {centre[1]:.1f}",
        box=(top, left, h, w),
        centre=centre,
    )
    x = np.rint(out).astype(np.uint8)
    _record(record, style, "seen", x)
    return (x, record) if steps else x


def _scaled(ink: np.ndarray, style: str) -> np.ndarray:
    """The cropped ink fitted into the box of ``style``, strokes as solid as MNIST's."""
    box = BOX if style == "mnist" else SIZE
    if style == "mnist":
        # Two steps: to a 10x working scale, where a pen line is wide enough to measure and
        # thicken, then down to the box.
        ink = thicken(_fit(ink, WORK_SCALE * box))
    small = _fit(ink, box)
    if small.max() > 0:
        # MNIST's strokes are solid: anti-aliased from binary scans, ~40 % of their inked pixels
        # are full white. A photo's strokes are soft; scale so the same share saturates.
        inked = small[small > 0.1 * small.max()]
        small = np.minimum(small * (255.0 / float(np.percentile(inked, 100 - SOLID_SHARE))), 255.0)
    return small


def _placement(small: np.ndarray, style: str) -> tuple[int, int, tuple[float, float]]:
    """(top, left) of the scaled digit in the 28x28 field, and its centre of mass (row, column)
    within itself."""
    h, w = small.shape
    mass = float(small.sum())
    cy = float((small.sum(axis=1) * np.arange(h)).sum() / mass) if mass else (h - 1) / 2
    cx = float((small.sum(axis=0) * np.arange(w)).sum() / mass) if mass else (w - 1) / 2
    if style == "mnist":
        # Centre of mass to pixel (14, 14) with an integer shift, as MNIST did, but never so far
        # that ink would fall off the field (a lopsided digit keeps all its strokes).
        top = min(max(round(SIZE // 2 - cy), 0), SIZE - h)
        left = min(max(round(SIZE // 2 - cx), 0), SIZE - w)
    else:
        top, left = (SIZE - h) // 2, (SIZE - w) // 2
    return top, left, (cy, cx)


def load_image(source: Source, style: str = "mnist", name: str | None = None, steps: bool = False):
    """Read an image file (path, bytes or binary file) and prepare it: (28, 28) uint8 (with
    ``steps=True``, ``(x, steps)`` as ``prepare`` gives them).

    Unreadable, corrupt, oversized or blank files raise DataError naming the file.
    """
    if name is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else "<upload>"
    return prepare(read_image(source, name), name=name, style=style, steps=steps)


def style_for(dataset_name: str) -> str:
    """The preparation recipe that matches how a run's training images were made."""
    return "fashion" if "fashion" in dataset_name.lower() else "mnist"
