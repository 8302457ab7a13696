"""Use a trained run on your own handwriting: photo or scan in, top-k classes out.

A network trained on MNIST has only seen digits prepared one particular way, so a photo of a
digit on paper must be brought into that form first, the way LeCun et al. made MNIST from NIST
scans. The steps, in order (each says why in its function):

1. read any format Pillow reads; transparency composited on white; EXIF rotation applied;
2. polarity: dark ink on light paper is detected (border brighter than the ink) and inverted,
   since MNIST is bright ink on black;
3. paper removed region by region (uneven lighting, shadows), faint grain under a noise floor;
4. crop to the ink's bounding box - no threshold, strokes keep their grey edges;
5. pen-thin strokes widened to MNIST's stroke width (a ballpoint line would shrink to a
   hairline at 28x28, which MNIST never had);
6. the longer side scaled to 20 px, aspect ratio kept, anti-aliased (LANCZOS);
7. pasted into 28x28 with the centre of mass at the centre (MNIST's recipe).

A digit that skips these steps - dark on white, filling the frame, off-centre - is far from
anything the network was trained on, and its answer means little. Fashion-MNIST runs get that
dataset's recipe instead (one paper level, longest side 28, centred by the box).

Limits: one digit per image, cropped roughly around it, on plain paper; lines of a ruled page
or a second digit in the frame become part of "the digit".

>>> import numpy as np
>>> paper = np.full((120, 90), 235, np.uint8)   # light paper...
>>> paper[20:100, 40:52] = 20                   # ...with a dark vertical stroke: a "1"
>>> x = prepare(paper)
>>> x.shape, x.dtype, int(x[14, 14]) > 200, int(x[0, 0])   # bright ink on black, centred
((28, 28), dtype('uint8'), True, 0)
>>> results = predict("runs/my-run", ["my_seven.jpg"], top=3)          # doctest: +SKIP
>>> results[0].label, round(results[0].probability, 2)                 # doctest: +SKIP
('7', 0.98)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from mnistlab import _verbs
from mnistlab.errors import DataError, RunError

SIZE = 28  # the field every MNIST-family image lives in
NOISE_FLOOR = 0.10  # share of the ink's peak below which a pixel counts as background
MIN_CONTRAST = 16.0  # grey levels (of 255) between paper and ink below which nothing is written
WORK_SCALE = 10  # strokes are measured and thickened at 10x the box (a 200 px digit)
# MNIST's stroke width at that scale: median 27 px, 1st percentile 16. Thinner than 12 is a pen
# line that was never in MNIST; it is widened to the median.
MIN_STROKE, TARGET_STROKE = 12.0, 27.0

ImageLike = Union[str, os.PathLike, np.ndarray]


# ---- reading ----------------------------------------------------------------------------
def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Any image Pillow reads -> float32 (H, W) grayscale in 0..255, as the eye sees it.

    Transparent pixels are composited onto white paper first (a PNG drawn in a paint program
    often has ink on a transparent background: dropping alpha would leave ink on black ink).
    Phone photos are turned upright from their EXIF orientation.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            # JPEG only: let the decoder skip detail (1/2, 1/4, 1/8 scale) down to >= 1600 px;
            # a 12-megapixel photo then decodes 4-16x faster and the digit keeps plenty of pixels.
            img.draft("L", (1600, 1600))
            img.load()  # decode now, inside the try: truncated files fail here, not later
            img = ImageOps.exif_transpose(img)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an image file") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to read safely ({exc})") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image Pillow can read (expected PNG, JPEG, BMP, ...)") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated/corrupt data inside a known format
        raise DataError(f"{path}: damaged image file ({exc})") from None
    return _to_gray(img)


def _to_gray(img) -> np.ndarray:
    from PIL import Image

    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit / float scans: convert("L") would clip everything above 255 to white.
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        return ((a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)).astype(np.float32)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(paper, rgba)
    return np.asarray(img.convert("L"), dtype=np.float32)


# ---- preparing --------------------------------------------------------------------------
def ink_is_dark(gray: np.ndarray) -> bool:
    """True for dark ink on light paper (a photo or scan), False for MNIST's bright-on-black.

    The border is mostly background whatever the polarity, so its median is the paper's colour;
    the ink is whatever lies on the other side of the image's mid-range.
    """
    g = np.asarray(gray, dtype=np.float32)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    return float(np.median(border)) > (float(g.min()) + float(g.max())) / 2.0


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
    blocks = padded.reshape(ph // b, b, pw // b, b)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(ph // b, pw // b, b * b)
    pick, other = (np.max, np.min) if dark_ink else (np.min, np.max)
    # The 90th percentile, not the max: one bright speck (or dark, for light ink) of sensor
    # noise must not raise the paper above its typical grain. One block more on every side,
    # extrapolated linearly, so the lighting's slope continues past the edges (for the closing
    # below and the interpolation at the outer half-blocks).
    level = _extend(np.percentile(blocks, 90 if dark_ink else 10, axis=2))
    # A closing over 3x3 blocks (max of neighbours, then min; mirrored for light ink): fills a
    # block that ink covers entirely, yet leaves a lighting gradient where it was.
    level = _extend(_neighbours(_neighbours(level, pick), other)[1:-1, 1:-1])
    # Bilinear between block centres: a smooth surface, no steps that would read as ink.
    up = Image.fromarray(level.astype(np.float32)).resize((pw + 2 * b, ph + 2 * b),
                                                         Image.Resampling.BILINEAR)
    return np.asarray(up, dtype=np.float32)[b:b + h, b:b + w]


def _extend(a: np.ndarray) -> np.ndarray:
    """Pad one cell on every side by linear extrapolation (edge copy where a side has one cell)."""
    a = np.pad(a, ((0, 0), (1, 1)), mode="reflect", reflect_type="odd") if a.shape[1] > 1 \
        else np.pad(a, ((0, 0), (1, 1)), mode="edge")
    return np.pad(a, ((1, 1), (0, 0)), mode="reflect", reflect_type="odd") if a.shape[0] > 1 \
        else np.pad(a, ((1, 1), (0, 0)), mode="edge")


def _neighbours(a: np.ndarray, reduce) -> np.ndarray:
    """``reduce`` (np.max or np.min) over each cell's 3x3 neighbourhood, edges included."""
    wide = np.pad(a, 1, mode="edge")
    return reduce(np.stack([wide[i:i + a.shape[0], j:j + a.shape[1]]
                            for i in range(3) for j in range(3)]), axis=0)


