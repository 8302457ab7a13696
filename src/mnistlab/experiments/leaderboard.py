"""The leaderboard of a compare: paired significance, ranking, and its CSV, JSON, PNG and table.

Each variant is compared with the baseline on the same test images by the paired test of the
chosen metric (``mnistlab.evaluation.paired``: for accuracy the exact McNemar test on the
discordant pairs), per seed pair and pooled over seeds, with Holm's correction over the
variants (see ``mnistlab.experiments.compare`` for why pooled). Ranking uses the metric on the
validation part only.

Every test accuracy carries its Wilson 95 % interval (``test_accuracy_ci``): per run on its
own count, and per variant around the mean over seeds with n = the number of test images, not
n x seeds: the seeds share the same images, so more seeds do not shrink what the finite test
set can tell.

>>> holm([0.01, 0.04, 0.03])
[0.03, 0.06, 0.06]
>>> round(mcnemar(0, 6), 4)          # 6 discordant pairs, all one way: 2 * 0.5**6
0.0312
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.engines.arch import network
from mnistlab.evaluation.intervals import accuracy_interval
from mnistlab.evaluation.paired import Metric, mcnemar, metric  # noqa: F401  (mcnemar: public)
from mnistlab.evaluation.significance import ALPHA, verdict
from mnistlab.fsio import atomic_write_json, atomic_write_text
from mnistlab.pages.compare_page import write_compare
from mnistlab.plots import _figure, _save


def selection_note(name: str = "accuracy") -> str:
    return (
        f"ranked by validation {name}; the test set is reported only, never used to select or rank"
    )


SELECTION_NOTE = selection_note()


# ---- statistics -------------------------------------------------------------------------


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * pvalues[i]))  # monotone, as Holm requires
        adjusted[i] = running
    return adjusted


def _mean_std(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0}


def leaderboard(
    records: dict[tuple[str, int], dict[str, Any]],
    variants,
    seed_list: list[int],
    ds,
    metric_name: str = "accuracy",
) -> dict[str, Any]:
    """The leaderboard.json object from one ``run_record`` per (variant, seed) of
    ``variants`` (a ``compare.Variants``: name, baseline, recipes), ranked and tested on
    ``metric_name`` (``mnistlab.evaluation.paired.METRICS``)."""
    m = metric(metric_name)
    rows = [
        _row(name, recipe, records, seed_list, ds, m) for name, recipe in variants.recipes.items()
    ]
    base = next(r for r in rows if r["name"] == variants.baseline)
    others = [r for r in rows if r is not base]
    for row in others:
        _test(row, base, records, m)
    for row, p in zip(others, holm([r["p_value"] for r in others])):
        row["p_holm"] = p
        row["significant"] = bool(p < ALPHA)
        row["verdict"] = verdict(row["diff_test"], p, higher_is_better=m.higher_is_better)
    # Rank on validation only; NaN (a diverged run) sorts last.
    sign = -1.0 if m.higher_is_better else 1.0
    key = f"val_{m.name}"
    order = sorted(rows, key=lambda r: np.nan_to_num(sign * r[key]["mean"], nan=np.inf))
    for rank, row in enumerate(order, 1):
        row["rank"] = rank
    return {
        "name": variants.name,
        "baseline": variants.baseline,
        "seeds": seed_list,
        "metric": m.name,
        "selection": "validation",
        "note": selection_note(m.title),
        "test": {"method": m.test, "alpha": ALPHA},
        "dataset": {"name": ds.name, "train": len(ds.x_train), "test": len(ds.x_test)},
        "variants": order,
    }


def _row(name: str, recipe, records, seed_list: list[int], ds, m: Metric) -> dict[str, Any]:
    """A variant's leaderboard entry before its test: runs, means and stds, intervals."""

    n_test = len(ds.y_test)
    runs = []
    for s in seed_list:
        rec = records[name, s]
        run = {"seed": s, "path": f"runs/{name}-seed{s}"}
        run.update({k: v for k, v in rec.items() if k not in ("correct", "per_image")})
        run["test_accuracy_ci"] = accuracy_interval(int(np.sum(rec["correct"])), n_test)
        runs.append(run)
    row = {
        "name": name,
        "recipe": recipe.to_dict(),
        "params": network(recipe, len(ds.class_names)).trainable_count,
        "runs": runs,
        "val_accuracy": _mean_std([r["val_accuracy"] for r in runs]),
        "test_accuracy": _mean_std([r["test_accuracy"] for r in runs]),
        "seconds": _mean_std([r["seconds"] for r in runs]),
        "diff_test": None,
        "p_value": None,
        "p_holm": None,
        "significant": None,
        "verdict": "baseline",
    }
    # the interval of the mean over seeds: n is the test set's size, whatever the seeds
    mean_correct = float(np.mean([np.sum(records[name, s]["correct"]) for s in seed_list]))
    row["test_accuracy_ci"] = accuracy_interval(mean_correct, n_test)
    if m.name != "accuracy":
        for split in ("val", "test"):
            row[f"{split}_{m.name}"] = _mean_std([r[f"{split}_{m.name}"] for r in runs])
    return row


