"""The package's public verbs: plain functions, light to import, one call per workflow step."""

import inspect
import os
import subprocess
import sys

import numpy as np

import mnistlab

VERBS = ("fit", "resume", "explore", "evaluate", "predict", "compare", "search", "report")
VERBS += ("export", "serve", "load_run")


def test_import_is_light_and_every_verb_is_a_plain_function(tmp_path):
    code = (
        "import sys, mnistlab\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'sklearn', 'mnistlab.training.fit') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
        f"print(all(callable(getattr(mnistlab, v)) for v in {VERBS!r}), 'torch' in sys.modules)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MNISTLAB_HOME": str(tmp_path)},
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:2] == ["[]", "True False"]
    for verb in VERBS:
        assert inspect.isfunction(getattr(mnistlab, verb)), verb


def test_a_verb_stays_a_function_after_its_step_module_is_imported():
    import mnistlab.evaluation.evaluate  # noqa: F401
    import mnistlab.exploration  # noqa: F401
    import mnistlab.use.predict  # noqa: F401

    assert inspect.isfunction(mnistlab.explore) and inspect.isfunction(mnistlab.evaluate)
    assert inspect.isfunction(mnistlab.predict)


def test_one_verb_per_step_end_to_end(tmp_path):
    ds = mnistlab.datasets.load("mnist-sample")
    summary = mnistlab.explore(ds, seed=0)
    assert summary["classes"]["train"]["n"] == len(ds.x_train)
    run = mnistlab.fit(
        mnistlab.Recipe(epochs=1, hidden=[16], batch_size=128),
        "mnist-sample",
        out=tmp_path / "r",
        quiet=True,
    )
    assert (run.path / "calibration.json").is_file() and not run.warnings  # as `train` leaves it
    metrics = mnistlab.evaluate(run.path, out=tmp_path / "figs")
    assert metrics["split"] == "test" and metrics["n"] == len(ds.x_test)
    assert (
        mnistlab.evaluate(run, split="test", out=tmp_path / "figs")["accuracy"]
        == metrics["accuracy"]
    )  # a loaded Run works as well as its folder
    (answer,) = mnistlab.predict(run.path, [np.asarray(ds.x_test[0])], top=2)
    assert len(answer.top) == 2 and 0 <= answer.predicted <= 9
    assert mnistlab.load_run(run.path).history == run.history
    assert mnistlab.report(run).name == "report.html"
    assert mnistlab.resume(run).history == run.history  # already complete: nothing to do
