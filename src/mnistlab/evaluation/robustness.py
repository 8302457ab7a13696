"""Where a trained run breaks: its accuracy on test digits that are corrupted the ways MNIST-C
corrupts them (Mu & Gilmer 2019), and under the fast gradient sign attack (FGSM, Goodfellow et
al. 2015): the robustness card.

The corruptions are made here, from the test images and a seed, never downloaded: each is a
function of the images, a severity (1 mild .. 3 strong, its parameter in ``CORRUPTIONS``) and a
generator seeded by (seed, corruption, severity), so the same card comes out every time, and two
runs are scored on the very same corrupted images (what a paired comparison needs). FGSM moves
every pixel by epsilon (pixels scaled 0..1) in the direction that raises the loss of the true
class, the gradient taken by hand on the run's weights (``evaluation.inside``); the attacked
images are rounded to grey levels like any image. Accuracies come from the run's own engine.

Cost is bounded: the card uses a seeded subset of the test set (``IMAGES``, 2,000 by default).

>>> x = np.zeros((2, 28, 28), np.uint8); x[:, 8:20, 12:16] = 255
>>> a = corrupt(x, "rotate", 3, seed=0)
>>> a.shape, a.dtype, bool((a == corrupt(x, "rotate", 3, seed=0)).all())
((2, 28, 28), dtype('uint8'), True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from mnistlab import plots
from mnistlab.errors import MnistlabError
from mnistlab.evaluation import inside
from mnistlab.evaluation.evaluate import split_data
from mnistlab.rundir import Run, load_run, update_metrics

IMAGES = 2000  # test images the card uses by default (a seeded subset)
EPSILONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # FGSM steps, pixels scaled 0..1
SIDE = 28
FIGURE = "robustness.png"


# ---- the corruptions ------------------------------------------------------------------------
def _affine(x: np.ndarray, matrices: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each image mapped by its own 2x2 matrix about the centre, then shifted (rows, cols):
    output pixel p samples the input at M^-1 (p - c - shift) + c, bilinear, black outside."""
    from scipy import ndimage

    n = len(x)
    c = (SIDE - 1) / 2
    rows, cols = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    q = np.stack([rows - c, cols - c])[None] - shifts[:, :, None, None]  # (n, 2, S, S)
    inv = np.linalg.inv(matrices)  # (n, 2, 2)
    src = np.einsum("nij,njhw->nihw", inv, q) + c
    index = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], (n, SIDE, SIDE))
    coords = np.stack([index, src[:, 0], src[:, 1]])
    return ndimage.map_coordinates(x, coords, order=1, mode="constant", cval=0.0)


def _signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random(n) < 0.5, -1.0, 1.0)


def _rotate(x, degrees, rng):
    t = np.radians(degrees) * _signs(rng, len(x))
    m = np.stack([np.stack([np.cos(t), -np.sin(t)], 1), np.stack([np.sin(t), np.cos(t)], 1)], 1)
    return _affine(x, m, np.zeros((len(x), 2)))


def _shear(x, factor, rng):
    m = np.tile(np.eye(2), (len(x), 1, 1))
    m[:, 1, 0] = factor * _signs(rng, len(x))  # columns move in proportion to the row
    return _affine(x, m, np.zeros((len(x), 2)))


def _scale(x, factor, rng):
    return _affine(x, np.tile(np.eye(2) * factor, (len(x), 1, 1)), np.zeros((len(x), 2)))


def _translate(x, pixels, rng):
    angle = rng.uniform(0, 2 * np.pi, len(x))
    return _affine(
        x, np.tile(np.eye(2), (len(x), 1, 1)), pixels * np.stack([np.sin(angle), np.cos(angle)], 1)
    )


def _shot_noise(x, photons, rng):
    """Photon noise: each pixel's light counted as Poisson(photons at full white)."""
    return rng.poisson(x / 255.0 * photons) / photons * 255.0


def _blur(x, sigma, rng):
    from scipy import ndimage

    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="constant")


def _brightness(x, lift, rng):
    return x + lift * 255.0


def _contrast(x, factor, rng):
    mean = x.mean(axis=(1, 2), keepdims=True)
    return (x - mean) * factor + mean


def _fog(x, strength, rng):
    """A smooth random haze (noise on a coarse 4x4 and 7x7 grid, upsampled) over the digit,
    the digit dimmed to keep the brightest pixel in range, as MNIST-C's fog does."""
    from scipy import ndimage

    haze = np.zeros_like(x)
    for cells, weight in ((4, 0.6), (7, 0.4)):
        coarse = rng.random((len(x), cells, cells))
        haze += (
            weight * ndimage.zoom(coarse, (1, SIDE / cells, SIDE / cells), order=1)[:, :SIDE, :SIDE]
        )
    return (x + strength * 255.0 * haze) / (1.0 + strength)