def _test(row: dict[str, Any], base: dict[str, Any], records, m: Metric) -> None:
    """The paired test of ``row`` against the baseline, per seed pair and pooled."""
    pairs = []
    for run in row["runs"]:
        b, v = (records[name, run["seed"]] for name in (base["name"], row["name"]))
        pair = (
            b.get("per_image") or {"correct": b["correct"]},
            v.get("per_image") or {"correct": v["correct"]},
        )
        p, details = m.paired([pair])
        run[m.per_seed] = {**details, "p_value": p}
        pairs.append(pair)
    row["p_value"], row[m.pooled] = m.paired(pairs)
    key = f"test_{m.name}"
    row["diff_test"] = row[key]["mean"] - base[key]["mean"]


# ---- writing ----------------------------------------------------------------------------
CSV_FIELDS = (
    "rank",
    "variant",
    "val_mean",
    "val_std",
    "test_mean",
    "test_std",
    "test_ci_low",
    "test_ci_high",
    "seconds_mean",
    "seconds_std",
    "params",
    "diff_test",
    "p_value",
    "p_holm",
    "verdict",
)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_leaderboard(out: Path, board: dict[str, Any]) -> None:
    """leaderboard.json, leaderboard.csv, leaderboard.png and the HTML page (report.html, with
    the runs' own reports) in ``out``."""
    atomic_write_json(out / "leaderboard.json", _json_safe(board))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    name = board.get("metric", "accuracy")
    extra = () if name == "accuracy" else (f"val_{name}", f"test_{name}")
    w.writerow(CSV_FIELDS + tuple(f"{k}_{stat}" for k in extra for stat in ("mean", "std")))
    for v in board["variants"]:
        ci = v["test_accuracy_ci"]
        w.writerow(
            [
                v["rank"],
                v["name"],
                v["val_accuracy"]["mean"],
                v["val_accuracy"]["std"],
                v["test_accuracy"]["mean"],
                v["test_accuracy"]["std"],
                ci["low"],
                ci["high"],
                v["seconds"]["mean"],
                v["seconds"]["std"],
                v["params"],
                _blank(v["diff_test"]),
                _blank(v["p_value"]),
                _blank(v["p_holm"]),
                v["verdict"],
                *(v[k][stat] for k in extra for stat in ("mean", "std")),
            ]
        )
    atomic_write_text(out / "leaderboard.csv", buf.getvalue())
    plot_leaderboard(board, out / "leaderboard.png")
    board["report"] = write_page(out)


def write_page(out: Path) -> str:
    """The compare's HTML page, and first the report.html of every run folder that lacks one,
    so each of the page's run links leads somewhere."""

    return str(write_compare(out, run_reports=True))


