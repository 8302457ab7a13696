"""train.py + cli/train.py: fit, run folder, determinism, resume after SIGKILL, torch-free path."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import types

import numpy as np
import pytest

from mnistlab import datasets, fsio, rundir
from mnistlab.datasets.preprocess import split_validation
from mnistlab.engines import _fast_module
from mnistlab.errors import RecipeError, RunError
from mnistlab.recipe import Recipe
from mnistlab.training.fit import epoch_order, fit

ENGINES = ["reference"] + (["fast"] if _fast_module() is not None else [])


@pytest.fixture(scope="module")
def small():
    ds = datasets.load("mnist-sample")
    return dataclasses.replace(ds, x_train=ds.x_train[:2000], y_train=ds.y_train[:2000])


def _cli(*args, env_home, timeout=180):
    env = {**os.environ, "MNISTLAB_HOME": str(env_home)}
    return subprocess.run(
        [sys.executable, "-m", "mnistlab", "train", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _same_weights(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_split_validation_takes_the_last_part_as_keras():
    x = np.arange(60000)
    xt, _, xv, _ = split_validation(x, x, 0.3)
    assert len(xt) == 42000 and xv[0] == 42000 and xv[-1] == 59999
    xt, _, xv, _ = split_validation(np.arange(7), np.arange(7), 0.3)
    assert len(xt) == 4 and xv.tolist() == [4, 5, 6]  # floor(7 * 0.7) = 4, Keras' rounding
    assert len(split_validation(x, x, 0.0)[2]) == 0
    with pytest.raises(RecipeError, match="validation_split"):  # Keras refuses it too
        split_validation(np.arange(1), np.arange(1), 0.3)


def test_epoch_order_is_a_function_of_seed_and_epoch():
    a = epoch_order(0, 1, 100)
    assert np.array_equal(a, epoch_order(0, 1, 100)) and sorted(a) == list(range(100))
    assert not np.array_equal(a, epoch_order(0, 2, 100))
    assert np.array_equal(epoch_order(0, 1, 5, shuffle=False), np.arange(5))


@pytest.mark.parametrize("engine", ENGINES)
def test_same_seed_same_history_bit_for_bit(small, tmp_path, engine):
    r = Recipe(epochs=2, hidden=[32, 32], engine=engine, seed=3)
    a = fit(r, small, out=tmp_path / "a", quiet=True)
    b = fit(r, small, out=tmp_path / "b", quiet=True)
    assert a.engine == engine
    assert _without_seconds(a.history) == _without_seconds(b.history)
    _same_weights(a.weights, b.weights)
    assert a.metrics["test"] == b.metrics["test"]
    c = fit(r.replace(seed=4), small, out=tmp_path / "c", quiet=True)
    assert _without_seconds(c.history) != _without_seconds(a.history)


def test_run_folder_contents(small, tmp_path, capsys):
    noted = dataclasses.replace(small, note="full MNIST not found; using the bundled sample")
    run = fit(Recipe(epochs=1, hidden=[16]), noted, out=tmp_path / "r")
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("dataset: mnist-sample") and "using the bundled sample" in first
    assert "Epoch 1/1" in out and "val_accuracy:" in out
    for name in (*rundir.REQUIRED, rundir.CHECKPOINT):
        assert (tmp_path / "r" / name).is_file(), name
    env = json.loads((tmp_path / "r" / rundir.ENVIRONMENT).read_text())
    assert (
        env["dataset"]["name"] == "mnist-sample" and env["dataset"]["checksums"] == small.checksums
    )
    assert env["dataset"]["note"] == noted.note and env["seed"] == 0 and env["engine"] == run.engine
    if run.engine == "fast":  # which compiled/plain backend ran is part of reproducing it
        assert env["engine_backend"] in ("numba", "numpy") and env["engine_threads"] >= 1
    assert list(run.history[0]) == list(rundir.HISTORY_FIELDS)
    assert run.metrics["train"]["accuracy"] == run.history[-1]["accuracy"]
    assert 0 <= run.metrics["test"]["accuracy"] <= 1
    # the run's own prediction path reproduces the test accuracy train.fit measured
    acc = float((run.predict_proba(small.x_test).argmax(1) == small.y_test).mean())
    assert acc == pytest.approx(run.metrics["test"]["accuracy"], abs=1e-3)


def test_resume_of_a_finished_run_changes_nothing(small, tmp_path):
    a = fit(Recipe(epochs=1, hidden=[8]), small, out=tmp_path / "r", quiet=True)
    b = fit(out=tmp_path / "r", resume=True, quiet=True, dataset=small)
    assert a.history == b.history
    _same_weights(a.weights, b.weights)


@pytest.mark.parametrize(
    "engine,hidden,epochs,split", [("reference", 32, 3, 0.7), ("fast", 128, 20, 0.3)]
)
def test_resume_after_sigkill_equals_uninterrupted(tmp_path, engine, hidden, epochs, split):
    """Epoch sizes are chosen so that the epochs after the first take >= ~1 s: the kill lands
    while training runs (asserted), not after it."""
    if engine not in ENGINES:
        pytest.skip("the fast engine is not installed")
    recipe = Recipe(
        hidden=[hidden],
        epochs=epochs,
        batch_size=8,
        engine=engine,
        validation_split=split,
        dataset="mnist-sample",
    )
    flags = [
        "--dataset",
        "mnist-sample",
        "--hidden",
        hidden,
        "--epochs",
        epochs,
        "--batch-size",
        8,
        "--engine",
        engine,
        "--validation-split",
        split,
        "--quiet",
    ]
    run_dir = tmp_path / "killed"
    env = {**os.environ, "MNISTLAB_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnistlab", "train", *map(str, flags), "--out", str(run_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ckpt = run_dir / rundir.CHECKPOINT
    deadline = time.monotonic() + 120
    try:
        while not ckpt.exists():  # written atomically: existing means complete
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (run_dir / rundir.MODEL).exists(), "the run finished before the kill"
    _, done, _ = rundir.read_checkpoint(ckpt)
    assert 1 <= done < epochs
    with pytest.raises(RunError, match="file is missing.*--resume"):  # incomplete until resumed
        rundir.load_run(run_dir)

    resumed = fit(out=run_dir, resume=True, quiet=True)
    whole = fit(recipe, out=tmp_path / "whole", quiet=True)
    assert resumed.engine == whole.engine == engine
    assert len(resumed.history) == epochs
    assert _without_seconds(resumed.history) == _without_seconds(whole.history)
    _same_weights(resumed.weights, whole.weights)
    assert resumed.metrics["test"] == whole.metrics["test"]
    assert resumed.environment["resumed"][0]["after_epoch"] == done


def test_fast_path_never_imports_torch(tmp_path):
    if "fast" not in ENGINES:
        pytest.skip("the fast engine is not installed")
    code = (
        "import sys, dataclasses\n"
        "from mnistlab import datasets\n"
        "from mnistlab.recipe import Recipe\n"
        "from mnistlab.training.fit import fit\n"
        "ds = datasets.load('mnist-sample')\n"
        "ds = dataclasses.replace(ds, x_train=ds.x_train[:500], y_train=ds.y_train[:500])\n"
        f"run = fit(Recipe(epochs=1, hidden=[8]), ds, out={str(tmp_path / 'r')!r}, quiet=True)\n"
        "run.predict_proba(ds.x_test[:10])\n"
        "assert run.engine == 'fast', run.engine\n"
        "print('torch' in sys.modules)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MNISTLAB_HOME": str(tmp_path / "home")},
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


def test_cli_train_recipe_file_flags_and_alias(tmp_path):
    Recipe(hidden=[16], epochs=1, dataset="mnist-sample").to_toml(tmp_path / "r.toml")
    p = _cli(
        "--recipe",
        tmp_path / "r.toml",
        "--lr",
        "0.05",
        "--no-nesterov",
        "--name",
        "exp",
        "--validation-split",
        "0.2",
        "--out",
        tmp_path / "run",
        env_home=tmp_path / "home",
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("dataset: mnist-sample")
    assert "Epoch 1/1" in p.stdout and "val_accuracy" in p.stdout
    saved = tomllib.loads((tmp_path / "run" / rundir.RECIPE).read_text())
    assert saved["optimizer"]["learning_rate"] == 0.05 and saved["optimizer"]["nesterov"] is False
    assert saved["model"]["hidden"] == [16] and saved["name"] == "exp"
    assert rundir.load_run(tmp_path / "run").recipe.validation_split == 0.2


def test_cli_train_quiet_prints_only_the_run_folder(tmp_path):
    p = _cli(
        "--dataset",
        "mnist-sample",
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--quiet",
        "--out",
        tmp_path / "run",
        env_home=tmp_path / "home",
    )
    assert p.returncode == 0 and p.stdout == f"{tmp_path / 'run'}\n", p.stdout + p.stderr


def test_cli_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from mnistlab.cli import main

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "f").write_text("")
    for args, words in (
        (["--batch-size", "0"], "batch_size"),
        (["--hidden", "12,x"], "--hidden"),
        (["--resume", tmp_path / "used", "--seed", "3"], "--resume"),
        (["--resume", tmp_path / "used", "--out", tmp_path / "x"], "drop --out"),
        (["--out", tmp_path / "used"], "not an empty folder"),
        (["--recipe", tmp_path / "nope.toml"], "nope.toml"),
    ):
        monkeypatch.setattr(sys, "argv", ["mnistlab", "train", *map(str, args)])
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith("error: ") and words in err, err
        assert "Traceback" not in err


def test_cli_stop_on_divergence_exits_1(tmp_path):
    p = _cli(
        "--dataset",
        "mnist-sample",
        "--epochs",
        "3",
        "--hidden",
        "8",
        "--normalize",
        "none",
        "--stop-on-divergence",
        "--quiet",
        "--out",
        tmp_path / "run",
        env_home=tmp_path / "home",
    )
    assert p.returncode == 1, p.stderr
    assert "normalize='standardize'" in p.stderr and "stop-on-divergence" in p.stderr
    assert len(rundir.load_run(tmp_path / "run").history) == 1


def test_no_validation_split_trains_on_everything_and_says_so(small, tmp_path):
    # validation_split = 0 (Keras' own default; the fast presets use it) must not crash fit.
    run = fit(
        Recipe(epochs=1, hidden=[8], validation_split=0.0), small, out=tmp_path / "r", quiet=True
    )
    assert run.history[0]["val_loss"] is None and run.history[0]["val_accuracy"] is None
    assert (
        run.metrics["train"]["val_accuracy"] is None and 0 <= run.metrics["test"]["accuracy"] <= 1
    )
    loaded = rundir.load_run(tmp_path / "r")
    assert loaded.history[0]["val_loss"] is None


def test_relative_data_dir_is_recorded_absolute(mnist_dir, tmp_path, monkeypatch):
    # `train --data-dir rel/` then `evaluate RUN` from another folder must still find the data.
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "mn").symlink_to(mnist_dir)
    monkeypatch.chdir(tmp_path / "w")
    fit(
        Recipe(
            epochs=1,
            hidden=[8],
            batch_size=256,
            validation_split=0.9,
            dataset="mnist",
            data_dir="mn",
        ),
        out=tmp_path / "r",
        quiet=True,
        data_dir="mn",
    )
    want = str((tmp_path / "w" / "mn").resolve())
    assert rundir.load_run(tmp_path / "r").recipe.data_dir == want
    env = json.loads((tmp_path / "r" / rundir.ENVIRONMENT).read_text())
    assert env["dataset"]["data_dir"] == want


def test_resume_with_a_damaged_environment_json_is_a_clear_error(small, tmp_path):
    fit(Recipe(epochs=1, hidden=[8]), small, out=tmp_path / "r", quiet=True)
    (tmp_path / "r" / rundir.MODEL).unlink()  # incomplete again, so resume reads environment.json
    for env in (
        {"engine": "fast", "dataset": "mnist-sample"},  # not an object
        {"engine": "fast", "dataset": {"checksums": {}}},
    ):  # no name
        (tmp_path / "r" / rundir.ENVIRONMENT).write_text(json.dumps(env))
        with pytest.raises(RunError, match="environment.json.*'dataset'"):
            fit(out=tmp_path / "r", resume=True, quiet=True)


# ---- failure modes: resources, concurrent writers, edited or half-made run folders ----------
import errno  # noqa: E402

from mnistlab.rundir import lock as runlock  # noqa: E402


def _fail_in_epoch(monkeypatch, epoch, action):
    """Make the engine run ``action()`` when it starts epoch ``epoch`` (0-based)."""
    import mnistlab.training.fit as fit_module

    real = fit_module.make_engine

    def make(*a, **k):
        eng = real(*a, **k)
        train = eng.train_epoch

        def train_epoch(x, y, order, lrs, e, *rest, **kw):
            if e == epoch:
                action()
            return train(x, y, order, lrs, e, *rest, **kw)

        eng.train_epoch = train_epoch
        return eng

    monkeypatch.setattr(fit_module, "make_engine", make)  # where fit calls it


def _listing(d):
    return sorted(p.name for p in d.iterdir())


FINISHED = sorted(
    [
        rundir.RECIPE,
        rundir.HISTORY,
        rundir.METRICS,
        rundir.MODEL,
        rundir.ENVIRONMENT,
        rundir.CHECKPOINT,
        rundir.PREDICTIONS,
    ]
)


def test_a_finished_run_folder_holds_only_its_files(tmp_path, small):
    run = fit(Recipe(epochs=1, hidden=[8]), small, out=tmp_path / "r", quiet=True)
    rundir.update_metrics(run.path, {"extra": 1})
    assert _listing(run.path) == FINISHED  # no .lock, no metrics.json.lock


def test_out_with_dot_dot_makes_no_stray_folder(tmp_path, small):
    run = fit(Recipe(epochs=1, hidden=[8]), small, out=tmp_path / "x" / ".." / "y", quiet=True)
    assert _listing(tmp_path) == ["y"] and run.path == tmp_path / "y"


def test_a_recipe_that_cannot_fit_in_memory_fails_before_anything_is_made(tmp_path, small):
    with pytest.raises(
        RecipeError, match=r"needs about [\d.]+ TiB of memory .* 'hidden'.* is available"
    ):
        fit(Recipe(epochs=1, hidden=[65_536] * 16), small, out=tmp_path / "r", quiet=True)
    assert _listing(tmp_path) == []


def test_more_threads_than_cpus_is_refused_for_a_new_run(tmp_path, small):
    with pytest.raises(RecipeError, match=r"'threads': .* this machine has \d+ CPUs"):
        fit(
            Recipe(epochs=1, hidden=[8], threads=(os.cpu_count() or 1) + 1),
            small,
            out=tmp_path / "r",
            quiet=True,
        )
    assert _listing(tmp_path) == []


@pytest.mark.parametrize(
    "cause", ["memory", "disk full", "memory at the end", "disk full at the end"]
)
def test_out_of_memory_or_disk_mid_run_is_one_line_and_resumable(
    tmp_path, small, monkeypatch, fail_writes, cause
):
    recipe = Recipe(epochs=3, hidden=[8])
    run_dir = tmp_path / "r"

    def action():
        if cause.startswith("memory"):
            raise MemoryError
        fail_writes(run_dir, errno.ENOSPC)  # the disk fills up

    if cause.endswith("at the end"):  # writing the model, after the last checkpoint
        real = rundir.write_model
        monkeypatch.setattr(rundir, "write_model", lambda *a: (action(), real(*a)))
    else:
        _fail_in_epoch(monkeypatch, 1, action)
    expected = {
        "memory": r"out of memory in epoch 2: free memory and continue with mnistlab "
        r"train --resume .* \(it keeps the checkpoint after epoch 1\)",
        "memory at the end": r"out of memory: free memory and continue with mnistlab "
        r"train --resume .* \(it keeps its last checkpoint\)",
    }.get(cause, r"No space left on device.* continue with: mnistlab train --resume")
    with pytest.raises((RunError, OSError), match=expected) as info:
        fit(recipe, small, out=run_dir, quiet=True)
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    assert not (run_dir / rundir.MODEL).exists()
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    resumed = fit(out=run_dir, resume=True, quiet=True, dataset=small)
    whole = fit(recipe, small, out=tmp_path / "whole", quiet=True)
    assert _without_seconds(resumed.history) == _without_seconds(whole.history)
    _same_weights(resumed.weights, whole.weights)


def _unfinished(tmp_path, small, recipe):
    """A run killed after its last checkpoint: everything but the model and metrics."""
    run = fit(recipe, small, out=tmp_path / "r", quiet=True)
    (run.path / rundir.MODEL).unlink()
    (run.path / rundir.METRICS).unlink()
    return run.path


@pytest.mark.parametrize(
    "edit,field", [("learning_rate = 0.01", "learning_rate"), ("epochs = 2", "epochs")]
)
def test_resume_refuses_an_edited_recipe_naming_the_field(tmp_path, small, edit, field):
    run_dir = _unfinished(tmp_path, small, Recipe(epochs=2, hidden=[8], learning_rate=0.02))
    toml = run_dir / rundir.RECIPE
    key = edit.split(" = ")[0]
    lines = toml.read_text().splitlines()
    new = {"learning_rate": "learning_rate = 0.05", "epochs": "epochs = 1"}[key]
    toml.write_text("\n".join(new if line.startswith(key + " ") else line for line in lines) + "\n")
    with pytest.raises(
        RunError,
        match=rf"recipe.toml: field '{field}' is .* checkpoint after "
        r"epoch 2 was made with .*set it back",
    ):
        fit(out=run_dir, resume=True, quiet=True, dataset=small)
    assert not (run_dir / rundir.MODEL).exists()


def test_a_second_writer_is_told_who_holds_the_run(tmp_path, small):
    run_dir = _unfinished(tmp_path, small, Recipe(epochs=1, hidden=[8]))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from mnistlab.rundir import lock as runlock\n"
            f"with runlock.hold({str(run_dir)!r}, command='mnistlab train'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            RunError,
            match=rf"in use by pid {holder.pid} on .*mnistlab train, "
            r"since 20.*wait for it to finish",
        ):
            fit(out=run_dir, resume=True, quiet=True, dataset=small)
        t0 = time.monotonic()
        with pytest.raises(RunError, match=rf"in use by pid {holder.pid}"):
            with runlock.hold(run_dir, wait=0.3):  # a writer that waits, as update_metrics does
                pass
        assert time.monotonic() - t0 >= 0.3
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # The kernel dropped the lock with the process: the run continues.
    assert fit(out=run_dir, resume=True, quiet=True, dataset=small).history[0]["epoch"] == 1


def test_a_folder_with_only_its_recipe_restarts_from_epoch_0(tmp_path, small):
    recipe = Recipe(epochs=1, hidden=[8]).resolved()
    (tmp_path / "r").mkdir()
    recipe.to_toml(tmp_path / "r" / rundir.RECIPE)
    resumed = fit(out=tmp_path / "r", resume=True, quiet=True, dataset=small)
    whole = fit(recipe, small, out=tmp_path / "whole", quiet=True)
    assert _without_seconds(resumed.history) == _without_seconds(whole.history)
    _same_weights(resumed.weights, whole.weights)


def test_a_new_run_folder_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    real = fsio.atomic_write_bytes
    calls = []

    def second_fails(path, data):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between the first two writes
        real(path, data)

    monkeypatch.setattr(rundir.folder, "atomic_write_bytes", second_fails)
    with pytest.raises(KeyboardInterrupt):
        rundir.new_run_dir(Recipe(), tmp_path / "r", {"a.txt": b"a", "b.txt": b"b"})
    assert _listing(tmp_path) == []
    monkeypatch.undo()
    d = rundir.new_run_dir(Recipe(), tmp_path / "r", {"a.txt": b"a", "b.txt": b"b"})
    assert _listing(d) == ["a.txt", "b.txt"] and _listing(tmp_path) == ["r"]
    assert d.stat().st_mode & 0o777 == 0o777 & ~_umask()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_out_of_memory_before_training_leaves_no_folder(tmp_path, small, monkeypatch):
    import mnistlab.training.fit

    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(mnistlab.training.fit, "init_weights", no_memory)  # where fit calls it
    with pytest.raises(
        RunError,
        match=r"^out of memory before training started; free memory or "
        r"start a new run with smaller 'hidden'",
    ):
        fit(Recipe(epochs=1, hidden=[8]), small, out=tmp_path / "r", quiet=True)
    assert _listing(tmp_path) == []


def test_on_epoch_sees_every_row_and_can_stop_training(small, tmp_path):
    rows = []
    run = fit(
        Recipe(hidden=[16], epochs=3),
        small,
        out=tmp_path / "r",
        quiet=True,
        on_epoch=lambda row: rows.append(row) or row["epoch"] == 2,
    )
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0]["val_accuracy"] is not None
    assert len(run.history) == 2 and run.stopped == "stopped after epoch 2 by on_epoch"
    assert (tmp_path / "r" / "model.safetensors").is_file()  # the run is still completed


# ---- fit is the engine driven by hand; resume; the watch ------------------------------------
from mnistlab import engines  # noqa: E402
from mnistlab.datasets.preprocess import normalization_stats, preprocess  # noqa: E402
from mnistlab.engines.init import init_weights  # noqa: E402
from mnistlab.training.fit import resume  # noqa: E402
from mnistlab.training.schedules import learning_rates, steps_per_epoch  # noqa: E402


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(epochs=2, hidden=[32, 16], seed=5, batch_size=64),
        Recipe(
            epochs=3,
            hidden=[24],
            engine="reference",
            optimizer="adam",
            learning_rate=0.002,
            dropout=0.2,
            schedule="plateau",
            plateau_patience=1,
            validation_split=0.2,
        ),
    ],
    ids=["auto-sgd", "reference-adam-plateau"],
)
def test_fit_is_the_engine_driven_by_hand_bit_for_bit(small, tmp_path, recipe):
    """The oracle of the training loop, on this machine: split, standardize, then per epoch
    epoch_order + learning_rates + train_epoch + a validation, nothing else."""
    run = fit(recipe, small, out=tmp_path / "r", quiet=True)

    r = recipe.validate().resolved()
    xtr_u8, ytr, xval_u8, yval = split_validation(small.x_train, small.y_train, r.validation_split)
    mean, std = normalization_stats(xtr_u8, r.normalize)
    x, y = preprocess(xtr_u8, mean, std), np.asarray(ytr, dtype=np.int64)
    xv, yv = preprocess(xval_u8, mean, std), np.asarray(yval, dtype=np.int64)
    engine = engines.make_engine(r, init_weights(r, n_classes=10))
    steps = steps_per_epoch(len(x), r.batch_size)
    history = []
    for epoch in range(r.epochs):
        order = epoch_order(r.seed, epoch, len(x), r.shuffle)
        lrs = learning_rates(r, epoch, steps, history)
        loss, acc = engine.train_epoch(x, y, order, lrs, epoch, None)
        val_loss, val_acc = engine.evaluate(xv, yv)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(loss),
                "accuracy": float(acc),
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "learning_rate": float(lrs[-1]),
            }
        )
    test = engine.evaluate(preprocess(small.x_test, mean, std), small.y_test.astype(np.int64))

    assert run.engine == engine.name
    assert _without_seconds(run.history) == history
    _same_weights(run.weights, engine.weights())
    assert (run.metrics["test"]["loss"], run.metrics["test"]["accuracy"]) == test


def _interrupted_after_epoch_1(monkeypatch, small, run_dir, recipe):
    def interrupt():
        raise KeyboardInterrupt

    _fail_in_epoch(monkeypatch, 1, interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit(recipe, small, out=run_dir, quiet=True)
    monkeypatch.undo()
    assert rundir.read_checkpoint(run_dir / rundir.CHECKPOINT)[1] == 1


@pytest.mark.parametrize("spelling", ["resume(path)", "resume(Run)", "mnistlab.resume", "fit"])
def test_resume_continues_a_killed_run_in_each_spelling(small, tmp_path, monkeypatch, spelling):
    import mnistlab

    recipe = Recipe(epochs=2, hidden=[8])
    run_dir = tmp_path / "cut"
    _interrupted_after_epoch_1(monkeypatch, small, run_dir, recipe)
    go = {
        "resume(path)": lambda: resume(run_dir, dataset=small, quiet=True),
        "resume(Run)": lambda: resume(
            types.SimpleNamespace(path=run_dir), dataset=small, quiet=True
        ),
        "mnistlab.resume": lambda: mnistlab.resume(str(run_dir), dataset=small, quiet=True),
        "fit": lambda: fit(out=run_dir, resume=True, dataset=small, quiet=True),
    }[spelling]
    resumed = go()
    whole = fit(recipe, small, out=tmp_path / "whole", quiet=True)
    assert _without_seconds(resumed.history) == _without_seconds(whole.history)
    _same_weights(resumed.weights, whole.weights)
    assert resumed.environment["resumed"][0]["after_epoch"] == 1


@pytest.mark.parametrize(
    "key,value,said",
    [
        ("checksums", 5, r"\['dataset'\]\['checksums'\] is 5, expected an object"),
        ("data_dir", 42, r"\['dataset'\]\['data_dir'\] is 42, expected a string or null"),
    ],
)
def test_resume_with_a_malformed_dataset_record_is_one_line(
    small, tmp_path, monkeypatch, capsys, key, value, said
):
    from mnistlab.cli import main

    run_dir = _unfinished(tmp_path, small, Recipe(epochs=1, hidden=[8]))
    env_file = run_dir / rundir.ENVIRONMENT
    env = json.loads(env_file.read_text())
    env["dataset"][key] = value
    env_file.write_text(json.dumps(env))
    with pytest.raises(RunError, match=rf"^{env_file}: {said}"):
        resume(run_dir, quiet=True)
    monkeypatch.setattr(sys, "argv", ["mnistlab", "train", "--resume", str(run_dir), "--quiet"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (run_dir / rundir.MODEL).exists()


def test_resume_refuses_data_other_than_the_recorded(small, tmp_path):
    run_dir = _unfinished(tmp_path, small, Recipe(epochs=1, hidden=[8]))
    other = dataclasses.replace(small, checksums={k: "0" * 64 for k in small.checksums})
    with pytest.raises(RunError, match=r"environment.json: dataset 'mnist-sample' .*checksums"):
        resume(run_dir, dataset=other, quiet=True)


class _Engine:
    """What the watch asks of an engine: its state and weights."""

    def state(self):
        return {"w": np.zeros(2)}

    def weights(self):
        return {"w": np.ones(2)}


def test_the_watch_gives_one_reason_in_order_health_early_stopping_on_epoch():
    from mnistlab.training.console import Console
    from mnistlab.training.watch import Watch

    calls = []
    recipe = Recipe(early_stopping=1, epochs=5)
    diverged = {"epoch": 2, "loss": float("nan"), "accuracy": 0.1, "val_loss": 9.0}
    w = Watch(
        recipe, [], Console(quiet=True), None, 10, stop_on_divergence=True, on_epoch=calls.append
    )
    w.observe({"epoch": 1, "loss": 0.5, "accuracy": 0.9, "val_loss": 0.4}, _Engine())
    assert not w.stop({"epoch": 1, "loss": 0.5, "accuracy": 0.9, "val_loss": 0.4})
    state = w.observe(diverged, _Engine())  # worse val_loss: early stopping says stop too
    assert set(state) == {"w", "best.w"} and w.early_stop
    assert (
        w.stop(diverged) and w.stopped == "stopped after epoch 2: diverged (--stop-on-divergence)"
    )
    assert [r["epoch"] for r in calls] == [1]  # asked only while nothing else stopped training
    assert w.record()["early_stopping"]["best_epoch"] == 1
    assert [x.kind for x in w.warnings] == ["diverged"]