def _lines(x, kind: str, count: int, rng) -> np.ndarray:
    """Bright lines drawn over each image (at 4x, then reduced: anti-aliased): "stripes"
    (parallel lines every ``count`` px, horizontal or vertical), "zigzag" or "dotted" (``count``
    lines each, from one edge to another)."""
    from PIL import Image, ImageDraw

    big = SIDE * 4
    out = np.empty_like(x)
    for i in range(len(x)):
        canvas = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(canvas)
        if kind == "stripes":
            vertical, phase = rng.random() < 0.5, rng.integers(0, count)
            for at in range(int(phase), SIDE, count):
                xy = [(at * 4, 0), (at * 4, big)] if vertical else [(0, at * 4), (big, at * 4)]
                draw.line(xy, fill=255, width=4)
        else:
            for _ in range(count):
                (r0, r1), (c0, c1) = rng.uniform(0, big, (2, 2))
                if rng.random() < 0.5:
                    c0, c1 = 0.0, float(big)
                else:
                    r0, r1 = 0.0, float(big)
                t = np.linspace(0, 1, 7 if kind == "zigzag" else 14)
                pts = np.stack([c0 + (c1 - c0) * t, r0 + (r1 - r0) * t], 1)
                if kind == "zigzag":
                    normal = np.array([-(r1 - r0), c1 - c0]) / np.hypot(r1 - r0, c1 - c0)
                    pts += np.outer(np.where(np.arange(len(t)) % 2, 12.0, -12.0), normal)
                    draw.line([tuple(p) for p in pts], fill=255, width=4)
                else:
                    for p in pts:
                        draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=255)
        lines = np.asarray(canvas.resize((SIDE, SIDE), Image.Resampling.BOX), np.float64)
        out[i] = np.maximum(x[i], lines)
    return out


@dataclasses.dataclass(frozen=True)
class Corruption:
    """One corruption: its name, what it does, its parameter at severities 1, 2, 3, and how a
    parameter reads (``form``, e.g. "{} degrees either way")."""

    name: str
    title: str
    form: str
    levels: tuple[float, float, float]
    fn: Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]

    def describe(self, severity: int) -> str:
        return self.form.format(f"{self.levels[severity - 1]:g}")


def _drawn(kind: str):
    return lambda x, k, rng: _lines(x, kind, int(k), rng)


CORRUPTIONS = {
    c.name: c
    for c in (
        Corruption("shot_noise", "shot noise", "{} photons at white", (25, 10, 4), _shot_noise),
        Corruption("blur", "Gaussian blur", "sigma {} px", (0.8, 1.2, 1.8), _blur),
        Corruption("rotate", "rotation", "{} degrees either way", (15, 30, 45), _rotate),
        Corruption("shear", "shear", "shear {} either way", (0.2, 0.4, 0.6), _shear),
        Corruption("scale", "scale", "{} times the size", (0.8, 0.65, 0.5), _scale),
        Corruption("translate", "translation", "{} px any way", (2, 4, 6), _translate),
        Corruption("brightness", "brightness", "+{} of white", (0.2, 0.4, 0.6), _brightness),
        Corruption("contrast", "contrast", "{} times the contrast", (0.5, 0.3, 0.15), _contrast),
        Corruption("stripes", "stripes", "lines {} px apart", (9, 6, 4), _drawn("stripes")),
        Corruption("zigzag", "zigzag", "{} zigzag lines", (1, 2, 3), _drawn("zigzag")),
        Corruption("dotted_line", "dotted line", "{} dotted lines", (1, 2, 3), _drawn("dotted")),
        Corruption("fog", "fog", "fog {} of white", (0.4, 0.8, 1.5), _fog),
    )
}
SEVERITIES = (1, 2, 3)


def corrupt(images, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """``images`` (N, 28, 28) grey levels under corruption ``name`` at ``severity`` 1..3, as
    uint8; the same for the same (images, name, severity, seed)."""
    if name not in CORRUPTIONS:
        raise MnistlabError(f"corruption: expected one of {', '.join(CORRUPTIONS)}, got {name!r}")
    if severity not in SEVERITIES:
        raise MnistlabError(f"severity: expected 1, 2 or 3, got {severity!r}")
    c = CORRUPTIONS[name]
    k = list(CORRUPTIONS).index(name)
    rng = np.random.default_rng([seed, k, severity])
    x = np.asarray(images, np.float64)
    out = c.fn(x, c.levels[severity - 1], rng)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---- the attack -----------------------------------------------------------------------------
def fgsm(model, images, labels, epsilons=EPSILONS) -> dict[float, np.ndarray]:
    """The FGSM images of ``images`` (N, 28, 28) for each epsilon (pixels scaled 0..1): every
    pixel moved by epsilon along the sign of the loss gradient of its true label, clipped to
    0..1 and rounded to grey levels. ``model``: an ``inside.Model``."""
    x = np.asarray(images, np.float64)
    # The loss gradient in the model's standardized inputs has the sign of the gradient in
    # pixels (scaling by 1/std > 0 keeps signs).
    direction = np.sign(model.loss_gradients(model.inputs(x), labels)).reshape(x.shape)
    return {
        float(e): np.clip(np.rint(x + e * 255.0 * direction), 0, 255).astype(np.uint8)
        for e in epsilons
    }


# ---- the card -------------------------------------------------------------------------------
def subset(n_total: int, images: int = IMAGES, seed: int = 0) -> np.ndarray:
    """The indices of the ``images`` test images the card uses: all when there are fewer, else
    a seeded random choice in test-set order (MNIST's test set is easier in its first half, so
    the first N would flatter the model)."""
    if images >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng([seed, n_total]).choice(n_total, images, replace=False))


