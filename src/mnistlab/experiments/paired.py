"""Compare models already trained, on the same test images: runs, and predictions or ONNX
models from any framework (``mnistlab compare RUN_A RUN_B keras.npy model.onnx``).

Nothing is trained, so nothing is ranked on validation: the first input is the baseline and
every other is tested against it on the very same images with the exact McNemar test of the
leaderboard (``leaderboard.mcnemar``), Holm-corrected over the others (``leaderboard.holm``).
One model per input, one training each: the test speaks of these trained models on this test
set, not of their recipes over seeds (that is what a variants compare measures).

>>> rows = paired_rows({"a": np.array([1, 1, 0, 0], bool), "b": np.array([1, 1, 1, 1], bool)}, "a")
>>> rows[1]["discordant"], rows[1]["p_value"]
({'baseline_only': 0, 'variant_only': 2}, 0.5)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import MnistlabError
from mnistlab.evaluation import sources
from mnistlab.evaluation.significance import ALPHA, verdict
from mnistlab.experiments.leaderboard import holm, mcnemar
from mnistlab.fsio import atomic_write_json, atomic_write_text, make_dirs

METHOD = (
    "exact McNemar (scipy.stats.binomtest) on the test images one model got right and the "
    "other wrong, each model against the baseline; Holm over the others"
)
CSV_FIELDS = ("name", "kind", "test_accuracy", "diff_test", "baseline_only", "variant_only",
              "p_value", "p_holm", "verdict", "path")  # fmt: skip


def compare_trained(
    paths,
    *,
    dataset=None,
    data_dir=None,
    pixels: str = "raw",
    out: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Test every model of ``paths`` (run folders, .npy predictions, .onnx models; see
    ``evaluation.sources``) against the first, on their shared test set; with ``out``, write
    comparison.json and comparison.csv there. Returns the comparison."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise MnistlabError(
            f"compare: {len(paths)} trained model given; give two or more (RUN folders, .npy, "
            ".onnx), or one variants file (.toml) to train and compare"
        )
    test, found = sources.load(paths, dataset, data_dir, pixels)
    log = log or (lambda _text: None)
    log(f"compare on {test.describe()}: baseline {paths[0]}")
    names = _names(found)
    for name, p in zip(names, found):
        if p.note:
            log(f"note: {name}: {p.note}")
    rows = paired_rows({n: p.correct(test) for n, p in zip(names, found)}, names[0])
    for row, p in zip(rows, found):
        row.update(kind=p.kind, path=str(p.path))
    result = {
        "baseline": names[0],
        "dataset": {"name": test.name, "test": len(test.y)},
        "test": {"method": METHOD, "alpha": ALPHA},
        "models": rows,
    }
    if out is not None:
        result["files"] = _write(make_dirs(out), result)
    return result


def _names(found: list[sources.Predictions]) -> list[str]:
    """Each input's name for the table: its file or folder name, its path where two share one."""
    names = [p.name for p in found]
    return [str(p.path) if names.count(p.name) > 1 else p.name for p in found]


def paired_rows(correct: dict[str, np.ndarray], baseline: str) -> list[dict[str, Any]]:
    """One row per model (baseline first): its test accuracy and, against the baseline on the
    same images, the difference, the discordant counts, the McNemar p-value, the Holm-adjusted
    one and a verdict ("real: better", "real: worse", "not shown")."""
    base = correct[baseline]
    rows = [{"name": baseline, "test_accuracy": float(base.mean()), "verdict": "baseline"}]
    for name, hit in correct.items():
        if name == baseline:
            continue
        b, v = int(np.sum(base & ~hit)), int(np.sum(hit & ~base))
        rows.append(
            {
                "name": name,
                "test_accuracy": float(hit.mean()),
                "diff_test": float(hit.mean() - base.mean()),
                "discordant": {"baseline_only": b, "variant_only": v},
                "p_value": mcnemar(b, v),
            }
        )
    others = rows[1:]
    for row, p in zip(others, holm([r["p_value"] for r in others])):
        row["p_holm"] = p
        row["significant"] = bool(p < ALPHA)
        row["verdict"] = verdict(row["diff_test"], p)
    return rows


def _write(out: Path, result: dict[str, Any]) -> list[str]:
    atomic_write_json(out / "comparison.json", result)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in result["models"]:
        d = r.get("discordant", {})
        w.writerow(
            [
                r["name"],
                r["kind"],
                r["test_accuracy"],
                r.get("diff_test", ""),
                d.get("baseline_only", ""),
                d.get("variant_only", ""),
                r.get("p_value", ""),
                r.get("p_holm", ""),
                r["verdict"],
                r["path"],
            ]  # fmt: skip
        )
    atomic_write_text(out / "comparison.csv", buf.getvalue())
    return [str(out / "comparison.json"), str(out / "comparison.csv")]


def print_comparison(result: dict[str, Any], console=None) -> None:
    """The comparison as a rich table, with what its columns mean."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 120)
    data = result["dataset"]
    table = Table(title=f"{len(result['models'])} models on {data['name']} ({data['test']:,} "
                  f"test images), baseline {result['baseline']}")  # fmt: skip
    for col in ("model", "kind", "test acc %", "Δ test", "only base", "only it", "p Holm",
                "verdict"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("model", "kind", "verdict") else "right")
    for r in result["models"]:
        d = r.get("discordant", {})
        p = r.get("p_holm")
        table.add_row(
            r["name"],
            r["kind"],
            f"{100 * r['test_accuracy']:.2f}",
            "" if "diff_test" not in r else f"{100 * r['diff_test']:+.2f}",
            str(d.get("baseline_only", "")),
            str(d.get("variant_only", "")),
            "" if p is None else "< 1e-300" if p == 0 else f"{p:.3g}",
            r["verdict"],
        )
    console.print(table)
    console.print(
        f"Paired on the same test images: only base / only it = images the baseline / the "
        f"model got right and the other wrong; exact McNemar, Holm-corrected over the models. "
        f"'real' means p < {ALPHA}; 'not shown' means these images cannot tell the model from "
        "the baseline. One trained model each: this speaks of these models, not of their "
        "recipes over seeds."
    )
    for path in result.get("files", []):
        console.print(f"wrote {path}")
