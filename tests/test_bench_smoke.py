"""bench/ scripts and the shipped presets: argument parsing, tables, ratios, 'peer missing'.

Cheap on purpose: tiny --limit/--epochs runs and pure functions. No timing is asserted here;
the benchmarks print their figures (see bench/README.md).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from mnistlab.recipe import Recipe, load_preset, preset_names

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=BENCH.parent
    )


@pytest.mark.parametrize(
    "script",
    [
        "frameworks",
        "floor",
        "inference",
        "time_to_accuracy",
        "variants",
        "second_core",
        "cnn_epochs",
    ],
)
def test_help(script):
    proc = _run(str(BENCH / f"{script}.py"), "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout and "--" in proc.stdout


def test_frameworks_rejects_unknown_peer():
    proc = _run(str(BENCH / "frameworks.py"), "--peers", "mnistlab,caffe")
    assert proc.returncode == 2
    assert "--peers: unknown caffe" in proc.stderr


def test_missing_modules_names_exactly_the_absent_ones():
    fw = _module("frameworks")
    assert fw.missing_modules(sys.executable, ["json", "no_such_module_mnistlab_bench"]) == [
        "no_such_module_mnistlab_bench"
    ]


def test_missing_peer_is_reported_with_the_install_command(monkeypatch, capsys):
    fw = _module("frameworks")
    peer = importlib.import_module("keras_tf")  # bench/_peers is on sys.path now
    monkeypatch.setattr(peer, "REQUIRES", ("no_such_module_mnistlab_bench",))
    assert fw.main(["--peers", "keras_tf", "--reps", "1"]) == 2
    out = capsys.readouterr().out
    assert "skipping keras_tf: missing packages no_such_module_mnistlab_bench" in out
    assert "pip install torch==2.13.0 -e '.[bench]'" in out
    assert "error: no peer can run" in out


def test_summary_ratios_and_warm_epochs(capsys):
    fw = _module("frameworks")
    run = lambda first, warm, acc: {
        "epoch_seconds": [first, warm, warm],
        "n_train": 42_000,  # noqa: E731
        "test_accuracy": acc,
        "peak_rss_mb": 100.0,
    }
    rows = fw.summarize(
        {
            "mnistlab": [run(9.0, 0.5, 0.88), run(9.0, 0.7, 0.87), run(9.0, 0.6, 0.86)],
            "torch": [run(3.0, 1.2, 0.85)],
            "keras_tf": [{"error": "exit 1: boom"}],
        }
    )
    assert set(rows) == {"mnistlab", "torch"}  # a peer with no successful run has no row
    assert rows["mnistlab"]["epoch_s"] == pytest.approx(0.6)  # median of warm epochs only
    assert rows["mnistlab"]["first_epoch_s"] == pytest.approx(9.0)
    assert rows["mnistlab"]["samples_per_s"] == pytest.approx(70_000)
    assert rows["torch"]["ratio"] == pytest.approx(2.0)
    fw.print_table(rows, "t")
    out = capsys.readouterr().out
    assert "2.00x" in out and "87.00 % (88.00 87.00 86.00)" in out


def test_frameworks_tiny_run_prints_the_table(mnist_dir, tmp_path):
    out = tmp_path / "r.json"
    proc = _run(
        str(BENCH / "frameworks.py"),
        "--dataset",
        "mnist",
        "--data-dir",
        str(mnist_dir),
        "--peers",
        "mnistlab",
        "--engine",
        "fast",
        "--epochs",
        "2",
        "--reps",
        "1",
        "--limit",
        "600",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rep 1/1 seed 0 mnistlab: epochs [" in proc.stdout
    assert "mnistlab (engine API)" in proc.stdout and "1.00x" in proc.stdout
    import json

    res = json.loads(out.read_text())["runs"]["mnistlab"][0]
    assert res["n_train"] == 420 and len(res["epoch_seconds"]) == 2
    assert res["note"].startswith("engine=fast")
    assert 0.3 < res["test_accuracy"] <= 1.0  # 420 images, 2 epochs: well above chance


def test_floor_products_match_the_recipe():
    floor = _module("floor")
    prods = floor.step_products([784, 128, 128, 128, 10], 32)
    assert len(prods) == 11  # 4 forward, 4 weight gradients, 3 input gradients
    assert floor.flops(prods) == 19_382_272
    assert floor.flops(prods) * 1313 / 1e9 == pytest.approx(25.45, abs=0.01)  # per epoch


def test_floor_smoke_without_mnistlab_training():
    proc = _run(
        str(BENCH / "floor.py"), "--no-mnistlab", "--no-torch", "--repeats", "1", "--limit", "320"
    )
    assert proc.returncode == 0, proc.stderr
    assert "11 products per step" in proc.stdout and "floor per epoch" in proc.stdout


def test_time_to_accuracy_arguments():
    proc = _run(str(BENCH / "time_to_accuracy.py"), "--recipe", "x.toml")
    assert proc.returncode == 2 and "--which mlp or --which cnn" in proc.stderr
    proc = _run(str(BENCH / "time_to_accuracy.py"), "--target", "98")
    assert proc.returncode == 2 and "--target: expected a fraction" in proc.stderr


def test_time_to_accuracy_tiny_recipe_reaches_a_low_target(mnist_dir, tmp_path):
    recipe = tmp_path / "tiny.toml"
    Recipe(
        name="tiny",
        validation_split=0.0,
        hidden=[16],
        optimizer="adam",
        learning_rate=0.003,
        decay=0.0,
        batch_size=512,
        epochs=2,
    ).to_toml(recipe)
    proc = _run(
        str(BENCH / "time_to_accuracy.py"),
        "--which",
        "mlp",
        "--recipe",
        str(recipe),
        "--target",
        "0.8",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--data-dir",
        str(mnist_dir),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "try 1: reached in" in proc.stdout and "mlp: median" in proc.stdout


def test_time_to_accuracy_one_try_per_seed_for_the_board(mnist_dir, tmp_path):
    recipe = tmp_path / "tiny.toml"
    Recipe(name="tiny", validation_split=0.0, hidden=[8], batch_size=512, epochs=1).to_toml(recipe)
    args = ["--which", "mlp", "--recipe", str(recipe), "--target", "0.5", "--seeds", "2"]
    proc = _run(str(BENCH / "time_to_accuracy.py"), *args, "--warmup", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "seed 0: reached" in proc.stdout and "seed 1: reached" in proc.stdout
    assert "mlp: mean" in proc.stdout and "(2/2 tries reached it)" in proc.stdout


def test_cnn_epochs_times_both_engines_on_the_same_seeds(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "c.json"
    args = ["--dataset", "mnist-sample", "--limit", "256", "--epochs", "2", "--seeds", "0"]
    proc = _run(str(BENCH / "cnn_epochs.py"), *args, "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "seed 0 fast" in proc.stdout and "seed 0 reference" in proc.stdout
    assert "fast / reference:" in proc.stdout
    import json

    results = json.loads(out.read_text())["results"]
    for engine in ("fast", "reference"):
        run = results[engine]["0"]
        assert run["engine"] == engine and len(run["seconds"]) == 2 and run["s_per_epoch"] > 0
    assert _run(str(BENCH / "cnn_epochs.py"), "--preset", "fast-mlp").returncode == 2


def test_inference_on_a_run_folder(mnist_dir, tmp_path):
    from mnistlab.training import fit as train

    run = tmp_path / "run"
    train.fit(
        Recipe(hidden=[16], epochs=1, batch_size=256), dataset="mnist-sample", out=run, quiet=True
    )
    proc = _run(
        str(BENCH / "inference.py"),
        str(run),
        "--data-dir",
        str(mnist_dir),
        "--limit",
        "500",
        "--repeats",
        "2",
        "--singles",
        "20",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "batched: 500 images in" in proc.stdout and "single image: p50" in proc.stdout


def test_inference_bad_run_folder_is_a_clear_error(mnist_dir, tmp_path):
    proc = _run(str(BENCH / "inference.py"), str(tmp_path / "nope"), "--data-dir", str(mnist_dir))
    assert proc.returncode == 2
    assert proc.stdout.startswith("error: ") and "no such run folder" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_presets():
    assert {"notebook", "fast-mlp", "fast-cnn"} <= set(preset_names())
    # the notebook's recipe IS the default (the preset spells out momentum 0.9, the default leaves
    # it to the optimizer, which for sgd is the same 0.9)
    assert load_preset("notebook").resolved() == Recipe().resolved()
    from mnistlab.engines.fast import FastEngine

    mlp, cnn = load_preset("fast-mlp"), load_preset("fast-cnn")
    assert FastEngine.unsupported(mlp) is None  # torch-free path for the 3-second goal
    assert cnn.kind == "cnn" and FastEngine.unsupported(cnn) is None  # and for the CNN's
    for r in (mlp, cnn):
        assert r.validation_split == 0.0  # time-to-accuracy trains on all 60,000 images


def test_variants_quick_prints_ratios_to_plain_sgd(tmp_path):
    out = tmp_path / "v.json"
    proc = _run(
        str(BENCH / "variants.py"),
        "--dataset",
        "mnist-sample",
        "--quick",
        "--limit",
        "300",
        "--variants",
        "notebook,adam,batch_norm",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fast / reference" in proc.stdout and "300 training" in proc.stdout
    import json

    results = json.loads(out.read_text())["results"]
    assert set(results) == {"notebook", "adam", "batch_norm"}
    assert results["notebook"]["fast"]["s"] > 0 and results["adam"]["reference"]["s"] > 0
    for engine in ("fast", "reference"):  # the baseline row is 1.00x on each engine
        assert len(results["notebook"][engine]["epochs"][0]) == 2
    assert proc.stdout.count("1.00x") >= 2
    assert "batch_norm" in proc.stdout.split("median s/epoch")[1]


def test_second_core_times_the_three_arrangements(tmp_path):
    out = tmp_path / "s.json"
    args = ["--dataset", "mnist-sample", "--limit", "300", "--epochs", "2", "--reps", "1"]
    proc = _run(str(BENCH / "second_core.py"), *args, "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import json

    result = json.loads(out.read_text())
    assert set(result) == {"1 thread", "2 threads", "overlap"}
    assert all(s > 0 for s in result.values())
    assert "300 training images" in proc.stdout and "x 1 thread" in proc.stdout
    assert _run(str(BENCH / "second_core.py"), "--epochs", "1").returncode == 2


def test_variants_unknown_to_the_recipe_or_engine_are_unsupported():
    import numpy as np

    variants = _module("variants")
    rng = np.random.default_rng(0)
    data = (
        rng.standard_normal((64, 784)).astype(np.float32),
        rng.integers(0, 10, 64),
        rng.standard_normal((16, 784)).astype(np.float32),
        rng.integers(0, 10, 16),
    )
    res = variants.measure(
        {
            "notebook": {},
            "future": {"optimizer": "no-such"},
            "cnn": {"kind": "cnn", "conv_channels": [2]},
        },
        ["fast"],
        data,
        epochs=1,
        reps=2,
        log=lambda _: None,
    )
    assert "no-such" in res["future"]["fast"]["unsupported"]
    assert len(res["notebook"]["fast"]["epochs"]) == 2  # both repetitions ran
    assert len(res["cnn"]["fast"]["epochs"]) == 2  # a CNN trains on the fast engine too
    rows = variants.table(res, ["fast"])
    assert rows[0][:3] == ["notebook", f"{res['notebook']['fast']['s']:.3f}", "1.00x"]
    assert rows[1][1] == "unsupported" and rows[2][1] != "unsupported"
    assert _run(str(BENCH / "variants.py"), "--variants", "notebook,nope").returncode == 2
