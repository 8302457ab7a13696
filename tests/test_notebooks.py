"""notebooks/mnist_tutorial.ipynb: committed without outputs, in sync with its jupytext twin
(mnist_tutorial.py, percent format), and it runs top to bottom in a fresh kernel on the bundled
sample, telling the tutorial's story (raw pixels fail, standardized inputs work)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
IPYNB = NOTEBOOKS / "mnist_tutorial.ipynb"
TWIN = NOTEBOOKS / "mnist_tutorial.py"


def test_notebook_is_committed_without_outputs():
    nb = json.loads(IPYNB.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    markdown = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
    assert len(code) >= 10 and len(markdown) >= 10
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert nb["metadata"]["jupytext"]["formats"] == "ipynb,py:percent"


def test_notebook_and_its_percent_twin_are_in_sync():
    import jupytext

    a, b = jupytext.read(IPYNB), jupytext.read(TWIN)
    cells = lambda nb: [(c.cell_type, c.source) for c in nb.cells]  # noqa: E731
    # after an edit of either file: jupytext --sync notebooks/mnist_tutorial.ipynb
    assert cells(a) == cells(b)


@pytest.fixture
def kernel_manager(tmp_path):
    """A kernel running this interpreter (not whatever 'python3' means on the machine)."""
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    prefix = tmp_path / "jupyter"
    install(kernel_name="mnistlab-tutorial", prefix=str(prefix))
    ksm = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    spec = ksm.get_kernel_spec("mnistlab-tutorial")
    assert spec.argv[0] == sys.executable
    return KernelManager(kernel_name="mnistlab-tutorial", kernel_spec_manager=ksm)


@pytest.mark.slow  # ~1-2 min: four short trainings and a 5 x 2 compare in a fresh kernel
def test_notebook_runs_top_to_bottom_on_the_sample(tmp_path, monkeypatch, kernel_manager):
    import nbformat
    from nbclient import NotebookClient

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.delenv("MNISTLAB_TUTORIAL_FULL", raising=False)
    monkeypatch.delenv("MNISTLAB_TUTORIAL_OUT", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(IPYNB, as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell("import json; print('RESULTS=' + json.dumps(results))")
    )
    client = NotebookClient(
        nb,
        km=kernel_manager,
        timeout=240,
        allow_errors=False,
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()  # raises CellExecutionError naming the cell on any error

    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    results = json.loads(text.split("RESULTS=")[1].splitlines()[0])
    assert "full MNIST: False" in text and "mnist-sample: train (10000, 28, 28)" in text
    assert (
        results["test accuracy, raw pixels"] < 0.3 and results["test accuracy, standardized"] > 0.8
    )
    assert "health check: epoch 1:" in text and "unscaled raw pixels" in text
    assert results["best variant (by validation)"] in ("sgd", "adam", "l2", "dropout", "batch-norm")
    # the comparison: a leaderboard with verdicts, and a compare page linking each run's report
    shown = "".join(
        o.get("data", {}).get("text/markdown", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "| rank | variant | validation accuracy | test accuracy |" in shown
    assert "against sgd, Holm p = " in text and "winner by validation accuracy: " in text
    board = json.loads((work / "tutorial-out" / "compare" / "leaderboard.json").read_text())
    assert board["seeds"] == [0, 1] and len(board["variants"]) == 5
    assert board["variants"][0]["name"] == results["best variant (by validation)"]
    assert (work / "tutorial-out" / "compare" / "report.html").is_file()
    assert all(
        (work / "tutorial-out" / "compare" / r["path"] / "report.html").is_file()
        for v in board["variants"]
        for r in v["runs"]
    )
    assert 0.5 < results["R² of probabilities"] <= 1.0
    assert results["my digit, predicted as"] in "0123456789"
    # figures were shown inline and everything went under the working folder
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(images) >= 5
    assert (work / "tutorial-out" / "runs" / "standardized" / "report.html").is_file()
    assert (work / "tutorial-out" / "my_digit.jpg").is_file()
    assert os.listdir(work) == ["tutorial-out"]
