"""The leaderboard of a compare: paired significance, ranking, and its CSV, JSON, PNG and table.

Each variant is compared with the baseline on the same test images by an exact McNemar test
(``scipy.stats.binomtest`` on the discordant pairs), per seed pair and pooled over seeds, with
Holm's correction over the variants (see ``mnistlab.experiments.compare`` for why pooled).
Ranking uses validation accuracy only.

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

from mnistlab.evaluation.significance import ALPHA, verdict
from mnistlab.fsio import atomic_write_json, atomic_write_text

SELECTION_NOTE = (
    "ranked by validation accuracy; the test set is reported only, never used to select or rank"
)


# ---- statistics -------------------------------------------------------------------------
def mcnemar(baseline_only: int, variant_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts (1.0 when there are none).

    ``baseline_only``: images the baseline got right and the variant wrong; ``variant_only``:
    the reverse. Under "no difference" each discordant image goes either way with chance 1/2.
    """
    n = baseline_only + variant_only
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(variant_only, n, 0.5, alternative="two-sided").pvalue)


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
    records: dict[tuple[str, int], dict[str, Any]], variants, seed_list: list[int], ds
) -> dict[str, Any]:
    """The leaderboard.json object from one ``run_record`` per (variant, seed) of
    ``variants`` (a ``compare.Variants``: name, baseline, recipes)."""
    from mnistlab.engines.arch import network

    correct = {key: rec["correct"] for key, rec in records.items()}
    rows = []
    for name, recipe in variants.recipes.items():
        run_rows = [
            {
                "seed": s,
                "path": f"runs/{name}-seed{s}",
                **{k: v for k, v in records[name, s].items() if k != "correct"},
            }
            for s in seed_list
        ]
        rows.append(
            {
                "name": name,
                "recipe": recipe.to_dict(),
                "params": network(recipe, len(ds.class_names)).trainable_count,
                "runs": run_rows,
                "val_accuracy": _mean_std([r["val_accuracy"] for r in run_rows]),
                "test_accuracy": _mean_std([r["test_accuracy"] for r in run_rows]),
                "seconds": _mean_std([r["seconds"] for r in run_rows]),
                "diff_test": None,
                "p_value": None,
                "p_holm": None,
                "significant": None,
                "verdict": "baseline",
            }
        )
    base = next(r for r in rows if r["name"] == variants.baseline)
    others = [r for r in rows if r is not base]
    for row in others:
        pooled_b = pooled_c = 0
        for run in row["runs"]:
            v, b = correct[row["name"], run["seed"]], correct[variants.baseline, run["seed"]]
            n_b, n_c = int(np.sum(b & ~v)), int(np.sum(v & ~b))
            run["mcnemar"] = {
                "baseline_only": n_b,
                "variant_only": n_c,
                "p_value": mcnemar(n_b, n_c),
            }
            pooled_b, pooled_c = pooled_b + n_b, pooled_c + n_c
        row["discordant"] = {"baseline_only": pooled_b, "variant_only": pooled_c}
        row["diff_test"] = row["test_accuracy"]["mean"] - base["test_accuracy"]["mean"]
        row["p_value"] = mcnemar(pooled_b, pooled_c)
    for row, p in zip(others, holm([r["p_value"] for r in others])):
        row["p_holm"] = p
        row["significant"] = bool(p < ALPHA)
        row["verdict"] = verdict(row["diff_test"], p)
    # Rank on validation only; NaN (a diverged run) sorts last.
    order = sorted(rows, key=lambda r: -np.nan_to_num(r["val_accuracy"]["mean"], nan=-1.0))
    for rank, row in enumerate(order, 1):
        row["rank"] = rank
    return {
        "name": variants.name,
        "baseline": variants.baseline,
        "seeds": seed_list,
        "selection": "validation",
        "note": SELECTION_NOTE,
        "test": {
            "method": "exact McNemar (scipy.stats.binomtest) on discordant test images, "
            "per seed pair and pooled over seeds; Holm over variants",
            "alpha": ALPHA,
        },
        "dataset": {"name": ds.name, "train": len(ds.x_train), "test": len(ds.x_test)},
        "variants": order,
    }


# ---- writing ----------------------------------------------------------------------------
CSV_FIELDS = (
    "rank",
    "variant",
    "val_mean",
    "val_std",
    "test_mean",
    "test_std",
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
    w.writerow(CSV_FIELDS)
    for v in board["variants"]:
        w.writerow(
            [
                v["rank"],
                v["name"],
                v["val_accuracy"]["mean"],
                v["val_accuracy"]["std"],
                v["test_accuracy"]["mean"],
                v["test_accuracy"]["std"],
                v["seconds"]["mean"],
                v["seconds"]["std"],
                v["params"],
                _blank(v["diff_test"]),
                _blank(v["p_value"]),
                _blank(v["p_holm"]),
                v["verdict"],
            ]
        )
    atomic_write_text(out / "leaderboard.csv", buf.getvalue())
    plot_leaderboard(board, out / "leaderboard.png")
    board["report"] = write_report(out)


def write_report(out: Path) -> str:
    """The compare's HTML page, and first the report.html of every run folder that lacks one,
    so each of the page's run links leads somewhere."""
    from mnistlab.pages.compare_page import write_compare

    return str(write_compare(out, run_reports=True))


def _blank(v: Any) -> Any:
    return "" if v is None else v


def plot_leaderboard(board: dict[str, Any], path: Path) -> Path:
    """Validation and test accuracy, mean +- std over seeds, one row per variant by rank."""
    from mnistlab.plots import _figure, _save

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
        f"{board.get('name', 'compare')}: * = differs from {board['baseline']} "
        f"(McNemar, Holm, p < {ALPHA})",
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
    table = Table(
        title=f"compare {board.get('name', '')}: {len(board['seeds'])} seeds, "
        f"baseline {board['baseline']}"
    )
    for col in (
        "rank",
        "variant",
        "val acc %",
        "test acc %",
        "Δ test",
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
        table.add_row(
            str(v["rank"]),
            v["name"],
            _pm(v["val_accuracy"]),
            _pm(v["test_accuracy"]),
            diff,
            p,
            v["verdict"],
            f"{v['seconds']['mean']:.1f} ± {v['seconds']['std']:.1f}",
            f"{v['params']:,}",
        )
    console.print(table)
    console.print(
        f"{SELECTION_NOTE}. Δ test and p: exact McNemar on the same test images, "
        f"discordant pairs pooled over seeds, Holm-corrected over variants; 'real' "
        f"means p < {ALPHA}, 'not shown' means this data cannot tell the variant from "
        f"the baseline. training s: the epochs' own seconds (start-up and data loading left out)."
    )


def _pm(stat: dict[str, float]) -> str:
    if stat["mean"] is None or not math.isfinite(stat["mean"]):
        return "nan"
    return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f}"
