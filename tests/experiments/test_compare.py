"""compare: variants files, end to end on the sample, resume, --jobs, a shared study, and
one-line errors."""

import json
import math
import sys

import pytest

from mnistlab import datasets
from mnistlab.cli import main
from mnistlab.errors import MnistlabError, RecipeError
from mnistlab.experiments import compare as cmp
from mnistlab.experiments import leaderboard as lb

TINY = """
[base]
hidden = [16]
epochs = 1
batch_size = 64
[variants.small]
[variants.wide]
hidden = [48]
[variants.adam]
optimizer = "adam"
lr = 0.003
"""


@pytest.fixture(scope="module")
def sample():
    return cmp.slice_dataset(datasets.load("mnist-sample"), 1500, 400)


def _variants(tmp_path, text=TINY):
    path = tmp_path / "v.toml"
    path.write_text(text)
    return cmp.load_variants(path)


def _numbers(board):
    return {
        (v["name"], r["seed"]): (r["val_accuracy"], r["test_accuracy"])
        for v in board["variants"]
        for r in v["runs"]
    }


# ---- variants files ----------------------------------------------------------------------
def test_presets_load_as_declared():
    beat = cmp.load_preset("beat-the-baseline")
    assert list(beat.recipes) == ["notebook", "adam", "l2", "dropout", "batch-norm", "all-four"]
    assert beat.baseline == "notebook" and beat.recipes["notebook"].hidden == [128, 128, 128]
    allf = beat.recipes["all-four"]
    assert (allf.optimizer, allf.learning_rate, allf.l2, allf.dropout, allf.batch_norm) == (
        "adam",
        0.001,
        1e-4,
        0.2,
        True,
    )
    ablation = cmp.load_preset("best-mlp-ablation")
    assert ablation.baseline == "best-mlp" and ablation.recipes["best-mlp"].hidden == [512, 512]
    assert ablation.recipes["no-augment"].augment_shift == 0.0
    assert ablation.recipes["wider-1024"].validation_split == 0.1
    cnn = cmp.load_preset("best-cnn-ablation")
    assert cnn.baseline == "best-cnn" and cnn.recipes["best-cnn"].conv_channels == [16, 32, 64]
    assert cnn.recipes["two-blocks"].conv_channels == [16, 32]
    assert (cnn.recipes["dropout-0.3"].dropout, cnn.recipes["six-epochs"].epochs) == (0.3, 6)
    assert {r.validation_split for r in cnn.recipes.values()} == {0.1}
    scaling = cmp.load_preset("scaling-not-learning-rate")
    lrs = {n: (r.normalize, r.learning_rate) for n, r in scaling.recipes.items()}
    assert lrs == {
        "standardized-lr0.01": ("standardize", 0.01),
        "raw-lr0.01": ("none", 0.01),
        "raw-lr0.001": ("none", 0.001),
        "raw-lr0.0001": ("none", 0.0001),
    }


@pytest.mark.parametrize(
    "text,words",
    [
        ("[variants.a]\nlearning_rat = 0.1\n", ["variant 'a'", "did you mean 'learning_rate'"]),
        ("[variants.lr-0.1]\nlr = 0.1\n", ["variant 'lr-0'", '[variants."lr-0.1"]']),
        ("[variants.a]\ndropout = 1.5\n", ["variant 'a'", "'dropout'", "[0, 1)"]),
        ("[variants.a]\nseed = 3\n", ["variant 'a'", "'seed'", "--seeds"]),
        ("[variants.a]\ndataset = 'mnist'\n", ["variant 'a'", "'dataset'", "same images"]),
        ("[base]\nvalidation_split = 0.0\n[variants.a]\n", ["validation_split", "ranked"]),
        ("[variants.'a b']\n", ["variant 'a b'", "names a folder"]),
        ("baseline = 'z'\n[variants.a]\n", ["baseline 'z'"]),
        ("[base]\nepochs = 2\n", ["[variants.NAME]"]),
        ("varients = 1\n[variants.a]\n", ["unknown key 'varients'"]),
        ("[variants.a\n", ["not valid TOML"]),
    ],
)
def test_bad_variants_file_is_one_line(tmp_path, text, words):
    with pytest.raises(RecipeError) as exc:
        _variants(tmp_path, text)
    msg = str(exc.value)
    assert "\n" not in msg and str(tmp_path / "v.toml") in msg
    for w in words:
        assert w in msg, msg


def test_cli_bad_file_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "v.toml"
    path.write_text("[variants.a]\noptimiser = 'adam'\n")
    monkeypatch.setattr(sys, "argv", ["mnistlab", "compare", str(path)])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "did you mean 'optimizer'" in err and "Traceback" not in err


