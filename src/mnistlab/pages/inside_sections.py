"""The run report's look inside the network: what its first layer looks for, why it got its
most-confused digits wrong (integrated gradients), how it arranges the test digits, and where
it breaks (the robustness card, when ``mnistlab evaluate --robustness`` stored one).

Each section takes the gathered pieces of :mod:`mnistlab.pages.run_pieces`; the model work
(one pass over the test digits, the attributions) is done once per page and shared
(``_views``), its cost bounded: a seeded subset of 2,000 test digits and an attribution budget
(``ATTRIBUTION_COST``).
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np

from mnistlab import plots
from mnistlab.errors import MnistlabError
from mnistlab.evaluation import inside
from mnistlab.evaluation.robustness import subset
from mnistlab.pages.html import Html, figure, join, missing, table, tag

LEARNED = {  # what it learned: after the mistakes
    "templates": "What the first layer looks for",
    "attribution": "Why it got them wrong",
    "embedding": "How it arranges the digits",
}
BREAKS = {"robustness": "Where it breaks"}  # after how sure it should be
SECTIONS = {**LEARNED, **BREAKS}
PAIRS = 4  # most-confused pairs with attributions
EXAMPLES = 3  # digits per pair
ATTRIBUTION_COST = 3e9  # all the attributions of one page, in Model.cost's units (~1 s)
SCALE = 4  # attribution images: pixels per input pixel
_READ_ERRORS = (ValueError, KeyError, TypeError, OSError)
Pieces = dict[str, Any]  # run_pieces.gather's pieces: each with .value and .problem


@dataclasses.dataclass
class Views:
    """The model-side views of one page, or why there are none."""

    value: dict[str, Any] | None = None
    problem: str | None = None


def _png(draw, *args, **kwargs) -> bytes:
    buf = io.BytesIO()
    draw(*args, buf, **kwargs)
    return buf.getvalue()


def _views(p: Pieces) -> Views:
    """The model-side views of the page, computed once and kept in ``p["inside"]``."""
    if "inside" not in p:
        from threadpoolctl import threadpool_limits

        # One BLAS thread: the products here are small, and two threads on two busy cores
        # made them ~3x slower (measured: 1.4 s against 0.45 s for the attributions).
        with threadpool_limits(limits=1, user_api="blas"):
            p["inside"] = _compute(p)
    return p["inside"]


def _compute(p: Pieces) -> Views:

    ev = p["evaluation"]
    value = ev.value or {}
    if value.get("run") is None or value.get("x") is None:
        return Views(problem=ev.problem or "the model and its test images are needed")
    try:
        model = inside.Model.of(value["run"])
        idx = subset(len(value["x"]), inside.EMBED)
        x, y = value["x"][idx], value["y"][idx]
        views = {
            "model": model,
            "templates": inside.first_layer(model, x),
            "embedding": inside.embedding(model, x, y),
            "confused": _confused(model, value),
        }
    except (MnistlabError, *_READ_ERRORS) as exc:
        return Views(problem=str(exc))
    return Views(views)


def _confused(model, ev: dict[str, Any]) -> list[dict[str, Any]]:
    """The most confident digits of the most-confused pairs with their attributions toward the
    class they were given and toward their true class, in one batch of paths."""

    names = list(ev["result"]["class_names"])
    pred = ev["proba"].argmax(axis=1)
    pairs = []
    for m in ev["result"]["most_confused"][:PAIRS]:
        t, q = names.index(m["true"]), names.index(m["predicted"])
        idx = np.flatnonzero((ev["y"] == t) & (pred == q))
        idx = idx[np.lexsort((idx, -ev["proba"][idx, q]))][:EXAMPLES]
        pairs.append({"pair": m, "idx": idx, "true": t, "predicted": q})
    images = [ev["x"][i] for pr in pairs for i in pr["idx"] for _ in (0, 1)]
    targets = [c for pr in pairs for _ in pr["idx"] for c in (pr["predicted"], pr["true"])]
    if not images:
        return pairs
    steps, most = model.budget(ATTRIBUTION_COST, len(images))
    found = inside.integrated_gradients(
        model, np.stack(images), targets, steps=steps, max_evaluations=most
    )
    at = 0
    for pr in pairs:
        pr["attributions"] = [
            (found[at + 2 * k], found[at + 2 * k + 1]) for k in range(len(pr["idx"]))
        ]
        at += 2 * len(pr["idx"])
    return pairs


def _unavailable(p: Pieces, what: str) -> Html:
    """The missing box of a section that needs the model: the reason is the confusion matrix
    section's when the model could not be used at all (said there once), else its own."""
    if p["evaluation"].problem:
        why = join(
            ("see ", tag("a", "the confusion matrix section", href="#confusion"), " for why")
        )
        return missing(what, why)
    return missing(what, _views(p).problem or "unknown")


