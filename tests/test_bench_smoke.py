"""bench/ scripts and the shipped presets: argument parsing, tables, ratios, 'peer missing',
and the machine line every script prints first (and writes into --json).

Cheap on purpose: tiny --limit/--epochs runs and pure functions. No timing is asserted here;
the benchmarks print their figures (see bench/README.md).
"""

from __future__ import annotations

import ast
import importlib.util
import json
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


def _machine_first(proc: subprocess.CompletedProcess) -> str:
    """The machine line, which must be the run's first line of output."""
    first = proc.stdout.splitlines()[0]
    assert first.startswith("machine: "), first
    assert "logical CPUs" in first and "BLAS: " in first
    return first


def _machine_in_json(report: dict) -> None:
    m = report["machine"]
    assert m["cpu"] and m["cores"] >= 1 and isinstance(m["vector"], list)
    assert m["blas"]["numpy"], "NumPy's BLAS is always named"
    assert m["blas"]["numpy"][0]["library"]


# ---- the machine line ------------------------------------------------------------------------
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_bench_script_prints_the_machine_first(script):
    """Each script's main calls _machine.header() before it prints anything else."""
    tree = ast.parse((BENCH / f"{script}.py").read_text())
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    calls = [
        n
        for n in ast.walk(main)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in ("header", "print")
        or isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.func.id == "print"
    ]
    first = min(calls, key=lambda n: (n.lineno, n.col_offset))
    assert isinstance(first.func, ast.Attribute) and first.func.attr == "header", script
    assert first.func.value.id == "_machine"


def test_machine_line_names_cpu_extensions_cores_and_blas():
    machine = _module("_machine")
    info = machine.describe()
    line = machine.line(info)
    assert line.startswith(f"machine: {info['cpu']}; ")
    assert f"{info['cores']} logical CPUs" in line
    for b in info["blas"]["numpy"]:
        assert b["library"] in line and f"{b['threads']} thread" in line
    json.dumps(info)  # what --json writes


