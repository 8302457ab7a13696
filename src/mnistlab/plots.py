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


def predictions(
    images, probabilities, titles: Sequence[str], class_names: Sequence[str], path
) -> Path:
    """Per image, the prepared 28x28 input (what the model saw) beside its probability bars; the
    most likely class in orange."""
    n = len(images)
    fig = _figure(7.0, 1.9 * n + 0.3)
    grid = fig.add_gridspec(n, 2, width_ratios=[1, 2.6])
    k = np.arange(len(class_names))
    short = _short(class_names)
    for i, (img, p, title) in enumerate(zip(images, probabilities, titles)):
        p = np.asarray(p, dtype=np.float64)
        best = int(np.argmax(p))
        ax = fig.add_subplot(grid[i, 0])
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=8)
        bars = fig.add_subplot(grid[i, 1])
        colors = ["#4477aa"] * len(k)
        colors[best] = "#ee7733"
        bars.bar(k, p, color=colors)
        bars.set_ylim(0, 1.05)
        bars.set_xticks(k, short, fontsize=7, rotation=30 if max(map(len, short)) > 2 else 0)
        bars.set_ylabel("probability", fontsize=8)
        bars.set_title(f"predicted {class_names[best]} ({p[best]:.1%})", fontsize=9)
    return _save(fig, path)