def _blank(v: Any) -> Any:
    return "" if v is None else v


def plot_leaderboard(board: dict[str, Any], path: Path) -> Path:
    """Validation and test accuracy, mean +- std over seeds, one row per variant by rank."""

    rows = board["variants"]
    fig = _figure(7.5, 1.2 + 0.45 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    for offset, key, label, color in (
        (0.12, "val_accuracy", "validation (ranks)", "#4477aa"),
        (-0.12, "test_accuracy", "test (reported)", "#ee7733"),
    ):
        mean = np.array([100 * r[key]["mean"] for r in rows])
        std = np.array([100 * r[key]["std"] for r in rows])
        ax.errorbar(mean, y + offset, xerr=std, fmt="o", color=color, label=label, capsize=3)
    ax.set_yticks(
        y,
        [
            f"{r['rank']}. {r['name']}"
            + (" (baseline)" if r["significant"] is None else " *" if r["significant"] else "")
            for r in rows
        ],
    )
    ax.set_xlabel(f"accuracy (%), mean ± std over {len(board['seeds'])} seeds")
    ax.set_title(
        f"{board.get('name', 'compare')}: * = {board.get('metric', 'accuracy')} differs from "
        f"{board['baseline']} (paired test, Holm, p < {ALPHA})",
        fontsize=9,
    )
    fig.legend(fontsize=8, loc="outside lower center", ncols=2)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def print_leaderboard(board: dict[str, Any], console=None) -> None:
    """The leaderboard as a rich table, with what the columns mean."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    if not console.is_terminal:  # a log file or pipe: rich's 80 columns would wrap every cell
        console.width = max(console.width, 120)
    m = metric(board.get("metric", "accuracy"))
    table = Table(
        title=f"compare {board.get('name', '')}: {len(board['seeds'])} seeds, "
        f"baseline {board['baseline']}, ranked by validation {m.name}"
    )
    shown = [] if m.name == "accuracy" else [f"val {m.name} %", f"test {m.name} %"]
    for col in (
        "rank",
        "variant",
        *shown,
        "val acc %",
        "test acc %",
        "test acc 95 % CI",
        f"Δ test {m.name}",
        "p Holm",
        "verdict",
        "training s",
        "trainable params",
    ):
        table.add_column(col, justify="left" if col in ("variant", "verdict") else "right")
    for v in board["variants"]:
        diff = "" if v["diff_test"] is None else f"{100 * v['diff_test']:+.2f}"
        p = (
            ""
            if v["p_holm"] is None
            else "< 1e-300"
            if v["p_holm"] == 0  # float underflow
            else f"{v['p_holm']:.3g}"
        )
        ci = v.get("test_accuracy_ci")
        table.add_row(
            str(v["rank"]),
            v["name"],
            *([] if not shown else [_pm(v[f"val_{m.name}"]), _pm(v[f"test_{m.name}"])]),
            _pm(v["val_accuracy"]),
            _pm(v["test_accuracy"]),
            "" if not ci else f"{100 * ci['low']:.2f}\u2013{100 * ci['high']:.2f}",
            diff,
            p,
            v["verdict"],
            f"{v['seconds']['mean']:.1f} ± {v['seconds']['std']:.1f}",
            f"{v['params']:,}",
        )
    console.print(table)
    console.print(
        f"{selection_note(m.name)}. Δ test and p: {m.test}; 'real' means p < {ALPHA}, "
        "'not shown' means this data cannot tell the variant from the baseline. Test accuracy's "
        "95 % CI: Wilson, around the mean over seeds, on the number of test images. training s: "
        "the epochs' own seconds (start-up and data loading left out)."
    )


def _pm(stat: dict[str, float]) -> str:
    if stat["mean"] is None or not math.isfinite(stat["mean"]):
        return "nan"
    return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"