def test_machine_reads_intel_and_arm_extensions(monkeypatch):
    machine = _module("_machine")
    intel = {
        "model name": "Intel(R) Xeon(R) Platinum 8481C",
        "cpu family": "6",
        "model": "143",
        "flags": "fpu sse avx avx2 fma avx512f avx512bw avx512_bf16 amx_tile amx_bf16",
    }
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(machine, "_cpuinfo", lambda: intel)
    assert machine.cpu() == (
        "Intel(R) Xeon(R) Platinum 8481C (family 6, model 143)",
        ["AVX2", "FMA", "AVX-512", "AVX-512-BF16", "AMX"],
    )
    intel["flags"] = "avx avx2 fma"
    info = {**machine.describe(), "vector": machine.cpu()[1], "platform": "Linux x86_64"}
    assert "AVX2 FMA (no AVX-512, no AMX)" in machine.line(info)
    arm = {"CPU implementer": "0x41", "CPU part": "0xd40", "Features": "fp asimd sve sve2"}
    monkeypatch.setattr(machine.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(machine, "_cpuinfo", lambda: arm)
    model, vector = machine.cpu()
    assert model.endswith("(implementer 0x41, part 0xd40)") and vector == ["NEON", "SVE", "SVE2"]


def test_torch_blas_is_read_without_importing_torch_in_the_benchmark():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch not installed")
    code = (
        "import json, sys; sys.path.insert(0, 'bench'); import _machine; "
        "facts = _machine.torch_blas(); assert 'torch' not in sys.modules; print(json.dumps(facts))"
    )
    proc = _run("-c", code)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["library"] != "?" and facts["threads"] >= 1 and facts["version"]


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
    _machine_first(proc)
    # one core and all cores in the same run, one table each
    assert "rep 1/1 seed 0 one core mnistlab: epochs [" in proc.stdout
    assert "rep 1/1 seed 0 all cores mnistlab: epochs [" in proc.stdout
    assert "mnistlab (engine API), 1 thread " in proc.stdout and "1.00x" in proc.stdout
    assert "batch 32, one core," in proc.stdout and "batch 32, all cores (" in proc.stdout
    report = json.loads(out.read_text())
    _machine_in_json(report)
    assert set(report["tables"]) == {"one core", "all cores"}
    one = report["tables"]["one core"]["runs"]["mnistlab"][0]
    assert one["threads"] == 1
    every = report["tables"]["all cores"]["runs"]["mnistlab"][0]
    assert every["threads"] == report["machine"]["usable_cores"]
    for res in (one, every):
        assert res["n_train"] == 420 and len(res["epoch_seconds"]) == 2
        assert res["note"].startswith("engine=fast")
        assert 0.3 < res["test_accuracy"] <= 1.0  # 420 images, 2 epochs: well above chance


def test_floor_products_match_the_recipe():
    floor = _module("floor")
    prods = floor.step_products([784, 128, 128, 128, 10], 32)
    assert len(prods) == 11  # 4 forward, 4 weight gradients, 3 input gradients
    assert floor.flops(prods) == 19_382_272
    assert floor.flops(prods) * 1313 / 1e9 == pytest.approx(25.45, abs=0.01)  # per epoch


def test_floor_smoke_without_mnistlab_training(tmp_path):
    out = tmp_path / "f.json"
    args = ["--no-mnistlab", "--no-torch", "--repeats", "1", "--limit", "320", "--layouts"]
    proc = _run(str(BENCH / "floor.py"), *args, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    _machine_first(proc)
    assert "11 products per step" in proc.stdout and "floor per epoch" in proc.stdout
    assert "keeping both orientations would save" in proc.stdout
    report = json.loads(out.read_text())
    _machine_in_json(report)
    assert len(report["products"]) == 11 and report["floor_s"] > 0
    # the 3 input gradients d @ W^T, each on the view, a kept copy, and the copy's refresh
    assert [r["product"][:3] for r in report["layouts"]] == ["da3", "da2", "da1"]
    assert all(
        r["view_us"] > 0 and r["copy_us"] > 0 and r["refresh_us"] > 0 for r in report["layouts"]
    )


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
        "--json",
        str(tmp_path / "t.json"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _machine_first(proc)
    assert "try 1: reached in" in proc.stdout and "mlp: median" in proc.stdout
    report = json.loads((tmp_path / "t.json").read_text())
    _machine_in_json(report)
    assert report["mlp"][0]["reached"] and report["mlp"][0]["seconds"] > 0


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
    _machine_first(proc)
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
        "--epochs",
        "3",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _machine_first(proc)
    assert "fast / reference" in proc.stdout and "300 training" in proc.stdout
    assert "fast drift" in proc.stdout and "reference drift" in proc.stdout
    report = json.loads(out.read_text())
    _machine_in_json(report)
    results = report["results"]
    for variant in results.values():  # last epoch over the second, per engine
        assert all(cell["drift"] > 0 for cell in variant.values())
    assert set(results) == {"notebook", "adam", "batch_norm"}
    assert results["notebook"]["fast"]["s"] > 0 and results["adam"]["reference"]["s"] > 0
    for engine in ("fast", "reference"):  # the baseline row is 1.00x on each engine
        assert len(results["notebook"][engine]["epochs"][0]) == 3
    assert proc.stdout.count("1.00x") >= 2
    assert "batch_norm" in proc.stdout.split("median s/epoch")[1]


def test_second_core_times_the_three_arrangements(tmp_path):
    out = tmp_path / "s.json"
    args = ["--dataset", "mnist-sample", "--limit", "300", "--epochs", "2", "--reps", "1"]
    proc = _run(str(BENCH / "second_core.py"), *args, "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _machine_first(proc)
    report = json.loads(out.read_text())
    _machine_in_json(report)
    result = report["seconds"]
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
    assert rows[0][3] == "-"  # drift needs 3 epochs
    assert rows[1][1] == "unsupported" and rows[2][1] != "unsupported"
    assert _run(str(BENCH / "variants.py"), "--variants", "notebook,nope").returncode == 2