def _ink(gray: np.ndarray, name: str, local: bool = True) -> np.ndarray:
    """Ink intensity, 0 = paper, 255 = the strongest stroke, noise below the floor removed.

    ``local``: the paper's level per region (strokes: digits, letters); else one level, the
    border's median (solid objects such as Fashion-MNIST's clothes, which fill whole regions).
    """
    g = np.asarray(gray, dtype=np.float32)
    dark = ink_is_dark(g)
    if local:
        paper = paper_level(g, dark)
    else:
        paper = np.full_like(g, np.median(np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])))
    if dark:
        # Dark ink on paper (MNIST wants the opposite: white ink on black). Light multiplies:
        # ink in the shade is darker in absolute terms but the same share of its paper's light.
        ink = (1.0 - g / np.maximum(paper, 1.0)) * 255.0
    else:
        ink = g - paper  # already bright on dark: remove a grey floor
    # The paper's grain (sensor noise, JPEG), robustly from the residual of the mostly-paper
    # pixels: the ink must stand well clear of it, or the "digit" is one lucky speck.
    grain = 1.4826 * float(np.median(np.abs(ink - np.median(ink))))
    ink = np.clip(ink, 0.0, None)
    peak = float(ink.max())
    if peak < max(MIN_CONTRAST, 12.0 * grain):  # grain's tails are heavy (JPEG): 12, not 5
        raise DataError(f"{name}: the image is blank (no ink found: the strongest mark is "
                        f"{peak:.0f} of 255 above the paper, its grain {grain:.1f})")
    # Not a binarization: strokes keep their grey edges; only faint paper texture goes to 0, so
    # it neither widens the crop nor pulls the centre of mass.
    ink[ink < max(NOISE_FLOOR * peak, 4.0 * grain)] = 0.0
    return ink * (255.0 / peak)


