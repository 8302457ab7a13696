"""What each section of the run report shows, one function per section (see
:mod:`mnistlab.pages.run_page`, which gathers the run folder's pieces and assembles the page).

Every function takes the gathered pieces and returns the section's body: its content, or a
"missing" box naming the absent or damaged file when it cannot be drawn.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from mnistlab import plots, rundir
from mnistlab.datasets.preprocess import split_validation
from mnistlab.evaluation import calibration as cal
from mnistlab.evaluation import evaluate
from mnistlab.evaluation.evaluate import R2_HOW_TO_READ, R2_LABELS_WHY
from mnistlab.evaluation.intervals import interval_text, wilson
from mnistlab.pages.html import Html, data_uri, definitions, figure, join, missing, table, tag
from mnistlab.pages.inside_sections import RENDER as INSIDE_RENDER
from mnistlab.pages.run_pieces import SECTIONS, Loaded, architecture, health_verdict
from mnistlab.recipe import SECTIONS as TOML_SECTIONS
from mnistlab.recipe import Recipe, differences
from mnistlab.recipe.applies import WHEN, applies
from mnistlab.training.health import parts

GALLERY = 32  # most confident mistakes shown
PAIR_EXAMPLES = 8  # digits shown per confused pair


def _num(v: Any, spec: str = ".4f") -> str:
    if v is None:
        return "\u2014"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if spec == ".4f" and abs(v) >= 1e5:  # an exploded loss: 8.131e+15, not 16 digits
        return format(v, ".4g")
    return format(v, spec)


def _png(draw, *args, **kwargs) -> bytes:
    """Bytes of a PNG drawn by a ``mnistlab.plots`` function (which takes the target last)."""
    buf = io.BytesIO()
    draw(*args, buf, **kwargs)
    return buf.getvalue()


def _digit_png(img: np.ndarray) -> bytes:
    """A 28x28 digit as a tiny PNG, dark ink on white like the figures (upscaled by CSS)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(255 - np.asarray(img, dtype=np.uint8), mode="L").save(
        buf, format="PNG", optimize=True
    )
    return buf.getvalue()


def _digit(img: np.ndarray, alt: str, *lines: Any) -> Html:

    caption = []
    for line in lines:
        caption += [tag("br"), line] if caption else [line]
    return tag(
        "li",
        tag("img", src=data_uri(_digit_png(img)), alt=alt, width="56", height="56"),
        join(caption),
    )


def _flat(v: Any) -> str:
    """A JSON value on one line: dicts as k=v pairs, lists comma-separated."""
    if isinstance(v, dict):
        return ", ".join(f"{k}={_flat(x)}" for k, x in v.items())
    if isinstance(v, list):
        return "; ".join(_flat(x) for x in v)
    return "\u2014" if v is None else str(v)


def _missing_piece(piece: Loaded, what: str) -> Html:
    return missing(what, piece.problem or "unknown")


# ---- sections ---------------------------------------------------------------------------
def _recipe_section(p: dict[str, Loaded]) -> Html:
    """What the run changes from the notebook's recipe first; every other field it reads folded
    below; the fields it holds but does not read (a conv field on an MLP) left out."""

    recipe = p["recipe"]
    if recipe.value is None:
        return _missing_piece(recipe, f"{rundir.RECIPE} (the recipe cannot be shown)")
    r, notebook = recipe.value, Recipe()
    changed = list(differences(r, notebook))
    shown = [n for n in changed if applies(r, n)]
    unread = [n for n in changed if n not in shown]
    params = (p["evaluation"].value or {}).get("params")
    parts = [
        tag(
            "p",
            "Name ",
            tag("code", r.name),
            ". Network: ",
            tag("code", architecture(r)),
            f" ({params:,} trainable parameters)." if params else ".",
        ),
        tag("h3", "Changed from the notebook's recipe"),
        table(
            ("field", "notebook", "this run"),
            [(tag("code", n), _field(notebook, n), tag("b", _field(r, n))) for n in shown],
        )
        if shown
        else tag("p", "Nothing: this run trains the notebook's recipe."),
    ]
    if unread:
        parts.append(_unread_line(r, unread))
    resolved = r.resolved()
    rest = {
        group: [
            (tag("code", n), _field(r, n))
            for n in names
            if n not in changed and applies(r, n) and getattr(resolved, n) is not None
        ]
        for group, names in TOML_SECTIONS.items()
    }
    parts.append(
        tag(
            "details",
            tag(
                "summary",
                f"The other {sum(map(len, rest.values()))} fields this recipe reads "
                "(as in the notebook's recipe)",
            ),
            tag(
                "div",
                join(table((f"[{g}]", ""), rows) for g, rows in rest.items() if rows),
                class_="grid tables",
            ),
        )
    )
    return join(parts)


