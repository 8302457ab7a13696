"""Figures for explore and evaluate: one function per PNG, each writes its file atomically.

matplotlib is imported inside the functions (it costs ~0.4 s) and only through the object API
(``Figure`` + the Agg canvas), so nothing here touches pyplot's global state or the user's backend.

>>> import numpy as np, tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "balance.png"
>>> counts = np.arange(10) + 5
>>> class_balance(counts, counts, [str(i) for i in range(10)], out).name
'balance.png'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mnistlab.fsio import atomic_path

DPI = 110


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, path):
    """Write ``fig`` as PNG to ``path`` (atomically), or into a binary file object such as
    io.BytesIO (how the HTML report embeds figures without touching the disk)."""
    if hasattr(path, "write"):
        fig.savefig(path, format="png", dpi=DPI)
        return path
    path = Path(path)
    with atomic_path(path) as tmp:
        # The temp file ends in .tmp, so the format must be named explicitly.
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _short(names: Sequence[str], width: int = 11) -> list[str]:
    """Class names trimmed to fit under a bar or a thumbnail ("Ankle boot" fits, long ones
    get ...)."""
    return [n if len(n) <= width else n[: width - 1] + "\u2026" for n in names]


def class_balance(
    train_counts, test_counts, class_names: Sequence[str], path, title: str = "Class balance"
) -> Path:
    """Grouped bars: share of each class in train and test (counts written on the bars' tops)."""
    train_counts = np.asarray(train_counts, dtype=np.int64)
    test_counts = np.asarray(test_counts, dtype=np.int64)
    k = np.arange(len(class_names))
    fig = _figure(max(7.0, 0.75 * len(k)), 4.2)
    ax = fig.add_subplot()
    w = 0.4
    for offset, counts, label, color in (
        (-w / 2, train_counts, "train", "#4477aa"),
        (w / 2, test_counts, "test", "#ee7733"),
    ):
        share = 100.0 * counts / max(int(counts.sum()), 1)
        bars = ax.bar(
            k + offset, share, width=w, label=f"{label} (n={int(counts.sum()):,})", color=color
        )
        ax.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=6, rotation=90, padding=2)
    ax.axhline(100.0 / len(k), color="gray", lw=0.8, ls="--", label="uniform")
    ax.set_xticks(
        k,
        _short(class_names),
        rotation=30 if max(map(len, class_names)) > 2 else 0,
        ha="right" if max(map(len, class_names)) > 2 else "center",
    )
    ax.set_xlabel("class")
    ax.set_ylabel("share of split (%)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15)  # room for the count labels
    ax.set_title(title)
    fig.legend(
        loc="outside lower center", ncols=3, fontsize=8, frameon=False
    )  # never over the bars
    return _save(fig, path)


def pixel_histogram(
    hist_train,
    hist_test,
    path,
    title: str = "Pixel intensity distribution",
    note: str | None = None,
) -> Path:
    """Share of pixels at each of the 256 intensities, log y: most pixels are exactly 0.
    ``note`` (e.g. the mean/std) is written in a box at the top centre."""
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    v = np.arange(256)
    for hist, label, color in ((hist_train, "train", "#4477aa"), (hist_test, "test", "#ee7733")):
        hist = np.asarray(hist, dtype=np.float64)
        ax.step(v, hist / hist.sum(), where="mid", label=label, color=color, lw=1.0)
    ax.set_yscale("log")
    ax.set_xlim(-2, 257)
    ax.set_xlabel("pixel value (0 = background, 255 = ink)")
    ax.set_ylabel("share of all pixels (log scale)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    if note:
        ax.text(
            0.5,
            0.96,
            note,
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=9,
            bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"},
        )
    return _save(fig, path)


def pixel_mean_std(
    mean_img, std_img, path, title: str = "Per-pixel statistics over the training set"
) -> Path:
    """Two heat maps side by side (mean, std of every pixel position) with colorbars in pixel
    units."""
    fig = _figure(8.0, 3.8)
    for i, (img, name) in enumerate(((mean_img, "mean"), (std_img, "std"))):
        ax = fig.add_subplot(1, 2, i + 1)
        im = ax.imshow(np.asarray(img), cmap="magma", vmin=0)
        ax.set_title(f"per-pixel {name}")
        ax.set_xlabel("column")
        ax.set_ylabel("row")
        fig.colorbar(im, ax=ax, shrink=0.85, label="pixel value (0-255)")
    fig.suptitle(title)
    return _save(fig, path)


def _mosaic(tiles: np.ndarray, pad: int = 2, pad_top: int = 0) -> np.ndarray:
    """(R, C, H, W) tiles -> one image with blank (0) gutters of ``pad`` pixels between tiles and
    ``pad_top`` above every row (room for labels). Tile (r, c) starts at row
    r*(H+pad+pad_top)+pad_top, column c*(W+pad).

    One imshow of a mosaic renders ~10x faster than a hundred small axes."""
    r, c, h, w = tiles.shape
    out = np.zeros((r, pad_top + h + pad, c, w + pad), dtype=tiles.dtype)
    out[:, pad_top : pad_top + h, :, :w] = tiles.transpose(0, 2, 1, 3)
    return out.reshape(r * (pad_top + h + pad), c * (w + pad))[
        : r * (pad_top + h + pad) - pad, : c * (w + pad) - pad
    ]


def class_means(
    means, class_names: Sequence[str], path, title: str = "Mean image of each class"
) -> Path:
    """One averaged image per class (2 rows of 5 for 10 classes), on a shared 0-255 scale so the
    classes compare; the class name sits above each image."""
    means = np.asarray(means, dtype=np.float64)
    n, h, w = means.shape
    cols = 5 if n > 5 else n
    rows = -(-n // cols)
    tiles = np.zeros((rows * cols, h, w))
    tiles[:n] = means
    pad = 4
    mosaic = _mosaic(tiles.reshape(rows, cols, h, w), pad=pad)
    fig = _figure(1.6 * cols + 0.3, 1.75 * rows + 0.5)
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255)
    ax.set_axis_off()
    for i, name in enumerate(_short(class_names, 14)):
        r, c = divmod(i, cols)
        ax.text(
            c * (w + pad) + w / 2, r * (h + pad) - 0.5, name, ha="center", va="bottom", fontsize=9
        )
    ax.set_ylim(mosaic.shape[0] - 0.5, -5)  # room above the first row for its names
    ax.set_title(title)
    return _save(fig, path)


def sample_grid(
    samples, class_names: Sequence[str], path, title: str = "Random training samples per class"
) -> Path:
    """A row per class of ``samples`` (C, k, H, W) uint8, with the class name at the row's start."""
    samples = np.asarray(samples)
    c, k, h, w = samples.shape
    pad = 2
    mosaic = _mosaic(samples, pad=pad)
    fig = _figure(1.4 + 0.62 * k, 0.62 * c + 0.6)
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([r * (h + pad) + h / 2 for r in range(c)], _short(class_names, 14), fontsize=9)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(title)
    return _save(fig, path)


def confusion_matrix(cm, class_names: Sequence[str], path, title: str = "Confusion matrix") -> Path:
    """Counts in every cell; colour = share of the true class, log-scaled so that mistakes
    (off-diagonal, usually < 2 %) stay visible next to a ~98 % diagonal."""
    from matplotlib.colors import LogNorm

    cm = np.asarray(cm, dtype=np.int64)
    n = len(cm)
    rows = cm.sum(axis=1, keepdims=True)
    share = cm / np.maximum(rows, 1)
    shown = np.where(cm > 0, share, np.nan)  # empty cells stay white
    size = max(5.5, 0.6 * n + 2.5)
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot()
    positive = share[cm > 0]
    vmin = max(float(positive.min()) if positive.size else 1e-4, 1e-4)
    im = ax.imshow(shown, cmap="Blues", norm=LogNorm(vmin=vmin, vmax=1.0))
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class (log)")
    fontsize = 8 if n <= 10 else 6
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                dark = shown[i, j] > 0.3
                ax.text(
                    j,
                    i,
                    f"{cm[i, j]}",
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if dark else "black",
                )
    names = _short(class_names)
    long = max(map(len, names)) > 2
    ax.set_xticks(range(n), names, rotation=45 if long else 0, ha="right" if long else "center")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return _save(fig, path)


def misclassified_grid(
    images, true, pred, prob, class_names: Sequence[str], path, title: str = "Misclassified"
) -> Path:
    """Thumbnails of wrong predictions, each labelled 'true X' / 'pred Y p' (p = predicted
    probability; ``prob`` None: predicted labels alone, no p)."""
    images = np.asarray(images)
    n = len(images)
    cols = min(8, max(n, 1))
    rows = max(1, -(-n // cols))
    h, w = images.shape[1:] if n else (28, 28)
    tiles = np.zeros((rows * cols, h, w), dtype=images.dtype if n else np.uint8)
    tiles[:n] = images
    pad, top = 4, 14  # top: two lines of 7-pt text above every thumbnail
    mosaic = _mosaic(tiles.reshape(rows, cols, h, w), pad=pad, pad_top=top)
    width = 1.4 * cols + 0.2
    fig = _figure(width, width * mosaic.shape[0] / mosaic.shape[1] + 0.5)  # tight around the mosaic
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255)
    ax.set_axis_off()
    names = _short(class_names, 11)
    for i in range(n):
        r, c = divmod(i, cols)
        ax.text(
            c * (w + pad) + w / 2,
            r * (top + h + pad) + top - 1,
            f"true {names[int(true[i])]}\npred {names[int(pred[i])]}"
            + ("" if prob is None else f" {prob[i]:.2f}"),
            ha="center",
            va="bottom",
            fontsize=7,
            color="#aa2222",
            linespacing=1.1,
        )
    if n == 0:
        ax.text(mosaic.shape[1] / 2, mosaic.shape[0] / 2, "no mistakes", ha="center", va="center")
    ax.set_title(title)
    return _save(fig, path)


def learning_curve(
    history, key: str, path, title: str, ylabel: str, log: bool | None = None
) -> Path:
    """One panel of a run's history, per epoch: ``key`` for training and ``val_<key>`` for
    validation when present (``key="learning_rate"`` draws the one schedule line). Missing or
    non-finite values (a diverged loss) leave a gap; ``log=None`` picks a log axis when the
    values span more than two decades, as an exploded loss does."""
    epochs = np.array([row["epoch"] for row in history], dtype=np.float64)

    def column(name):
        return np.array(
            [np.nan if row.get(name) is None else row[name] for row in history], dtype=np.float64
        )

    series = [(key, "train" if key != "learning_rate" else "learning rate", "#4477aa")]
    if key != "learning_rate" and any(row.get(f"val_{key}") is not None for row in history):
        series.append((f"val_{key}", "validation", "#ee7733"))
    fig = _figure(4.6, 3.2)
    ax = fig.add_subplot()
    finite = []
    for name, label, color in series:
        y = column(name)
        ok = np.isfinite(y)
        finite.append(y[ok])
        ax.plot(epochs[ok], y[ok], marker="o", ms=4, lw=1.5, label=label, color=color)
    values = np.concatenate(finite) if finite else np.zeros(0)
    positive = values[values > 0]
    if log is None:
        log = positive.size > 1 and positive.max() / positive.min() > 100
    if log and positive.size:
        ax.set_yscale("log")
    elif key == "learning_rate" and values.size:
        ax.set_ylim(0, values.max() * 1.15)  # a 1e-6 decay must look as flat as it is
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if len(epochs):
        ax.set_xticks(np.unique(epochs) if len(epochs) <= 12 else ax.get_xticks())
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


def per_class_bars(
    per_class: dict, path, title: str = "Precision, recall and F1 per class"
) -> Path:
    """Grouped bars of precision, recall and F1 for every class. The axis starts a little below
    the lowest value (and says so): on a good model all bars sit near 1, and the differences
    between classes are what the figure is for."""
    names = list(per_class)
    k = np.arange(len(names))
    metrics = (("precision", "#4477aa"), ("recall", "#ee7733"), ("f1", "#228833"))
    values = np.array([[per_class[n][m] for n in names] for m, _ in metrics], dtype=np.float64)
    low = float(np.floor(max(0.0, values.min() - 0.05) * 10) / 10)
    fig = _figure(max(6.5, 0.62 * len(names) + 1.5), 3.6)
    ax = fig.add_subplot()
    w = 0.27
    for i, (m, color) in enumerate(metrics):
        ax.bar(k + (i - 1) * w, values[i] - low, width=w, bottom=low, label=m, color=color)
    ax.set_ylim(low, 1.0)
    ax.set_xticks(
        k,
        _short(names),
        rotation=30 if max(map(len, names)) > 2 else 0,
        ha="right" if max(map(len, names)) > 2 else "center",
    )
    ax.set_xlabel("class")
    ax.set_ylabel("score" + (f" (axis starts at {low:g})" if low > 0 else ""))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    return _save(fig, path)


def variant_accuracy(
    names: Sequence[str], val, test, path, title: str = "Accuracy per variant"
) -> Path:
    """Horizontal mean +- std bars of validation and test accuracy per variant (the first name
    on top), with every seed's run as a small dot. ``val`` and ``test``: per variant a
    (mean, std, per-seed values) triple; a None mean leaves that marker out."""
    n = len(names)
    fig = _figure(5.0, 0.5 * n + 1.5)  # narrow: it stays legible on a phone
    ax = fig.add_subplot()
    y = np.arange(n)[::-1].astype(np.float64)
    for offset, data, label, color, marker in (
        (0.14, val, "validation (ranks)", "#4477aa", "o"),
        (-0.14, test, "test (reported)", "#ee7733", "s"),
    ):
        for yi, (mean, std, seeds) in zip(y, data):
            pts = [s for s in seeds if s is not None]
            if pts:
                ax.plot(pts, [yi + offset] * len(pts), ".", color=color, alpha=0.45, ms=5)
            if mean is not None:
                ax.errorbar(
                    mean,
                    yi + offset,
                    xerr=std or 0.0,
                    fmt=marker,
                    color=color,
                    ms=6,
                    capsize=3,
                    label=label,
                )
                label = None  # once in the legend
    ax.set_yticks(y, _short(names, 22))
    ax.set_xlabel("accuracy (mean \u00b1 std over seeds; dots: single runs)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title)
    fig.legend(loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return _save(fig, path)


PREDICTIONS_SHOWN = 40  # images in one predictions figure (each is two axes: ~0.1 s apiece)


def predictions(
    images, probabilities, titles: Sequence[str], class_names: Sequence[str], path, steps=None
) -> Path:
    """Per image, the prepared 28x28 input (what the model saw) beside its probability bars; the
    most likely class in orange. The first ``PREDICTIONS_SHOWN`` images, in two columns past
    eight, with fixed margins: constrained layout's time grows faster than the axes do (500
    images took over 11 minutes), this one's linearly and boundedly. ``steps``: per image, its
    preparation's steps (``imageprep``'s ``Step`` list, drawn by ``preparation_strip`` in place
    of the 28x28), or None."""
    from matplotlib.figure import Figure

    total, n = len(images), min(len(images), PREDICTIONS_SHOWN)
    strips = list(steps)[:n] if steps is not None else [None] * n
    wide = any(strips)
    cols = 1 if n <= 8 else 2
    rows = -(-n // cols)
    height = (2.3 if wide else 2.0) * rows + (0.8 if total > n else 0.4)
    fig = Figure(figsize=((11.0 if wide else 7.0) * cols, height), dpi=DPI)
    grid = fig.add_gridspec(
        rows,
        2 * cols,
        width_ratios=([4.4, 2.6] if wide else [1, 2.6]) * cols,
        left=0.02,
        right=0.98,
        bottom=0.45 / height,
        top=1 - (0.65 if total > n else 0.3) / height,
        hspace=0.7,
        wspace=0.35,
    )
    if total > n:
        fig.suptitle(f"the first {n} of {total} images", fontsize=10, y=1 - 0.15 / height, va="top")
    k = np.arange(len(class_names))
    short = _short(class_names)
    for i, (img, p, title) in enumerate(zip(images[:n], probabilities[:n], titles[:n])):
        p = np.asarray(p, dtype=np.float64)
        best = int(np.argmax(p))
        row, col = divmod(i, cols)
        if strips[i]:
            preparation_strip(fig, grid[row, 2 * col], strips[i])
        else:
            ax = fig.add_subplot(grid[row, 2 * col])
            ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
        bars = fig.add_subplot(grid[row, 2 * col + 1])
        colors = ["#4477aa"] * len(k)
        colors[best] = "#ee7733"
        bars.bar(k, p, color=colors)
        bars.set_ylim(0, 1.05)
        bars.set_xticks(k, short, fontsize=7, rotation=30 if max(map(len, short)) > 2 else 0)
        bars.set_ylabel("probability", fontsize=8)
        said = f"predicted {class_names[best]} ({p[best]:.1%})"
        bars.set_title(f"{title}\n{said}" if strips[i] else said, fontsize=9)
    return _save(fig, path)


# ---- inside a network ---------------------------------------------------------------------
# A diverging scale for signed values (weights, attributions): blue below 0, white at 0, red
# above (the ends of ColorBrewer's RdBu), linear in between; by hand, so drawing one needs no
# matplotlib (the draw page answers in milliseconds).
_DIVERGING = np.array(
    [[5, 48, 97], [67, 147, 195], [247, 247, 247], [214, 96, 77], [103, 0, 31]], np.float64
)


def diverging_rgb(values, limit: float | None = None) -> np.ndarray:
    """Signed ``values`` (any shape) -> uint8 RGB (..., 3): 0 white, +-``limit`` (default the
    largest magnitude) the darkest red / blue.

    >>> diverging_rgb(np.array([-1.0, 0.0, 1.0])).tolist()
    [[5, 48, 97], [247, 247, 247], [103, 0, 31]]
    """
    v = np.asarray(values, np.float64)
    limit = float(np.abs(v).max(initial=0.0)) if limit is None else float(limit)
    t = np.clip(v / limit, -1.0, 1.0) if limit > 0 else np.zeros_like(v)
    pos = (t + 1.0) * 2.0  # 0..4 over the five stops
    lo = np.clip(np.floor(pos).astype(int), 0, 3)
    frac = (pos - lo)[..., None]
    rgb = _DIVERGING[lo] * (1.0 - frac) + _DIVERGING[lo + 1] * frac
    return np.rint(rgb).astype(np.uint8)


_RED, _BLUE = np.array([202.0, 0.0, 32.0]), np.array([5.0, 113.0, 176.0])


def attribution_rgb(image, values, limit: float | None = None) -> np.ndarray:
    """A digit (H, W) grey levels, bright ink on black, with signed per-pixel ``values`` laid
    over it: the digit in light grey on white, each pixel tinted red (pushed the class up) or
    blue (down) as strongly as its value (0 .. ``limit``, default the 99th percentile of the
    magnitudes, so that one pixel does not wash out all the others)."""
    v = np.asarray(values, np.float64)
    if limit is None:
        limit = float(np.percentile(np.abs(v), 99)) if v.size else 0.0
    base = 255.0 - 0.3 * np.asarray(image, np.float64)
    alpha = (
        np.clip(np.abs(v) / limit, 0.0, 1.0)[..., None] if limit > 0 else np.zeros((*v.shape, 1))
    )
    colour = np.where(v[..., None] > 0, _RED, _BLUE)
    out = base[..., None] * (1.0 - alpha) + colour * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def save_rgb(rgb: np.ndarray, path, scale: int = 1):
    """An RGB uint8 array as a PNG (each pixel a ``scale`` x ``scale`` block) at ``path``,
    atomically, or into a binary file object; no matplotlib."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb.repeat(scale, 0).repeat(scale, 1)))
    # zlib's fastest level: weights are noise to it, and its best level takes ~40x longer for
    # a few percent less
    if hasattr(path, "write"):
        image.save(path, format="PNG", compress_level=1)
        return path
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=1)
    return path


def templates(weights, order, dead, path, cols: int = 16) -> Path:
    """The first layer's units as images in ``order`` (left to right, top to bottom), each on
    its own diverging scale (white 0, red positive, blue negative); a unit in ``dead`` (never
    active) is grey with a diagonal line. Drawn without matplotlib: one mosaic, ``cols`` wide."""
    w = np.asarray(weights, np.float64)[np.asarray(order)]
    dead = np.asarray(dead, bool)[np.asarray(order)]
    n, h, wd = w.shape
    cols = min(cols, n)
    rows = -(-n // cols)
    scale = 16 if h < 10 else 2  # a 3x3 filter as a visible block
    th, tw, pad = h * scale, wd * scale, 3
    mosaic = np.full((rows * (th + pad) + pad, cols * (tw + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        limit = float(np.abs(w[i]).max(initial=0.0)) or 1.0
        tile = diverging_rgb(w[i], limit).repeat(scale, 0).repeat(scale, 1)
        if dead[i]:
            tile = np.full_like(tile, 215)
            k = np.arange(min(th, tw))
            tile[k, k] = 110
        r, c = divmod(i, cols)
        top, left = pad + r * (th + pad), pad + c * (tw + pad)
        mosaic[top : top + th, left : left + tw] = tile
    return save_rgb(mosaic, path)


def embedding(points, labels, predicted, class_names, path, title: str, note: str = "") -> Path:
    """Digits as points coloured by their true class (tab10), the mistakes circled in black."""
    points = np.asarray(points)
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    fig = _figure(6.4, 5.2)
    ax = fig.add_subplot()
    from matplotlib import colormaps

    colors = colormaps["tab10"](labels % 10)
    ax.scatter(points[:, 0], points[:, 1], s=7, c=colors, linewidths=0, alpha=0.75)
    wrong = labels != predicted
    ax.scatter(
        points[wrong, 0],
        points[wrong, 1],
        s=42,
        facecolors="none",
        edgecolors="black",
        linewidths=0.8,
        label=f"mistakes ({int(wrong.sum())})",
    )
    for k, name in enumerate(_short(class_names, 8)):
        mine = labels == k
        if mine.any():  # the class's name at its points' median
            cx, cy = np.median(points[mine, 0]), np.median(points[mine, 1])
            ax.text(
                cx,
                cy,
                name,
                fontsize=11,
                weight="bold",
                ha="center",
                va="center",
                color=colormaps["tab10"](k % 10),
                path_effects=_halo(),
            )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8, frameon=True)
    ax.set_title(title, fontsize=10)
    if note:
        ax.set_xlabel(note, fontsize=8)
    return _save(fig, path)


def _halo():
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=3, foreground="white")]


def robustness(result: dict, path, title: str = "Where it breaks") -> Path:
    """The robustness card: accuracy per corruption over its severities (0 = clean), the worst
    three drawn thick, and accuracy under FGSM over epsilon."""
    from matplotlib import colormaps

    fig = _figure(10.0, 4.2)
    left, right = fig.subplots(1, 2, width_ratios=[1.5, 1])
    clean = result["clean_accuracy"]
    cmap = colormaps["tab20"]
    for k, (name, c) in enumerate(result["corruptions"].items()):
        y = [clean, *c["accuracy"]]
        worst = name in result["worst"]
        left.plot(
            range(len(y)),
            y,
            marker="o",
            ms=3,
            lw=2.4 if worst else 1.0,
            color=cmap(k % 20),
            label=c["title"] + (" (worst)" if worst else ""),
        )
    left.set_xticks(range(4), ["clean", "1", "2", "3"])
    left.set_xlabel("severity")
    left.set_ylabel("accuracy")
    left.set_ylim(0, 1.02)
    left.grid(alpha=0.3)
    left.legend(fontsize=7, ncols=2, loc="lower left")
    left.set_title(f"corruptions (robust accuracy {result['robust_accuracy']:.1%})", fontsize=10)
    f = result["fgsm"]
    right.plot(f["epsilon"], f["accuracy"], marker="o", color="#cc3311")
    for e, a in zip(f["epsilon"], f["accuracy"]):
        right.annotate(f"{a:.0%}", (e, a), textcoords="offset points", xytext=(4, 4), fontsize=7)
    right.set_xlabel("epsilon (pixels scaled 0..1)")
    right.set_ylim(0, 1.02)
    right.grid(alpha=0.3)
    right.set_title("FGSM attack", fontsize=10)
    fig.suptitle(f"{title}: {result['n']:,} test images", fontsize=11)
    return _save(fig, path)


def preparation_strip(fig, cell, steps) -> None:
    """The steps of a digit's preparation side by side in ``cell`` (a SubplotSpec of ``fig``):
    each step's image with its title; the input as the eye sees it, the others bright ink on
    black; where the digit was placed, its box and centre of mass."""
    grid = cell.subgridspec(1, len(steps), wspace=0.08)
    for k, step in enumerate(steps):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(step.image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        if step.box is not None:
            top, left, h, w = step.box
            ax.add_patch(_rectangle(left - 0.5, top - 0.5, w, h))
        if step.centre is not None:
            ax.plot(step.centre[1], step.centre[0], "+", color="#ee3377", ms=9, mew=1.5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(step.title, fontsize=6.5, wrap=True)


def _rectangle(x, y, w, h):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor="#33bbee", lw=1)


def search_history(numbers, values, states, path, title: str = "Validation accuracy per trial"):
    """A search over time: each trial's validation accuracy by trial number (complete trials as
    dots, pruned ones as crosses at the last epoch they reached, failed ones left out), and the
    best complete trial so far as a step line. ``values``: None where a trial has none."""
    numbers = np.asarray(numbers, dtype=np.float64)
    y = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    states = np.asarray(states)
    fig = _figure(4.8, 3.3)
    ax = fig.add_subplot()
    for state, marker, color, label in (
        ("COMPLETE", "o", "#4477aa", "complete"),
        ("PRUNED", "x", "#bbbbbb", "pruned (last epoch)"),
    ):
        pick = (states == state) & np.isfinite(y)
        if pick.any():
            ax.plot(numbers[pick], y[pick], marker, color=color, ms=5, label=label, ls="none")
    done = (states == "COMPLETE") & np.isfinite(y)
    if done.any():
        order = np.argsort(numbers[done], kind="stable")
        best = np.maximum.accumulate(y[done][order])
        ax.step(numbers[done][order], best, where="post", color="#ee7733", label="best so far")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def trial_curves(curves, path, title: str = "Validation accuracy per epoch"):
    """Every trial's validation accuracy epoch by epoch: ``curves`` maps a trial number to
    (state, [accuracy per epoch]); pruned trials in grey, where the pruner stopped them, the
    best complete trial in orange."""
    fig = _figure(4.8, 3.3)
    ax = fig.add_subplot()
    complete = {n: c for n, (s, c) in curves.items() if s == "COMPLETE" and c}
    best = max(complete, key=lambda n: (complete[n][-1], -n), default=None)
    for n, (state, accs) in sorted(curves.items()):
        if not accs or n == best:
            continue
        grey = state != "COMPLETE"
        ax.plot(
            np.arange(1, len(accs) + 1), accs, color="#bbbbbb" if grey else "#4477aa",
            lw=1.0, alpha=0.7 if grey else 0.8, marker="o", ms=2.5,
        )  # fmt: skip
    if best is not None:
        accs = complete[best]
        ax.plot(np.arange(1, len(accs) + 1), accs, color="#ee7733", lw=2, marker="o", ms=3.5,
                label=f"best: trial {best}")  # fmt: skip
        ax.legend(fontsize=8, loc="lower right")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    return _save(fig, path)


def param_importance(importances: dict, path, title: str = "Parameter importance"):
    """Horizontal bars of each searched field's importance (shares summing to 1), the most
    important on top."""
    names = list(importances)
    values = np.array([importances[n] for n in names], dtype=np.float64)
    fig = _figure(4.8, 0.42 * len(names) + 1.3)
    ax = fig.add_subplot()
    y = np.arange(len(names))[::-1]
    bars = ax.barh(y, values, color="#4477aa")
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8, padding=2)
    ax.set_yticks(y, _short(names, 22))
    ax.set_xlim(0, max(1.0, float(values.max(initial=0)) * 1.15))
    ax.set_xlabel("share of the validation accuracy's variance (fANOVA)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title)
    return _save(fig, path)
