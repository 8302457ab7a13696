"""One parameter count everywhere: a batch-norm recipe shows the same number of trainable
parameters on its run report, in the compare leaderboard (JSON, table and page) and in the
memory estimate, all from the network walk (``mnistlab.engines.arch``)."""

from __future__ import annotations

import io
import json

from rich.console import Console

from mnistlab import datasets
from mnistlab.experiments import compare as cmp
from mnistlab.experiments import leaderboard as lb
from mnistlab.pages import run_pieces
from mnistlab.training import budget

VARIANTS = """
[base]
hidden = [16]
epochs = 1
batch_size = 64
[variants.plain]
[variants.bn]
batch_norm = true
dropout = 0.2
"""
# kernels and biases 784*16+16 + 16*10+10, batch norm's gamma and beta 2*16; its moving mean
# and variance (2*16 more values in the model file) are running state, not parameters
BN_TRAINABLE = 12_560 + 170 + 32


def test_a_batch_norm_recipe_counts_the_same_on_every_page(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text(VARIANTS)
    sample = cmp.slice_dataset(datasets.load("mnist-sample"), 600, 200)
    out = tmp_path / "c"
    board = cmp.compare(cmp.load_variants(path), seeds=1, out=out, dataset=sample)

    row = next(v for v in board["variants"] if v["name"] == "bn")
    assert row["params"] == BN_TRAINABLE
    saved = json.loads((out / "leaderboard.json").read_text())
    assert next(v for v in saved["variants"] if v["name"] == "bn")["params"] == BN_TRAINABLE

    run_dir = out / row["runs"][0]["path"]
    pieces = run_pieces.gather(run_dir)
    assert pieces["evaluation"].value["params"] == BN_TRAINABLE
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"({BN_TRAINABLE:,} trainable parameters)" in report

    page = (out / "report.html").read_text(encoding="utf-8")
    assert "trainable parameters" in page and f"{BN_TRAINABLE:,}" in page
    console = Console(file=io.StringIO(), width=200)
    lb.print_leaderboard(board, console)
    table = console.file.getvalue()
    assert "trainable params" in table and f"{BN_TRAINABLE:,}" in table

    recipe = pieces["recipe"].value
    assert budget.estimate(recipe, 600, 0, 200).parameters == BN_TRAINABLE