# ---- sections ---------------------------------------------------------------------------
def _templates_section(p: Pieces) -> Html:

    views = _views(p)
    if views.value is None:
        return _unavailable(p, "the model's weights and test images (no templates)")
    t = views.value["templates"]
    n, dead = len(t.usage), int(t.dead.sum())
    what = (
        f"the {n} filters of the first conv layer ({t.weights.shape[1]}\u00d7{t.weights.shape[2]})"
        if t.layer.startswith("conv")
        else f"the {n} units of the first Dense layer, each as the 28\u00d728 image it weighs "
        "the pixels with"
    )
    dead_line = (
        f" {dead} of them never fired on these digits (grey, crossed): dead units that cost "
        "weights and do nothing."
        if dead
        else ""
    )
    return join(
        (
            tag(
                "p",
                f"Below: {what}, ordered by how much the network uses them ({t.HOW}; "
                f"{t.images:,} test digits).{dead_line}",
            ),
            figure(
                _png(plots.templates, t.weights, t.order, t.dead),
                "first-layer weights as images",
                "Most used first, left to right, top to bottom. Red: ink there raises the "
                "unit; blue: lowers it; white: no effect. Each unit has its own colour scale.",
                name="templates",
                class_="narrow",
            ),
        )
    )


def _attribution_png(image, attributions) -> bytes:
    """One row per digit: the digit, then its attribution toward the class it was given and
    toward its true class, each tinted red (pushed up) and blue (pushed down)."""

    rows = []
    for img, (given, true) in zip(image, attributions):
        both = np.abs(np.concatenate([given.values.ravel(), true.values.ravel()]))
        limit = max(float(np.percentile(both, 99)), 1e-12)
        digit = np.repeat((255 - np.asarray(img, np.uint8))[..., None], 3, axis=2)
        cells = [
            digit,
            plots.attribution_rgb(img, given.values, limit),
            plots.attribution_rgb(img, true.values, limit),
        ]
        gap = np.full((28, 2, 3), 255, np.uint8)
        rows.append(np.concatenate([cells[0], gap, cells[1], gap, cells[2]], axis=1))
        rows.append(np.full((2, rows[-1].shape[1], 3), 255, np.uint8))
    buf = io.BytesIO()
    plots.save_rgb(np.concatenate(rows[:-1]), buf, SCALE)
    return buf.getvalue()


def _attribution_section(p: Pieces) -> Html:
    views = _views(p)
    if views.value is None:
        return _unavailable(p, "the model and its test images (no attributions)")
    pairs = [pr for pr in views.value["confused"] if len(pr["idx"])]
    if not pairs:
        return tag("p", "No class was ever mistaken for another on the test set.")
    ev = p["evaluation"].value
    names = list(ev["result"]["class_names"])
    blocks, gaps, exact = [], [], True
    for pr in pairs:
        m = pr["pair"]
        for given, true in pr["attributions"]:
            gaps += [abs(given.gap), abs(true.gap)]
            exact &= given.exact and true.exact
        lines = [
            f"p={ev['proba'][i, pr['predicted']]:.2f}: {names[pr['predicted']]} logit "
            f"{given.logit - given.baseline_logit:+.1f}, {names[pr['true']]} logit "
            f"{true.logit - true.baseline_logit:+.1f}"
            for i, (given, true) in zip(pr["idx"], pr["attributions"])
        ]
        head = tag(
            "div",
            tag("b", f"{m['true']} \u2192 {m['predicted']}"),
            tag("br"),
            f"{m['count']:,} times",
            tag("br"),
            tag(
                "span",
                f"columns: the digit; toward {m['predicted']}; toward {m['true']}",
                class_="muted",
            ),
        )
        png = _attribution_png(ev["x"][pr["idx"]], pr["attributions"])
        blocks.append(
            tag(
                "div",
                head,
                figure(
                    png,
                    f"attributions of {m['true']}s read as {m['predicted']}",
                    join(lines, "; "),
                    name="attribution",
                ),
                class_="pair",
            )
        )
    how = (
        "exact: the network is piecewise linear and each path was cut at every relu switch"
        if exact
        else f"the trapezoid rule, refined until the budget ran out; they miss the logit change "
        f"by at most {max(gaps):.2g}"
    )
    return join(
        (
            tag(
                "p",
                "Integrated gradients: each pixel's share of a class's logit, gathered along the "
                "way from a black image (no ink) to the digit. Red pixels pushed the class up, "
                "blue ones down; both attributions of a digit share one colour scale. They add "
                f"up to the logit's change ({how}).",
            ),
            join(blocks),
        )
    )