def _field(recipe, name: str) -> Html:
    """A recipe field's value as recipe.toml writes it (an optimizer's own value where unset;
    a dash where the recipe does not read the field)."""

    if not applies(recipe, name):
        return tag("span", "\u2014 (not read)", class_="muted")
    return tag("code", _toml_text(getattr(recipe.resolved(), name)))


def _toml_text(v: Any) -> str:
    if v is None:
        return "unset"
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v).lower() if isinstance(v, bool) else str(v)


def _unread_line(recipe, names: list[str]) -> Html:
    """The fields the recipe changes that its training does not read, and when it would."""

    items = [
        join(
            (
                tag("code", f"{n} = {_toml_text(getattr(recipe, n))}"),
                f" (read when {WHEN[n].words})",
            )
        )
        for n in names
    ]
    return tag(
        "p",
        "Set, but not read by this recipe: ",
        join(_comma(items)),
        ".",
        class_="muted",
    )


def _comma(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out += [", ", item] if out else [item]
    return out


def _dataset_section(p: dict[str, Loaded]) -> Html:
    if p["dataset"].problem is not None:
        return _missing_piece(p["dataset"], f"{rundir.ENVIRONMENT}'s dataset record")
    ds = p["dataset"].value
    recipe = p["recipe"].value
    split = recipe.validation_split if recipe is not None else None
    n_train = ds.train
    held = (
        f"{math.floor(n_train * (1 - split)):,} trained on, "
        f"{n_train - math.floor(n_train * (1 - split)):,} "
        "held out for validation (the last part)"
        if isinstance(n_train, int) and split is not None
        else None
    )
    items = [
        ("name", tag("code", ds.name)),
        ("source", ds.source or "\u2014"),
        ("training images", f"{n_train:,}" if isinstance(n_train, int) else "\u2014"),
        ("test images", f"{ds.test:,}" if isinstance(ds.test, int) else "\u2014"),
    ]
    if held:
        items.append(("split", held))
    if ds.note:
        items.append(("note", ds.note))
    rows = [(tag("code", f), tag("code", h)) for f, h in ds.checksums.items()]
    sums = (
        table(("file", "SHA-256"), rows)
        if rows
        else missing("checksums", f"{rundir.ENVIRONMENT} records none for this dataset")
    )
    return join((definitions(items), tag("h3", "Checksums"), sums))


def _curves_section(p: dict[str, Loaded]) -> Html:

    hist = p["history"]
    if hist.problem:
        return _missing_piece(hist, f"{rundir.HISTORY} (no learning curves)")
    rows = hist.value
    if not rows:
        return missing(rundir.HISTORY, "it holds no finished epoch yet")
    bad = [
        r["epoch"]
        for r in rows
        if r.get("loss") is None or not math.isfinite(r["loss"]) or abs(r["loss"]) > 1e3
    ]
    note = (
        f" Epoch {', '.join(map(str, bad))}: the training loss is not finite or exploded "
        "(log axis; non-finite points are left out)."
        if bad
        else ""
    )
    figs = [
        figure(
            _png(plots.learning_curve, rows, "loss", title="Loss (cross-entropy)", ylabel="loss"),
            "training and validation loss per epoch",
            "Loss per epoch." + note,
            name="loss",
        ),
        figure(
            _png(plots.learning_curve, rows, "accuracy", title="Accuracy", ylabel="accuracy"),
            "training and validation accuracy per epoch",
            "Accuracy per epoch.",
            name="accuracy",
        ),
        figure(
            _png(
                plots.learning_curve,
                rows,
                "learning_rate",
                title="Learning rate",
                ylabel="learning rate (end of epoch)",
                log=False,
            ),
            "learning rate at the end of each epoch",
            "Learning rate at each epoch's last step.",
            name="learning-rate",
        ),
    ]
    table_rows = [
        (
            r["epoch"],
            _num(r["loss"]),
            _num(r["accuracy"]),
            _num(r["val_loss"]),
            _num(r["val_accuracy"]),
            _num(r["learning_rate"], ".3g"),
            _num(r["seconds"], ".2f"),
        )
        for r in rows
    ]
    return join(
        (
            tag("div", join(figs), class_="grid"),
            table(
                ("epoch", "loss", "accuracy", "val loss", "val accuracy", "lr", "seconds"),
                table_rows,
                numeric=range(7),
            ),
        )
    )


def _eval_or_missing(
    p: dict[str, Loaded], what: str, needs_images: bool = False, first: bool = False
) -> tuple[Any, Html | None]:
    """(evaluation value, note to show first): the note is a missing box when the section
    cannot be drawn, or a line saying the numbers come from metrics.json. The reason is spelled
    out in the ``first`` section only; the later ones point back to it."""
    ev = p["evaluation"]
    why = (
        ev.problem
        if first
        else join(("see ", tag("a", "the confusion matrix section", href="#confusion"), " for why"))
    )
    if ev.value is None:
        return None, missing(what, why)
    if ev.problem and needs_images:
        return None, missing(what, join(("the test images need the model and its dataset; ", why)))
    if ev.problem:
        return ev.value, tag(
            "p",
            "From the test evaluation stored in metrics.json by `mnistlab evaluate`; "
            "the model could not be used: ",
            why,
            class_="muted",
        )
    return ev.value, None


def _confusion_section(p: dict[str, Loaded]) -> Html:

    ev, note = _eval_or_missing(p, "the test-set predictions (no confusion matrix)", first=True)
    if ev is None:
        return note
    r = ev["result"]
    png = _png(
        plots.confusion_matrix,
        r["confusion_matrix"],
        r["class_names"],
        title=f"accuracy {r['accuracy']:.2%} on {r['n']:,} test images",
    )
    return join(
        (
            note,
            figure(
                png,
                "confusion matrix heatmap of the test set",
                "Rows: the true class; columns: the predicted class. Colour: share of "
                "the true class (log scale), so the rare mistakes stay visible.",
                name="confusion",
                class_="narrow",
            ),
        )
    )


def _per_class_section(p: dict[str, Loaded]) -> Html:

    ev, note = _eval_or_missing(p, "the test-set predictions (no per-class scores)")
    if ev is None:
        return note
    r = ev["result"]
    rows = [
        (name, _num(m["precision"]), _num(m["recall"]), _num(m["f1"]), f"{m['support']:,}")
        for name, m in r["per_class"].items()
    ]
    for key in ("macro_avg", "weighted_avg"):
        if isinstance(r.get(key), dict):
            m = r[key]
            rows.append(
                (
                    tag("b", key.replace("_", " ")),
                    _num(m["precision"]),
                    _num(m["recall"]),
                    _num(m["f1"]),
                    f"{m['support']:,}",
                )
            )
    return join(
        (
            note,
            tag(
                "p",
                "Precision: of the images called X, the share that are X. Recall: of "
                "the X images, the share found. F1: their harmonic mean.",
            ),
            figure(
                _png(plots.per_class_bars, r["per_class"]),
                "per-class precision, recall and F1 bars",
                "Precision, recall and F1 of every class on the test set.",
                name="per-class",
                class_="narrow",
            ),
            table(("class", "precision", "recall", "F1", "support"), rows, numeric=range(1, 5)),
        )
    )


def _pairs_section(p: dict[str, Loaded]) -> Html:
    ev, note = _eval_or_missing(p, "the test-set predictions (no confused pairs)")
    if ev is None:
        return note
    r = ev["result"]
    pairs = r["most_confused"]
    if not pairs:
        return join((note, tag("p", "No class was ever mistaken for another on the test set.")))
    names = list(r["class_names"])
    blocks = []
    for m in pairs:
        head = tag(
            "div",
            tag("b", f"{m['true']} \u2192 {m['predicted']}"),
            tag("br"),
            f"{m['count']:,} times ({m['share_of_true']:.1%} of the {m['true']}s)",
        )
        if ev["x"] is None:
            blocks.append(
                tag(
                    "div",
                    head,
                    tag("span", "(examples need the model)", class_="muted"),
                    class_="pair",
                )
            )
            continue
        t, q = names.index(m["true"]), names.index(m["predicted"])
        pred = ev["proba"].argmax(axis=1)
        idx = np.flatnonzero((ev["y"] == t) & (pred == q))
        idx = idx[np.lexsort((idx, -ev["proba"][idx, q]))][:PAIR_EXAMPLES]  # most confident first
        digits = [
            _digit(
                ev["x"][i],
                f"a {m['true']} predicted as {m['predicted']}",
                f"p={ev['proba'][i, q]:.2f}",
            )
            for i in idx
        ]
        blocks.append(
            tag(
                "div",
                head,
                tag("ul", join(digits), class_="digits"),
                class_="pair",
                data_figure="pair",
            )
        )
    return join(
        (
            note,
            tag(
                "p",
                "The largest off-diagonal cells of the confusion matrix, each with the "
                "test images behind it (p: the probability given to the wrong class).",
            ),
            join(blocks),
        )
    )


def _mistakes_section(p: dict[str, Loaded]) -> Html:

    ev, note = _eval_or_missing(p, "the test-set predictions (no gallery)", needs_images=True)
    if ev is None:
        return note
    names = ev["result"]["class_names"]
    idx = evaluate.misclassified(ev["y"], ev["proba"], limit=GALLERY)
    pred = ev["proba"].argmax(axis=1)
    wrong = int(np.sum(pred != ev["y"]))
    if not len(idx):
        return tag("p", "No mistakes on the test set.")
    digits = [
        _digit(
            ev["x"][i],
            f"true {names[ev['y'][i]]}, predicted {names[pred[i]]}",
            f"true {names[ev['y'][i]]}",
            tag("b", f"pred {names[pred[i]]}"),
            f"p={ev['proba'][i, pred[i]]:.2f}",
        )
        for i in idx
    ]
    return join(
        (
            tag(
                "p",
                f"The {len(idx)} most confident of the {wrong:,} mistakes on the test set "
                "(p: the probability of the predicted class).",
            ),
            tag("ul", join(digits), class_="digits", data_figure="gallery"),
        )
    )


def _r2_section(p: dict[str, Loaded]) -> Html:

    ev, note = _eval_or_missing(p, "the test-set predictions (no R\u00b2)")
    if ev is None:
        return join((note, tag("p", R2_LABELS_WHY)))
    r2 = ev["result"]["r2"]
    value = r2.get("probabilities_vs_onehot")
    headline = "undefined (the test set holds a single class)" if value is None else f"{value:.4f}"
    return join(
        (
            note,
            definitions(
                [
                    ("R\u00b2 of probabilities vs one-hot targets", tag("b", headline)),
                    ("Brier score", _num(r2.get("brier"))),
                ]
            ),
            tag("p", R2_LABELS_WHY),
            tag("p", R2_HOW_TO_READ),
        )
    )


def _pct(v: Any) -> str:
    return "\u2014" if v is None else f"{100 * v:.2f} %"


def _calibration_section(p: dict[str, Loaded]) -> Html:

    c = p["calibration"]
    if c.value is None:
        return _stored_calibration(p) or _missing_piece(c, "the test-set logits (no calibration)")
    v = c.value
    t = v["temperature"]
    intro = tag(
        "p",
        "A probability is honest when, of the digits it calls 90 % sure, about 90 % are right. "
        "ECE (expected calibration error, 15 confidence bins) is the mean gap between the two; "
        "NLL punishes confident mistakes hardest. Temperature scaling divides every logit by "
        "one number T, fitted on the validation part (never the test set); the predicted "
        "class never changes, only how sure it sounds.",
    )
    rows = [
        (
            f"{r['split']} ({r['n']:,} images)"
            + (", T fitted here" if r is v["fitted_on"] else ""),
            _pct(r["ece_before"]),
            _pct(r["ece_after"]),
            _num(r["nll_before"]),
            _num(r["nll_after"]),
        )
        for r in (v["fitted_on"], v["test"])
        if r
    ]
    numbers = table(
        ("images", "ECE raw", "ECE calibrated", "NLL raw", "NLL calibrated"),
        rows,
        numeric=range(1, 5),
    )
    png = _png(cal.reliability_figure, v["logits"], v["y"], t)
    diagram = figure(
        png,
        "reliability diagram of the test set, raw and calibrated",
        "Accuracy against confidence per bin on the test set: on the dashed line, the model "
        "is as sure as it is right; hatched, the gap. Below: the share of predictions per bin.",
        name="reliability",
    )
    return join(
        (
            _missing_piece(Loaded(problem=v["damaged"]), rundir.CALIBRATION)
            if v["damaged"]
            else None,
            intro,
            _calibration_status(v),
            numbers,
            diagram,
            _ood_part(v, p["metrics"].value),
        )
    )


def _stored_calibration(p: dict[str, Loaded]) -> Html | None:
    """What ``mnistlab evaluate`` stored of the test set's calibration, when the model itself
    cannot be used; None when it stored none."""
    ev = p["evaluation"].value
    stored = (ev or {}).get("result", {}).get("calibration")
    if not isinstance(stored, dict) or not isinstance(stored.get("ece_before"), (int, float)):
        return None
    t = stored.get("temperature")
    rows = [
        (
            f"test ({stored.get('n', 0):,} images)",
            _pct(stored["ece_before"]),
            _pct(stored.get("ece_after")),
            _num(stored.get("nll_before")),
            _num(stored.get("nll_after")),
        )
    ]
    return join(
        (
            tag(
                "p",
                "From the test evaluation stored in metrics.json by `mnistlab evaluate`"
                + (f" (T = {t:.3g})" if isinstance(t, (int, float)) else "")
                + "; the model could not be used, see ",
                tag("a", "the confusion matrix section", href="#confusion"),
                ".",
                class_="muted",
            ),
            table(
                ("images", "ECE raw", "ECE calibrated", "NLL raw", "NLL calibrated"),
                rows,
                numeric=range(1, 5),
            ),
        )
    )


def _calibration_status(v: dict[str, Any]) -> Html:
    t = v["temperature"]
    if t is None:
        return tag("p", tag("b", "Not calibrated: "), v["why_not"], class_="muted")
    told = tag("b", f"T = {t:.3g}")
    if v["stored"] is not None:
        return tag(
            "p",
            told,
            f", stored in {rundir.CALIBRATION}: `predict --calibrated`, `export --calibrated` "
            "and the draw page use it.",
        )
    return tag(
        "p",
        told,
        f", fitted for this page and not stored: `mnistlab evaluate RUN` writes "
        f"{rundir.CALIBRATION}; until then predict, export and the draw page show raw "
        "probabilities, labelled raw.",
    )


def _ood_part(v: dict[str, Any], metrics: Any) -> Html:
    stored = v["stored"]
    if stored is None:
        return None
    ood = (((metrics or {}).get("evaluation") or {}).get("test") or {}).get("ood")
    lead = tag(
        "p",
        tag("b", "Not a digit I know. "),
        "Inputs unlike the training images (by the model's energy and by a PCA of the "
        f"training images' pixels) score above {stored.ood.threshold:.3f}, a threshold set to "
        f"flag {100 * stored.ood.false_alarm:.0f} % of the validation digits.",
    )
    if not isinstance(ood, dict) or not isinstance(ood.get("catch"), dict):
        return join((lead, tag("p", "Measure it: `mnistlab evaluate RUN --ood`.", class_="muted")))
    fa = ood["false_alarm"]
    rows = [("test digits (false alarms)", f"{fa['n']:,}", _pct(fa["measured"]), "")]
    rows += [
        (kind, f"{c['n']:,}", _pct(c["rate"]), _num(c.get("auroc"), ".3f"))
        for kind, c in ood["catch"].items()
    ]
    rows.append(("all non-digits", "", _pct(ood["catch_rate"]), _num(ood.get("auroc"), ".3f")))
    return join(
        (
            lead,
            table(("inputs", "n", "said 'not a digit I know'", "AUROC"), rows, numeric=(1, 2, 3)),
        )
    )


def _health_section(p: dict[str, Loaded]) -> Html:
    metrics = p["metrics"]
    verdict = health_verdict(metrics.value)
    if verdict is None:
        return (
            _missing_piece(metrics, f"{rundir.METRICS} (no health verdict)")
            if metrics.problem
            else missing("the health verdict", f"{rundir.METRICS} has no 'health' list")
        )
    messages = verdict[1]
    stopped = metrics.value.get("stopped")
    out = [tag("div", w, class_="warning") for w in messages] or [
        tag(
            "div",
            tag("b", "Healthy. "),
            "No epoch diverged (NaN or exploding loss) or sat at the loss "
            "of a uniform guess with chance accuracy.",
            class_="healthy",
        )
    ]
    if stopped:
        out.append(tag("p", tag("b", "Training stopped early: "), stopped))
    return join(out)


def _environment_section(p: dict[str, Loaded]) -> Html:
    env, hist = p["environment"], p["history"]
    parts = []
    if isinstance(env.value, dict):
        items = [(k, tag("code", _flat(v))) for k, v in env.value.items() if k != "dataset"]
        parts.append(definitions(items))
    else:
        parts.append(_missing_piece(env, f"{rundir.ENVIRONMENT} (versions, threads, engine)"))
    parts.append(tag("h3", "Timings"))
    if hist.value:
        secs = [r["seconds"] for r in hist.value if r.get("seconds") is not None]
        if secs:
            parts.append(
                definitions(
                    [
                        (
                            "training",
                            f"{sum(secs):.1f} s over {len(secs)} epoch{'s' * (len(secs) != 1)}",
                        ),
                        (
                            "per epoch",
                            (
                                f"median {float(np.median(secs)):.2f} s, "
                                f"first {secs[0]:.2f} s (the "
                                "first may include compiling the engine)"
                            ),
                        ),
                    ]
                )
            )
    else:
        parts.append(
            _missing_piece(hist, f"{rundir.HISTORY} (no timings)")
            if hist.problem
            else missing("timings", "no finished epoch")
        )
    return join(parts)


RENDER = {
    "recipe": _recipe_section,
    "dataset": _dataset_section,
    "learning-curves": _curves_section,
    "confusion": _confusion_section,
    "per-class": _per_class_section,
    "confused-pairs": _pairs_section,
    "mistakes": _mistakes_section,
    "r2": _r2_section,
    "calibration": _calibration_section,
    "health": _health_section,
    "environment": _environment_section,
    **INSIDE_RENDER,
}


def _counts(record: Any, recipe: Any) -> tuple[int | None, int | None]:
    """(test images, validation images) of a run, from its dataset record and recipe."""

    n_test = getattr(record, "test", None)
    train = getattr(record, "train", None)
    frac = getattr(recipe, "validation_split", None)
    if not train or not frac:
        return n_test, None
    held = split_validation(np.arange(train), np.arange(train), frac)[2]
    return n_test, len(held) or None


def _ci(accuracy: Any, n: int | None) -> Html | None:
    """A line under an accuracy: its Wilson 95 % interval on ``n`` images."""

    if not isinstance(accuracy, (int, float)) or not n or not 0 <= accuracy <= 1:
        return None
    low, high = wilson(round(accuracy * n), n)
    return join((tag("br"), tag("small", interval_text(low, high), f" on {n:,}", class_="ci")))


def diagnosis(metrics: dict[str, Any]) -> Html | None:
    """The box at the top of a run that failed its health check: what went wrong, the likely
    cause and the fix (``training.health`` words them; metrics.json keeps them); None for a
    healthy run or one without a verdict."""

    verdict = health_verdict(metrics)
    if verdict is None or verdict[0] == "healthy":
        return None
    found = [parts(m) for m in verdict[1]]
    diagnoses = list(dict.fromkeys((cause, fix) for _, cause, fix in found if cause and fix))
    items = [tag("li", what) for what, _, _ in found]
    advice = [
        join(
            (
                tag("p", tag("b", "Likely cause: "), cause),
                tag("p", tag("b", "Fix: "), fix, class_="fix"),
            )
        )
        for cause, fix in diagnoses
    ]
    stopped = metrics.get("stopped")
    return tag(
        "div",
        tag("p", tag("strong", "This run failed its health check."), class_="title"),
        tag("ul", join(items)),
        join(advice),
        tag("p", tag("b", "Training stopped early: "), stopped) if stopped else None,
        tag("p", tag("a", "The health check section", href="#health"), " has the details."),
        class_="diagnosis",
        role="alert",
        data_box="diagnosis",
    )


def header(path, p: dict[str, Loaded]) -> Html:
    metrics = p["metrics"].value if isinstance(p["metrics"].value, dict) else {}
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    train = metrics.get("train") if isinstance(metrics.get("train"), dict) else {}
    verdict = health_verdict(metrics)
    badge = (
        tag("span", "health unknown", class_="badge warn")
        if verdict is None
        else tag("span", "healthy", class_="badge ok")
        if verdict[0] == "healthy"
        else tag("span", "health warning", class_="badge bad")
    )
    env = p["environment"].value if isinstance(p["environment"].value, dict) else {}
    dataset = p["dataset"].value.name if p["dataset"].problem is None else "\u2014"
    record = p["dataset"].value if p["dataset"].problem is None else None
    recipe = p["recipe"].value if p["recipe"].problem is None else None
    n_test, n_val = _counts(record, recipe)
    stats = [
        (
            _num(test.get("accuracy"), ".2%") if test.get("accuracy") is not None else "\u2014",
            join(("test accuracy", _ci(test.get("accuracy"), n_test))),
        ),
        (_num(test.get("loss")), "test loss"),
        (
            _num(train.get("val_accuracy"), ".2%")
            if train.get("val_accuracy") is not None
            else "\u2014",
            join(("validation accuracy", _ci(train.get("val_accuracy"), n_val))),
        ),
        (str(train.get("epoch", "\u2014")), "epochs"),
        (dataset, "dataset"),
    ]
    toc = tag(
        "nav",
        tag("ul", join(tag("li", tag("a", t, href=f"#{k}")) for k, t in SECTIONS.items())),
        class_="toc",
        aria_label="sections",
    )
    return join(
        (
            tag("h1", "Run ", tag("code", path.name)),
            tag(
                "p",
                badge,
                " ",
                tag("span", f"started {env.get('started', 'at an unknown time')}", class_="muted"),
            ),
            diagnosis(metrics),
            tag(
                "div",
                join(tag("div", tag("b", v), tag("span", k), class_="stat") for v, k in stats),
                class_="headline",
            ),
            toc,
        )
    )
