"""notebooks/mnist_tutorial.ipynb: committed without outputs, in sync with its jupytext twin
(mnist_tutorial.py, percent format), and it runs top to bottom in a fresh kernel on the bundled
sample, telling the tutorial's story (raw pixels fail, standardized inputs work) with every
exercise's check passing: it is the answer key.

notebooks/exercises.ipynb: what scripts/make_exercises.py makes of the key now, and it runs three
ways: as committed (the first check stops it with one line), with typical wrong answers in its
exercise cells (every check says "not yet" with its hint, no traceback), and as the key."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
IPYNB = NOTEBOOKS / "mnist_tutorial.ipynb"
TWIN = NOTEBOOKS / "mnist_tutorial.py"
EXERCISES = NOTEBOOKS / "exercises.ipynb"
# each exercise cell, in order, and the name its check prints
CHECKS = {
    "data": "data",
    "model": "model",
    "raw": "raw pixels",
    "lr": "learning rates",
    "standardize": "standardization",
    "beat": "beat this",
    "metrics": "metrics",
}


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
    # the answer key: every exercise's check passes
    for name in CHECKS.values():  # once each: the cell's display of the result adds no copy
        assert text.count(f"✓ {name}: passed") == 1, name
    assert "✗" not in text and "better, and not luck" in text
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


# ---- the exercise notebook --------------------------------------------------------------
def _make_exercises(name="make_exercises"):
    import importlib.util

    script = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exercises_notebook_is_made_from_the_key_now():
    # after an edit of the key: python scripts/make_exercises.py
    assert EXERCISES.read_text(encoding="utf-8") == _make_exercises().exercise_notebook()


def test_exercises_notebook_leaves_each_exercise_to_write_then_checks_it():
    nb = json.loads(EXERCISES.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    text = "".join("".join(c["source"]) for c in nb["cells"])
    assert "SOLUTION" not in text and "Recipe(\n    hidden=" not in text
    assert "batch_norm=True" not in text and "key's own pick" not in text
    names = [c["metadata"]["exercise"] for c in code if "exercise" in c["metadata"]]
    assert names == list(CHECKS)
    for i, cell in enumerate(code):
        if "exercise" in cell["metadata"]:
            assert "= ..." in "".join(cell["source"])  # a placeholder, and nothing solved
            assert "".join(code[i + 1]["source"]).startswith("check.")
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "jupytext" not in nb["metadata"]  # generated, not paired: edit the key instead


@pytest.mark.parametrize(
    "source, problem",
    [
        ("a\n# BEGIN SOLUTION\nb\n", "without its # END SOLUTION"),
        ("a\n# END SOLUTION\n", "line 2: # END SOLUTION where it does not belong"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n", "line 2: # BEGIN SOLUTION where"),
    ],
)
def test_misplaced_solution_markers_are_named(source, problem):
    with pytest.raises(ValueError, match=problem):
        _make_exercises().strip_solutions(source, "cell 3")


def test_solution_blocks_are_cut_and_the_rest_kept():
    source = "x = ...  # yours\n# BEGIN SOLUTION\nx = 1\n    # END SOLUTION\nprint(x)\n"
    assert _make_exercises().strip_solutions(source, "cell") == "x = ...  # yours\nprint(x)"
    text = "Try it.\n\n<!-- BEGIN SOLUTION -->\nThe key's pick.\n<!-- END SOLUTION -->"
    markers = _make_exercises().MARKDOWN_MARKERS
    assert _make_exercises().strip_solutions(text, "cell", markers) == "Try it."


def test_the_pictures_solve_each_exercise_as_the_key_does():
    import nbformat

    pictures = _make_exercises("make_check_pictures")
    cells = [c for c in nbformat.read(IPYNB, as_version=4).cells if "exercise" in c.metadata]
    assert {c.metadata["exercise"] for c in cells} >= set(pictures.PICTURES)
    for cell in cells:
        code = pictures.solved(cell.source)
        assert "SOLUTION" not in code and "= ...  #" not in code, code
        compile(code, cell.metadata["exercise"], "exec")  # what remains is a whole program
    assert "x_test.mean()" in pictures.LEAKY  # the wrong answer the picture shows
    with pytest.raises(SystemExit, match="no solution block"):
        pictures.solved("x = ...  # yours")


def _execute(nb, kernel_manager, work, allow_errors=False):
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        km=kernel_manager,
        timeout=240,
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(work)}},
    )
    return client.execute()


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


@pytest.fixture
def exercise_env(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.delenv("MNISTLAB_TUTORIAL_FULL", raising=False)
    monkeypatch.delenv("MNISTLAB_TUTORIAL_OUT", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return work


def test_unfilled_exercises_stop_at_the_first_check_with_one_line(exercise_env, kernel_manager):
    import nbformat
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(EXERCISES, as_version=4)
    with pytest.raises(CellExecutionError):
        _execute(nb, kernel_manager, exercise_env)
    first = next(i for i, c in enumerate(nb.cells) if c.source.startswith("check."))
    (error,) = nb.cells[first].outputs
    assert error.output_type == "error" and error.ename == "NotDone"
    assert error.traceback == [
        "NotDone: x_train is still `...`: load the images and labels as the tutorial does, run "
        "that cell, then this check again"
    ]
    assert all(c.get("execution_count") is None for c in nb.cells[first + 1 :])


# Typical wrong answers, two per check (one per run), written as a learner would.
WRONG = [
    {
        "data": "x_train, x_test = ds.x_train, ds.x_test\n"
        "y_train, y_test = np.eye(10)[ds.y_train], np.eye(10)[ds.y_test]\n"
        "class_counts = np.bincount(ds.y_test)\n"
        "pixel_mean, pixel_var = x_train.mean(), x_train.std()",
        "model": "model, optimizer, loss = Recipe(hidden=[128, 64, 128]), None, None",
        "raw": 'raw = train("raw-but-scaled", recipe)',
        "lr": 'lr_runs = {0.01: raw, 10.0: train("lr10", recipe.replace(normalize="none", lr=10))}',
        "standardize": "xt = ds.x_train.reshape(len(ds.x_train), -1)\n"
        "xe = ds.x_test.reshape(len(ds.x_test), -1)\n"
        "mean, std = xe.mean(), xe.std()  # the test set's\n"
        "x_train_std, x_test_std = (xt - mean) / std, (xe - mean) / std",
        "beat": 'my_runs = [train("bn-seed0", recipe.replace(batch_norm=True))]\n'
        "best_run = baseline",
        "metrics": "from sklearn.metrics import recall_score\n"
        "y_pred = proba.argmax(axis=1)\n"
        "precision = (y_pred == ds.y_test).mean()\n"
        'recall = recall_score(ds.y_test, y_pred, average="macro")\n'
        "r2 = None",
    },
    {
        "data": "x_train = ds.x_train.reshape(-1, 784) / 255\n"
        "x_test = ds.x_test.reshape(-1, 784) / 255\n"
        "y_train, y_test = ds.y_train, ds.y_test\n"
        "class_counts = np.bincount(y_train)\n"
        "pixel_mean, pixel_var = x_train.mean(), x_train.var()",
        "model": "import torch\nfrom torch import nn\n"
        "model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),\n"
        "                      nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=10)\n"
        "loss = None",
        "raw": 'raw = {"loss": [0.61, 0.29], "accuracy": [0.83, 0.92]}  # a Keras History\'s dict',
        "lr": "lr_runs = {0.01: raw}",
        "standardize": "xt = ds.x_train.reshape(len(ds.x_train), -1)\n"
        "xe = ds.x_test.reshape(len(ds.x_test), -1)\n"
        "everything = np.concatenate([xt, xe])\n"
        "mean, std = everything.mean(), everything.std()\n"
        "x_train_std, x_test_std = (xt - mean) / std, (xe - mean) / std",
        "beat": 'my_runs = [train(f"drop-seed{s}", recipe.replace(dropout=0.5, seed=s))\n'
        "           for s in range(SEEDS)]\n"
        "best_run = baseline",
        "metrics": "from sklearn.metrics import precision_score, r2_score, recall_score\n"
        "y_pred = proba.argmax(axis=1)\n"
        "precision = recall_score(ds.y_test, y_pred, average=None)\n"
        "recall = precision_score(ds.y_test, y_pred, average=None)\n"
        "r2 = r2_score(ds.y_test, y_pred)",
    },
]
# what each check must say about them (its verdict line, then these)
SAID = [
    {
        "data": ["x_train has shape", "class_counts are the test set's", "standard deviation"],
        "model": ["hidden layer 2 has 64 units"],
        "raw": ["this run scaled its inputs"],
        "lr": ["none is smaller than the tutorial's 0.01", "lr 10: diverged"],
        "standardize": ["statistics of the test set: that leaks"],
        "beat": ["1 seed: one training shows that seed's luck"],
        "metrics": ["your precision is the accuracy"],
    },
    {
        "data": ["x_train holds values 0..1", "mean: that is of pixels scaled to 0..1"],
        "model": ["the output layer has no softmax", "the learning rate is 10"],
        "raw": ["this training is learning"],
        "lr": ["1 learning rate tried"],
        "standardize": ["statistics of train and test together: that leaks"],
        "beat": ["worse: -"],
        "metrics": ["are swapped", "your R² ", "is computed on the labels"],
    },
]


@pytest.mark.slow  # ~20 s each: a few short trainings on the sample in a fresh kernel
@pytest.mark.parametrize("case", [0, 1])
def test_wrong_answers_get_not_yet_with_a_hint_and_no_traceback(case, exercise_env, kernel_manager):
    import nbformat

    nb = nbformat.read(EXERCISES, as_version=4)
    for cell in nb.cells:
        if "exercise" in cell.metadata:
            cell.source = WRONG[case][cell.metadata["exercise"]]
    _execute(nb, kernel_manager, exercise_env)  # raises on any error in any cell

    said = {}
    for i, cell in enumerate(nb.cells):
        if "exercise" in cell.metadata:
            said[cell.metadata["exercise"]] = _text(nb.cells[i + 1])
    assert list(said) == list(CHECKS)
    for exercise, name in CHECKS.items():
        out = said[exercise]
        assert out.startswith(f"✗ {name}: not yet\n"), out
        assert "\n  hint: " in out and "Traceback" not in out, out
        for fragment in SAID[case][exercise]:
            assert fragment in out, (exercise, fragment, out)
    assert os.listdir(exercise_env) == ["tutorial-out"]