def _embedding_section(p: Pieces) -> Html:

    views = _views(p)
    if views.value is None:
        return _unavailable(p, "the model and its test images (no embedding)")
    e = views.value["embedding"]
    names = list(p["evaluation"].value["result"]["class_names"])
    png = _png(
        plots.embedding,
        e.points,
        e.labels,
        e.predicted,
        names,
        title=f"{e.layer}: {len(e.labels):,} test digits ({e.method})",
    )
    return join(
        (
            tag(
                "p",
                f"The last hidden layer of {len(e.labels):,} test digits, in two dimensions; "
                "colour: the true class; circled: the mistakes, which sit where classes meet. "
                "UMAP draws the neighbourhoods more clearly but takes ~30 s, too long for every "
                "report: ",
                tag("code", 'mnistlab.evaluation.inside.embedding(..., method="umap")'),
                " with the ",
                tag("code", "inside"),
                " extra.",
            ),
            figure(png, "test digits in two dimensions", e.note, name="embedding", class_="narrow"),
        )
    )


def _robustness_section(p: Pieces) -> Html:

    if p["metrics"].problem:
        return missing("metrics.json (no robustness card)", p["metrics"].problem)
    metrics = p["metrics"].value if isinstance(p["metrics"].value, dict) else {}
    card = metrics.get("robustness")
    if not isinstance(card, dict):
        return tag(
            "p",
            "Not measured yet. ",
            tag("code", "mnistlab evaluate RUN --robustness"),
            " adds the robustness card to metrics.json: accuracy on test digits under twelve "
            "corruptions at three severities, and under the FGSM attack; the next report "
            "shows it here.",
            class_="muted",
        )
    try:
        png = _png(plots.robustness, card)
        rows = [
            (c["title"], *(f"{a:.1%}" for a in c["accuracy"]), " / ".join(c["levels"]))
            for c in card["corruptions"].values()
        ]
        fgsm = card["fgsm"]
        worst = ", ".join(card["corruptions"][k]["title"] for k in card["worst"])
    except _READ_ERRORS as exc:
        return missing("metrics.json's robustness card", f"it cannot be read: {exc}")
    return join(
        (
            tag(
                "p",
                f"On {card['n']:,} test digits "
                + (
                    f"(a seeded subset of {card['of']:,}): "
                    if card["n"] < card["of"]
                    else "(all): "
                )
                + f"{card['clean_accuracy']:.1%} clean, {card['robust_accuracy']:.1%} on average "
                f"under the corruptions; worst under {worst}. FGSM at epsilon "
                f"{fgsm['epsilon'][-1]:g}: {fgsm['accuracy'][-1]:.1%}.",
            ),
            figure(png, "accuracy under corruptions and under FGSM", None, name="robustness"),
            table(
                ("corruption", "severity 1", "2", "3", "what 1 / 2 / 3 are"),
                rows,
                numeric=range(1, 4),
            ),
            table(
                ("epsilon", *(f"{e:g}" for e in fgsm["epsilon"])),
                [("accuracy", *(f"{a:.1%}" for a in fgsm["accuracy"]))],
                numeric=range(1, len(fgsm["epsilon"]) + 1),
            ),
        )
    )


RENDER = {
    "templates": _templates_section,
    "attribution": _attribution_section,
    "embedding": _embedding_section,
    "robustness": _robustness_section,
}