def _resize(a: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    # LANCZOS on float data: anti-aliased like MNIST's grey edges; its small over/undershoots
    # (ringing) are clipped.
    out = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32)).resize(
        (width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 255.0)


def _fit(a: np.ndarray, box: int) -> np.ndarray:
    """Scale so the longer side is ``box`` pixels, keeping the aspect ratio."""
    h, w = a.shape
    scale = box / max(h, w)
    return _resize(a, max(1, round(w * scale)), max(1, round(h * scale)))


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 * area / boundary of the ink above half its peak (a
    stroke of width w and length L has area w*L and about 2*L boundary pixels)."""
    m = ink > 0.5 * float(ink.max())
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
    thinner than any in MNIST (< 12) are dilated (grey-level max filter, alternating cross and
    square steps so the pen stays round) to MNIST's median width; others are left alone.
    """
    width = stroke_width(ink)
    if width >= MIN_STROKE:
        return ink
    steps = int(round((TARGET_STROKE - width) / 2))  # each step adds 1 px on either side
    out = np.pad(ink, steps)  # room to grow: strokes on the crop's edge widen outwards too
    for step in range(steps):
        grown = out.copy()
        np.maximum(grown[1:], out[:-1], out=grown[1:])
        np.maximum(grown[:-1], out[1:], out=grown[:-1])
        np.maximum(grown[:, 1:], out[:, :-1], out=grown[:, 1:])
        np.maximum(grown[:, :-1], out[:, 1:], out=grown[:, :-1])
        if step % 2:  # diagonals every other step: an octagon, close to a round pen
            np.maximum(grown[1:, 1:], out[:-1, :-1], out=grown[1:, 1:])
            np.maximum(grown[:-1, :-1], out[1:, 1:], out=grown[:-1, :-1])
            np.maximum(grown[1:, :-1], out[:-1, 1:], out=grown[1:, :-1])
            np.maximum(grown[:-1, 1:], out[1:, :-1], out=grown[:-1, 1:])
        out = grown
    return out


def prepare(image: np.ndarray, name: str = "<array>", style: str = "mnist") -> np.ndarray:
    """A grayscale (H, W) or RGB(A) (H, W, 3|4) array of any size -> (28, 28) uint8 as in MNIST.

    style "mnist": fit the ink's bounding box into 20x20 (aspect kept), centre of mass at (14, 14)
    - LeCun's recipe; "fashion": fit into 28x28, centred by the box - Fashion-MNIST's.
    Raises DataError (naming ``name``) for an image with no ink.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        from PIL import Image

        a = _to_gray(Image.fromarray(a.astype(np.uint8), "RGBA" if a.shape[2] == 4 else "RGB"))
    if a.ndim != 2 or min(a.shape) < 1:
        raise DataError(f"{name}: expected a 2-D grayscale or (H, W, 3|4) colour image, got shape {a.shape}")
    if style not in ("mnist", "fashion"):
        raise ValueError(f"style: expected 'mnist' or 'fashion', got {style!r}")
    ink = _ink(a, name, local=style == "mnist")
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # the crop: the ink's bounding box
    box = 20 if style == "mnist" else SIZE
    if style == "mnist":
        # Two steps: to a 10x working scale, where a pen line is wide enough to measure and
        # thicken, then down to the box.
        ink = _fit(ink, WORK_SCALE * box)
        ink = thicken(ink)
    small = _fit(ink, box)
    if small.max() > 0:
        small *= 255.0 / small.max()  # MNIST strokes peak at full white
    h, w = small.shape
    if style == "mnist":
        # Centre of mass to pixel (14, 14) with an integer shift, as MNIST did, but never so far
        # that ink would fall off the field (a lopsided digit keeps all its strokes).
        mass = small.sum()
        cy = float((small.sum(axis=1) * np.arange(h)).sum() / mass)
        cx = float((small.sum(axis=0) * np.arange(w)).sum() / mass)
        top = min(max(int(round(SIZE // 2 - cy)), 0), SIZE - h)
        left = min(max(int(round(SIZE // 2 - cx)), 0), SIZE - w)
    else:
        top, left = (SIZE - h) // 2, (SIZE - w) // 2
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top:top + h, left:left + w] = small
    return np.rint(out).astype(np.uint8)


def load_image(path: str | os.PathLike, style: str = "mnist") -> np.ndarray:
    """Read an image file and prepare it MNIST-style: (28, 28) uint8, bright ink on black.

    Unreadable, corrupt or blank files raise DataError naming the file.
    """
    return prepare(read_gray(path), name=str(path), style=style)


# ---- predicting -------------------------------------------------------------------------
@dataclasses.dataclass
class Prediction:
    """One image's answer. ``top``: (class index, class name, probability), most likely first."""

    source: str
    image: np.ndarray  # the prepared (28, 28) uint8 input the model saw
    probabilities: np.ndarray  # (n_classes,) float
    top: list[tuple[int, str, float]]

    @property
    def predicted(self) -> int:
        return self.top[0][0]

    @property
    def label(self) -> str:
        return self.top[0][1]

    @property
    def probability(self) -> float:
        return self.top[0][2]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.source, "predicted": self.predicted, "label": self.label,
                "probability": self.probability,
                "top": [{"class": c, "label": n, "probability": p} for c, n, p in self.top]}


