"""The package's public verbs: lazy, light to import, one call per workflow step."""

import os
import subprocess
import sys

import numpy as np

import mnistlab


def test_import_is_light_and_verbs_load_on_use(tmp_path):
    code = (
        "import sys, mnistlab\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'sklearn', 'mnistlab.train') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
        "print(callable(mnistlab.fit), callable(mnistlab.explore), 'torch' in sys.modules)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MNISTLAB_HOME": str(tmp_path)},
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:2] == ["[]", "True True False"]


def test_one_verb_per_step_end_to_end(tmp_path):
    ds = mnistlab.datasets.load("mnist-sample")
    summary = mnistlab.explore(ds, seed=0)
    assert summary["classes"]["train"]["n"] == len(ds.x_train)
    from mnistlab import explore  # the module spelling keeps working beside the verb

    assert explore.explore is not None and mnistlab.explore is explore
    run = mnistlab.fit(
        mnistlab.Recipe(epochs=1, hidden=[16], batch_size=128),
        "mnist-sample",
        out=tmp_path / "r",
        quiet=True,
    )
    metrics = mnistlab.evaluate(run.path, out=tmp_path / "figs")
    assert metrics["split"] == "test" and metrics["n"] == len(ds.x_test)
    assert (
        mnistlab.evaluate(run, split="test", out=tmp_path / "figs")["accuracy"]
        == metrics["accuracy"]
    )  # a loaded Run works as well as its folder
    (answer,) = mnistlab.predict(run.path, [np.asarray(ds.x_test[0])], top=2)
    assert len(answer.top) == 2 and 0 <= answer.predicted <= 9
    assert mnistlab.load_run(run.path).history == run.history
    assert {"explore", "fit", "evaluate", "predict"} <= set(dir(mnistlab))