def test_cli_needs_exactly_one_of_file_and_preset(tmp_path, monkeypatch, capsys):
    for args in ([], [str(tmp_path / "v.toml"), "--preset", "beat-the-baseline"]):
        monkeypatch.setattr(sys, "argv", ["mnistlab", "compare", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and "beat-the-baseline" in err


# ---- end to end --------------------------------------------------------------------------
def test_compare_end_to_end_two_seeds(tmp_path, sample, capsys):
    board = cmp.compare(_variants(tmp_path), seeds=2, out=tmp_path / "c", dataset=sample)
    out = tmp_path / "c"
    for name in ("leaderboard.json", "leaderboard.csv", "leaderboard.png"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "leaderboard.json").read_text())
    assert saved["baseline"] == "small" and saved["seeds"] == [0, 1]
    assert saved["selection"] == "validation"
    names = [v["name"] for v in saved["variants"]]
    assert sorted(names) == ["adam", "small", "wide"]
    # ranks follow validation accuracy, never test accuracy
    vals = [v["val_accuracy"]["mean"] for v in saved["variants"]]
    assert vals == sorted(vals, reverse=True)
    assert [v["rank"] for v in saved["variants"]] == [1, 2, 3]
    for v in saved["variants"]:
        assert set(v) >= {
            "name",
            "recipe",
            "params",
            "runs",
            "val_accuracy",
            "test_accuracy",
            "seconds",
            "diff_test",
            "p_value",
            "p_holm",
            "significant",
            "rank",
        }
        assert [r["seed"] for r in v["runs"]] == [0, 1]
        for r in v["runs"]:
            run_dir = out / r["path"]
            assert (run_dir / "model.safetensors").is_file()
            metrics = json.loads((run_dir / "metrics.json").read_text())
            assert r["val_accuracy"] == metrics["train"]["val_accuracy"]
            # test accuracy from the paired predictions equals what training measured
            assert r["test_accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
        accs = [r["test_accuracy"] for r in v["runs"]]
        assert v["test_accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
        assert v["test_accuracy"]["std"] == pytest.approx(abs(accs[0] - accs[1]) / math.sqrt(2))
        if v["name"] == "small":
            assert v["diff_test"] is None and v["significant"] is None
            assert v["params"] == 784 * 16 + 16 + 16 * 10 + 10
        else:
            base = next(b for b in saved["variants"] if b["name"] == "small")
            assert v["diff_test"] == pytest.approx(
                v["test_accuracy"]["mean"] - base["test_accuracy"]["mean"]
            )
            d = v["discordant"]
            # pooled discordant counts explain the accuracy difference exactly
            assert (d["variant_only"] - d["baseline_only"]) / (2 * 400) == pytest.approx(
                v["diff_test"]
            )
            assert v["p_value"] == pytest.approx(lb.mcnemar(d["baseline_only"], d["variant_only"]))
            assert v["p_holm"] >= v["p_value"] and v["significant"] == (v["p_holm"] < 0.05)
    csv_rows = (out / "leaderboard.csv").read_text().splitlines()
    assert csv_rows[0].startswith("rank,variant,val_mean") and len(csv_rows) == 4
    lb.print_leaderboard(board)
    printed = capsys.readouterr().out
    assert "never used to select" in printed and "small" in printed


def test_interrupted_compare_resumes_without_retraining(tmp_path, sample, monkeypatch):
    variants = _variants(tmp_path)
    calls = []
    real = cmp._train_one

    def crash_after_two(run_dir, recipe, resume, dataset=None):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user's Ctrl-C, or a kill, during the third run
        calls.append((run_dir, resume))
        return real(run_dir, recipe, resume, dataset)

    monkeypatch.setattr(cmp, "_train_one", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        cmp.compare(variants, seeds=2, out=tmp_path / "c", dataset=sample)
    finished = [p for p, _ in calls]
    stamps = {p: (tmp_path / "c" / p / "model.safetensors").stat().st_mtime_ns for p in finished}
    # a run killed after its checkpoint but before its model: resumed, not restarted
    half = tmp_path / "c" / finished[1]
    (half / "model.safetensors").unlink()
    (half / "metrics.json").unlink()
    calls.clear()
    monkeypatch.setattr(
        cmp, "_train_one", lambda *a, **k: (calls.append(a[:1] + a[2:3]), real(*a, **k))[1]
    )
    reported = []
    board = cmp.compare(
        variants,
        seeds=2,
        out=tmp_path / "c",
        dataset=sample,
        on_run=lambda d, tags: reported.append(str(d)),
    )
    retrained = {p for p, _ in calls}
    assert sorted(reported) == sorted(retrained)  # each run this process finished, once
    assert len(calls) == 6 - 1 and str(half) in retrained
    assert (str(half), True) in calls and all(not r for p, r in calls if p != str(half))
    assert str(tmp_path / "c" / finished[0]) not in retrained
    first = tmp_path / "c" / finished[0] / "model.safetensors"
    assert first.stat().st_mtime_ns == stamps[finished[0]]
    assert len(_numbers(board)) == 6


def test_jobs_two_gives_the_same_numbers_as_one(tmp_path, sample):
    variants = _variants(
        tmp_path, TINY.replace('[variants.adam]\noptimizer = "adam"\nlr = 0.003\n', "")
    )
    seen = {"one": [], "two": []}

    def on_run(key):
        return lambda d, tags: seen[key].append((d.relative_to(tmp_path / key).as_posix(), tags))

    one = cmp.compare(
        variants, seeds=2, jobs=1, out=tmp_path / "one", dataset=sample, on_run=on_run("one")
    )
    two = cmp.compare(
        variants, seeds=2, jobs=2, out=tmp_path / "two", dataset=sample, on_run=on_run("two")
    )
    assert _numbers(one) == _numbers(two) and len(_numbers(one)) == 4
    expected = [
        (
            f"runs/{n}-seed{s}",
            {"mnistlab.compare": "v", "mnistlab.variant": n, "mnistlab.seed": str(s)},
        )
        for n in ("small", "wide")
        for s in (0, 1)
    ]
    assert seen["one"] == expected and sorted(seen["two"], key=str) == sorted(expected, key=str)
    assert [v["p_value"] for v in one["variants"]] == [v["p_value"] for v in two["variants"]]


def test_rerun_with_another_recipe_in_the_folder_is_refused(tmp_path, sample):
    cmp.compare(
        _variants(tmp_path, TINY.replace("lr = 0.003", "lr = 0.002")),
        seeds=1,
        out=tmp_path / "c",
        dataset=sample,
    )
    with pytest.raises(MnistlabError, match="another recipe"):
        cmp.compare(_variants(tmp_path), seeds=1, out=tmp_path / "c", dataset=sample)


def _links(page):
    import re

    return re.findall(r'href="([^"#][^"]*)"', page.read_text(encoding="utf-8"))


def test_compare_page_links_every_run_report_and_report_cli_rewrites_it(
    tmp_path, sample, monkeypatch, capsys
):
    out = tmp_path / "c"
    board = cmp.compare(
        _variants(tmp_path, TINY.split("[variants.adam]")[0]), seeds=2, out=out, dataset=sample
    )
    page = out / "report.html"
    assert board["report"] == str(page)
    runs = sorted(f"runs/{n}-seed{s}/report.html" for n in ("small", "wide") for s in (0, 1))
    assert sorted(_links(page)) == runs and all((out / link).is_file() for link in runs)
    # the page was written from the finished leaderboard
    assert json.loads((out / "leaderboard.json").read_text())["baseline"] == "small"

    page.unlink()
    (out / runs[0]).unlink()  # a run report gone missing is written again
    monkeypatch.setattr(sys, "argv", ["mnistlab", "report", str(out)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"report: {page}"
    assert sorted(_links(page)) == runs and (out / runs[0]).is_file()


def _cli_worker(variants_file, out, url):
    import subprocess

    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mnistlab",
            "compare",
            str(variants_file),
            "--seeds",
            "2",
            "--storage",
            url,
            "--out",
            str(out),
            "--heartbeat",
            "1",
            "--dataset",
            "mnist-sample",
            "--train-images",
            "1500",
            "--test-images",
            "400",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_processes_share_one_compare_through_a_study(tmp_path, sample):
    import optuna

    variants_file = tmp_path / "v.toml"
    variants_file.write_text(TINY)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    workers = [_cli_worker(variants_file, tmp_path / f"m{i}", url) for i in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=240)
        assert w.returncode == 0, err
    local = cmp.compare(
        cmp.load_variants(variants_file), seeds=2, out=tmp_path / "local", dataset=sample
    )
    trials = optuna.load_study(study_name="compare-v", storage=url).trials
    keys = sorted((t.user_attrs["variant"], t.user_attrs["seed"]) for t in trials)
    assert keys == sorted(_numbers(local)) and all(t.state.name == "COMPLETE" for t in trials)
    for i in range(2):  # each process wrote the same leaderboard, from all six runs
        board = json.loads((tmp_path / f"m{i}" / "leaderboard.json").read_text())
        assert _numbers(board) == _numbers(local)
        assert [v["p_value"] for v in board["variants"]] == [
            v["p_value"] for v in local["variants"]
        ]
    assert len(trials) == 6  # each run claimed once, however the two processes interleaved


def test_storage_and_jobs_do_not_combine(tmp_path, sample):
    with pytest.raises(MnistlabError, match="--jobs"):
        cmp.compare(
            _variants(tmp_path),
            seeds=1,
            jobs=2,
            out=tmp_path / "c",
            dataset=sample,
            storage=f"sqlite:///{tmp_path / 's.db'}",
        )