def corruption_hits(run, images, labels, seed: int = 0) -> np.ndarray:
    """Whether ``run`` classifies each corrupted image right: bool (corruptions, severities, N)
    in ``CORRUPTIONS`` and ``SEVERITIES`` order, the images made by ``corrupt`` with ``seed``.

    The per-image record a paired comparison of two runs needs: the same (images, seed) give
    the same corrupted images whatever the run."""
    y = np.asarray(labels)
    out = np.zeros((len(CORRUPTIONS), len(SEVERITIES), len(y)), bool)
    for i, name in enumerate(CORRUPTIONS):
        for j, severity in enumerate(SEVERITIES):
            x = corrupt(images, name, severity, seed)
            out[i, j] = run.finite_proba(x, before="measuring robustness").argmax(1) == y
    return out


def robust_scores(run, images, labels, seed: int = 0) -> np.ndarray:
    """Per image, the share of its corrupted versions (every corruption at every severity)
    ``run`` gets right, float (N,); its mean is the robust accuracy."""
    return corruption_hits(run, images, labels, seed).mean(axis=(0, 1))


def card(run, images: int = IMAGES, seed: int = 0) -> dict[str, Any]:
    """The robustness card of a loaded run on ``images`` test images (a seeded subset): clean
    accuracy, accuracy per corruption and severity, the robust accuracy (their mean), the worst
    three corruptions, and the FGSM accuracy per epsilon. JSON-ready."""

    if images < 1:
        raise MnistlabError(f"images: expected at least 1 test image, got {images}")
    x_all, y_all = split_data(run, "test")
    idx = subset(len(x_all), images, seed)
    x, y = x_all[idx], np.asarray(y_all)[idx]
    clean = float(np.mean(run.finite_proba(x, before="measuring robustness").argmax(1) == y))
    hits = corruption_hits(run, x, y, seed)
    per = {
        name: {
            "title": c.title,
            "levels": [c.describe(s) for s in SEVERITIES],
            "accuracy": [float(a) for a in hits[i].mean(axis=1)],
        }
        for i, (name, c) in enumerate(CORRUPTIONS.items())
    }
    worst = sorted(per, key=lambda k: (float(np.mean(per[k]["accuracy"])), k))[:3]
    attacked = fgsm(inside.Model.of(run), x, y)
    fgsm_acc = [
        float(np.mean(run.finite_proba(a, before="measuring robustness").argmax(1) == y))
        for a in attacked.values()
    ]
    return {
        "n": int(len(y)),
        "of": int(len(y_all)),
        "seed": seed,
        "clean_accuracy": clean,
        "robust_accuracy": float(hits.mean()),
        "corruptions": per,
        "worst": worst,
        "fgsm": {"epsilon": list(attacked), "accuracy": fgsm_acc},
    }


def evaluate_robustness(run, images: int = IMAGES, seed: int = 0, out=None) -> dict[str, Any]:
    """The card of a run (folder or loaded Run), its figure written to ``out`` (default the run
    folder) and the card merged into the run's metrics.json under "robustness"."""
    from pathlib import Path

    run = run if isinstance(run, Run) else load_run(run)
    result = card(run, images, seed)
    out_dir = Path(out) if out is not None else Path(run.path)
    figure = plots.robustness(result, out_dir / FIGURE, title=f"{Path(run.path).name}")
    result["figure"] = str(figure)
    update_metrics(run.path, {"robustness": result})
    return result


def print_card(result: dict[str, Any], console=None) -> None:
    """Rich tables: accuracy per corruption and severity, worst first, and FGSM per epsilon."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(
        title=f"Where it breaks ({result['n']:,} test images, seed {result['seed']}): "
        f"clean {result['clean_accuracy']:.2%}, robust accuracy {result['robust_accuracy']:.2%}"
    )
    for col in ("corruption", "severity 1", "severity 2", "severity 3", "at severity 3"):
        t.add_column(col, justify="right" if col.startswith("severity") else "left")
    rows = sorted(result["corruptions"].values(), key=lambda c: np.mean(c["accuracy"]))
    for c in rows:
        t.add_row(c["title"], *(f"{a:.2%}" for a in c["accuracy"]), c["levels"][-1])
    console.print(t)
    f = Table(title="FGSM attack")
    f.add_column("epsilon (pixels 0..1)", justify="right")
    f.add_column("accuracy", justify="right")
    for e, a in zip(result["fgsm"]["epsilon"], result["fgsm"]["accuracy"]):
        f.add_row(f"{e:g}", f"{a:.2%}")
    console.print(f)
    if "figure" in result:
        console.print(f"figure: {result['figure']}")