def style_for(dataset_name: str) -> str:
    """The preparation recipe that matches how a run's training images were made."""
    return "fashion" if "fashion" in dataset_name.lower() else "mnist"


def predict(run, images: Sequence[ImageLike], top: int = 3) -> list[Prediction]:
    """Predict every image (file paths, or arrays of any size) with a run (folder or Run).

    Arrays go through the same preparation as files, so pass what a camera or a canvas gives:
    (H, W) grayscale or (H, W, 3|4) colour, or a stack (N, H, W) / (N, H, W, 3|4) of them.
    """
    from mnistlab.runs import Run, load_run

    if not isinstance(run, Run):
        run = load_run(run)
    if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and (
            images.ndim == 2 or (images.ndim == 3 and images.shape[2] in (3, 4)))):
        images = [images]  # one image; an (N, H, W) or (N, H, W, C) array is N of them
    if len(images) == 0:
        raise DataError("no images given to predict")
    n_classes = len(run.class_names)
    if not 1 <= top <= n_classes:
        raise ValueError(f"top: expected 1..{n_classes}, got {top}")
    style = style_for(run.dataset_name)
    names, prepared = [], []
    for i, item in enumerate(images):
        if isinstance(item, np.ndarray):
            names.append(f"<array {i}>")
            prepared.append(prepare(item, names[-1], style))
        else:
            names.append(str(item))
            prepared.append(load_image(item, style))
    x = np.stack(prepared)
    proba = run.predict_proba(x)
    if not np.all(np.isfinite(proba)):
        raise RunError(f"{Path(run.path) / 'model.safetensors'}: the model predicts NaN/inf "
                       "probabilities (training diverged?); retrain it before predicting")
    out = []
    for name, img, p in zip(names, prepared, proba):
        order = np.argsort(-p, kind="stable")[:top]  # stable: ties go to the lower class index
        out.append(Prediction(name, img, p.astype(np.float64),
                              [(int(c), run.class_names[c], float(p[c])) for c in order]))
    return out


# ---- showing ----------------------------------------------------------------------------
def show(predictions: Sequence[Prediction], class_names: Sequence[str], path) -> Path:
    """A PNG: per image, the prepared 28x28 input (what the model saw) beside its probabilities."""
    from mnistlab import plots

    n = len(predictions)
    fig = plots._figure(7.0, 1.9 * n + 0.3)
    grid = fig.add_gridspec(n, 2, width_ratios=[1, 2.6])
    k = np.arange(len(class_names))
    short = plots._short(class_names)
    for i, pred in enumerate(predictions):
        ax = fig.add_subplot(grid[i, 0])
        ax.imshow(pred.image, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(Path(pred.source).name if not pred.source.startswith("<") else pred.source,
                     fontsize=8)
        bars = fig.add_subplot(grid[i, 1])
        colors = ["#4477aa"] * len(k)
        colors[pred.predicted] = "#ee7733"
        bars.bar(k, pred.probabilities, color=colors)
        bars.set_ylim(0, 1.05)
        bars.set_xticks(k, short, fontsize=7, rotation=30 if max(map(len, short)) > 2 else 0)
        bars.set_ylabel("probability", fontsize=8)
        bars.set_title(f"predicted {pred.label} ({pred.probability:.1%})", fontsize=9)
    return plots._save(fig, path)


def print_predictions(predictions: Sequence[Prediction], console=None) -> None:
    """A rich table: file, predicted class, its probability, the top-k."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title="Predictions")
    t.add_column("file", overflow="fold")  # a long path folds onto more lines, never "..."
    t.add_column("predicted")
    t.add_column("probability", justify="right")
    t.add_column(f"top {len(predictions[0].top)}")
    for p in predictions:
        t.add_row(p.source, _class(p.predicted, p.label), f"{p.probability:.4f}",
                  ", ".join(f"{_class(c, n)} {q:.3f}" for c, n, q in p.top))
    console.print(t)


def _class(index: int, name: str) -> str:
    """'7' for digits, '9 (Ankle boot)' where the name is not the index."""
    return name if name == str(index) else f"{index} ({name})"


_verbs.make_callable(__name__)  # mnistlab.predict(...) is predict.predict(...)
