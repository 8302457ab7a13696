"""Things that are not digits, drawn in code, and how well a run's "not a digit I know" check
tells them from real digits.

``non_digits`` draws them as the draw page sends a drawing (dark ink on a white 140 px
canvas), seeded, nothing downloaded:

* letters from Pillow's bundled font, only those no digit resembles (no O, I, l, S, Z, B, G...);
* shapes: squares, bars, triangles, stars, crosses, hash signs, discs (no ring: that is a 0);
* scribbles: random walks of 15-40 strokes;
* noise: speckle of random density and darkness over the whole paper.

``check_ood`` prepares each as ``mnistlab predict`` prepares a photo (some noise is refused there
as blank: that counts as caught), scores it with the run's calibration (``mnistlab.rundir.
calibration``), and reports the false alarms on real digits (the test set's), the catch rate
and the AUROC per kind; ``mnistlab evaluate --ood`` prints it and keeps it in metrics.json.

>>> drawn = non_digits(2, seed=0)
>>> sorted(drawn), drawn["letters"][0].shape, drawn["letters"][0].dtype
(['letters', 'noise', 'scribbles', 'shapes'], (140, 140), dtype('uint8'))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import DataError
from mnistlab.rundir import ENVIRONMENT, Run, load_run
from mnistlab.rundir.calibration import read_calibration
from mnistlab.use.imageprep import prepare, style_for

SIDE = 140  # the draw page sends its canvas at this size
LETTERS = "ACEFHKMNPRTUVWXYaefhkmnruvwxy"  # none of them is a digit's shape
SHAPES = ("square", "bar", "triangle", "star", "cross", "hash", "disc")
PER_KIND = 200


def _canvas():
    from PIL import Image, ImageDraw

    image = Image.new("L", (SIDE, SIDE), 255)
    return image, ImageDraw.Draw(image)


def _letter(rng: np.random.Generator):
    from PIL import ImageFont

    image, draw = _canvas()
    font = ImageFont.load_default(size=int(rng.integers(60, 111)))
    at = (SIDE / 2 + rng.integers(-15, 16), SIDE / 2 + rng.integers(-15, 16))
    draw.text(at, LETTERS[rng.integers(len(LETTERS))], font=font, fill=0, anchor="mm")
    return image.rotate(rng.uniform(-15, 15), fillcolor=255)


def _shape(rng: np.random.Generator):
    image, draw = _canvas()
    kind, width = SHAPES[rng.integers(len(SHAPES))], int(rng.integers(6, 14))
    c, r = SIDE / 2, rng.uniform(30, 60)
    if kind == "square":
        draw.rectangle([c - r, c - r, c + r, c + r], outline=0, width=width)
    elif kind == "bar":
        draw.rectangle([c - r, c - r * 0.6, c + r, c + r * 0.6], fill=0)
    elif kind == "triangle":
        draw.polygon([(c, c - r), (c + r, c + r), (c - r, c + r)], outline=0, width=width)
    elif kind == "star":
        radii = [r if i % 2 == 0 else r / 2.5 for i in range(10)]
        angles = np.arange(10) * np.pi / 5
        draw.polygon(
            [(c + q * np.sin(a), c - q * np.cos(a)) for q, a in zip(radii, angles)], fill=0
        )
    elif kind == "cross":
        draw.line([(c - r, c - r), (c + r, c + r)], fill=0, width=width)
        draw.line([(c - r, c + r), (c + r, c - r)], fill=0, width=width)
    elif kind == "hash":
        for o in (-r / 3, r / 3):
            draw.line([(c + o, c - r), (c + o, c + r)], fill=0, width=width)
            draw.line([(c - r, c + o), (c + r, c + o)], fill=0, width=width)
    else:
        draw.ellipse([c - r, c - r, c + r, c + r], fill=0)
    return image.rotate(rng.uniform(0, 360), fillcolor=255)


def _scribble(rng: np.random.Generator):
    image, draw = _canvas()
    p = rng.uniform(30, SIDE - 30, 2)
    points = [tuple(p)]
    for _ in range(int(rng.integers(15, 41))):
        p = np.clip(p + rng.normal(0, 25, 2), 5, SIDE - 5)
        points.append(tuple(p))
    draw.line(points, fill=0, width=int(rng.integers(6, 13)), joint="curve")
    return image


def _noise(rng: np.random.Generator):
    from PIL import Image

    paper = np.full((SIDE, SIDE), 255.0)
    specks = rng.random((SIDE, SIDE)) < rng.uniform(0.02, 0.3)
    paper[specks] = rng.uniform(0, 120, int(specks.sum()))
    return Image.fromarray(paper.astype(np.uint8))


KINDS = {"letters": _letter, "shapes": _shape, "scribbles": _scribble, "noise": _noise}


def non_digits(per_kind: int = PER_KIND, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """``per_kind`` canvases (uint8 (140, 140), dark ink on white) of every kind, seeded."""
    out = {}
    for i, (kind, draw) in enumerate(KINDS.items()):
        rng = np.random.default_rng([seed, i])
        out[kind] = [np.asarray(draw(rng), dtype=np.uint8) for _ in range(per_kind)]
    return out


def prepared(images: list[np.ndarray], style: str = "mnist") -> tuple[np.ndarray, int]:
    """(the images ``predict`` would give the model (M, 28, 28), how many it refused)."""

    out, refused = [], 0
    for image in images:
        try:
            out.append(prepare(image, style=style))
        except DataError:  # no ink above the paper's noise: refused before the model
            refused += 1
    return (np.stack(out) if out else np.zeros((0, 28, 28), np.uint8)), refused


def _auroc(digit_scores: np.ndarray, other_scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(other_scores) == 0 or len(digit_scores) == 0:
        return None
    truth = np.r_[np.zeros(len(digit_scores)), np.ones(len(other_scores))]
    return float(roc_auc_score(truth, np.r_[digit_scores, other_scores]))


def check_ood(
    run, calibration, digits: np.ndarray, per_kind: int = PER_KIND, seed: int = 0
) -> dict[str, Any]:
    """False alarms of ``calibration``'s OOD check on ``digits`` (uint8 (N, 28, 28), real
    digits the run never trained on), and per kind of non-digit: how many were refused as
    blank, flagged, the catch rate (both over all drawn) and the AUROC of the score (digits
    against those that reached the model)."""

    check = calibration.ood
    digit_scores = check.score(run.predict_logits(digits), digits)
    out: dict[str, Any] = {
        "false_alarm": {
            "target": check.false_alarm,
            "measured": float(np.mean(check.unusual(digit_scores))),
            "n": len(digits),
        },
        "catch": {},
        "seed": seed,
    }
    reached = []
    for kind, images in non_digits(per_kind, seed).items():
        x, refused = prepared(images, style_for(run.dataset_name))
        scores = check.score(run.predict_logits(x), x) if len(x) else np.zeros(0)
        flagged = int(np.sum(check.unusual(scores)))
        out["catch"][kind] = {
            "n": len(images),
            "refused": refused,
            "flagged": flagged,
            "rate": (flagged + refused) / len(images),
            "auroc": _auroc(digit_scores, scores),
        }
        reached.append(scores)
    caught = sum(c["flagged"] + c["refused"] for c in out["catch"].values())
    out["catch_rate"] = caught / sum(c["n"] for c in out["catch"].values())
    out["auroc"] = _auroc(digit_scores, np.concatenate(reached))
    return out


def check_run(run, per_kind: int = PER_KIND, seed: int = 0) -> dict[str, Any]:
    """``check_ood`` of a run (folder or Run) with its stored calibration, on its test set
    (loaded again from its dataset record): the digits its threshold was not fitted on."""

    run = run if isinstance(run, Run) else load_run(run)
    calibration = read_calibration(run)
    ds = run.dataset.load(Path(run.path) / ENVIRONMENT, recipe_dir=run.recipe.data_dir)
    return check_ood(run, calibration, ds.x_test, per_kind, seed)


def print_ood(result: dict[str, Any], console) -> None:
    """A table: false alarms on digits, then per kind the catch rate and the AUROC."""
    from rich.table import Table

    fa = result["false_alarm"]
    t = Table(title='"Not a digit I know": how often it is right')
    for col in ("inputs", "n", "said 'not a digit I know'", "AUROC"):
        t.add_column(col, justify="left" if col == "inputs" else "right")
    t.add_row("test digits (false alarms)", f"{fa['n']:,}", f"{100 * fa['measured']:.1f} %", "")
    for kind, c in result["catch"].items():
        refused = f" (+{c['refused']} refused as blank)" if c["refused"] else ""
        auroc = "" if c["auroc"] is None else f"{c['auroc']:.3f}"
        t.add_row(kind, f"{c['n']:,}", f"{100 * c['rate']:.1f} %{refused}", auroc)
    t.add_row("all non-digits", "", f"{100 * result['catch_rate']:.1f} %", f"{result['auroc']:.3f}")
    console.print(t)
    console.print(
        f"The threshold was set to flag {100 * fa['target']:.0f} % of the validation digits; "
        "AUROC: the chance a random non-digit scores as more unusual than a random test digit."
    )
