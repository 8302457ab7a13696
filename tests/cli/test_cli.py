"""The ``mnistlab`` entry point: every user error is one ``error: ...`` line and exit code 2."""

import sys

import pytest

from mnistlab.cli import main


def _main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["mnistlab", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.mark.parametrize(
    "args,words",
    [
        (["train", "--lr", "abc"], "'--learning-rate'"),
        (["train", "--no-such-flag"], "--no-such-flag"),
        (["predict", "some-run"], "Missing argument 'IMAGE...'"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_usage_errors_are_one_line_exit_2(monkeypatch, capsys, args, words):
    # typer's own rendering is a multi-line box; every error is one `error: ...` line.
    code, out, err = _main(monkeypatch, capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert "--help" in err and "Traceback" not in err


def test_help_version_and_bare_command(monkeypatch, capsys):
    code, out, _ = _main(monkeypatch, capsys, "--version")
    assert code == 0 and out.startswith("mnistlab ")
    code, out, _ = _main(monkeypatch, capsys, "train", "--help")
    assert code == 0 and "--preset" in out
    code, out, err = _main(monkeypatch, capsys)  # no command: the help, exit 2 as click does
    assert code == 2 and "train" in out + err and "error:" not in out + err


# ---- file-system errors: one line naming the path and the cause, nothing half-written --------
import errno  # noqa: E402

SMALL = ["--dataset", "mnist-sample", "--hidden", "8", "--epochs", "1", "--quiet"]


def _one_line_error(code, out, err, *words):
    assert code == 2, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from mnistlab.recipe import Recipe
    from mnistlab.training.fit import fit

    return fit(
        Recipe(dataset="mnist-sample", hidden=[8], epochs=1),
        out=tmp_path_factory.mktemp("tiny") / "run",
        quiet=True,
    ).path


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("how", ["--out", "MNISTLAB_RUNS_DIR"])
def test_train_into_a_read_only_folder(monkeypatch, capsys, tmp_path, fail_writes, how):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("x")
    fail_writes(ro)
    if how == "--out":
        args = ["train", *SMALL, "--out", str(ro / "run")]
    else:
        monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(ro / "runs"))
        args = ["train", *SMALL]
    code, out, err = _main(monkeypatch, capsys, *args)
    _one_line_error(code, out, err, str(ro), "Read-only file system", "writable")
    assert _listing(ro) == ["keep.txt"]


def test_train_with_a_name_too_long_for_the_file_system(monkeypatch, capsys, tmp_path):
    too_long = str(tmp_path / ("a" * 300))
    code, out, err = _main(monkeypatch, capsys, "train", *SMALL, "--out", too_long)
    _one_line_error(code, out, err, "File name too long", "shorter name")
    assert _listing(tmp_path) == []


def test_evaluate_out_and_run_folder_read_only(
    monkeypatch, capsys, tmp_path, tiny_run, fail_writes
):
    before = (tiny_run / "metrics.json").read_text()
    fail_writes(tmp_path / "figs")
    code, out, err = _main(
        monkeypatch, capsys, "evaluate", str(tiny_run), "--out", str(tmp_path / "figs")
    )
    _one_line_error(code, out, err, str(tmp_path / "figs"), "Read-only file system")
    assert not (tmp_path / "figs").exists()
    fail_writes(tiny_run)
    code, out, err = _main(
        monkeypatch, capsys, "evaluate", str(tiny_run), "--out", str(tmp_path / "ok")
    )
    _one_line_error(code, out, err, str(tiny_run), "Read-only file system")
    assert (tiny_run / "metrics.json").read_text() == before
    assert not [p for p in tiny_run.iterdir() if p.name.startswith(".")]


def test_predict_show_into_a_read_only_folder(monkeypatch, capsys, tmp_path, tiny_run, fail_writes):
    from PIL import Image, ImageDraw

    img = Image.new("L", (28, 28), 255)
    ImageDraw.Draw(img).line([(14, 4), (14, 24)], fill=0, width=3)
    img.save(tmp_path / "digit.png")
    fail_writes(tmp_path / "ro")
    code, out, err = _main(
        monkeypatch,
        capsys,
        "predict",
        str(tiny_run),
        str(tmp_path / "digit.png"),
        "--show",
        str(tmp_path / "ro" / "fig.png"),
    )
    _one_line_error(code, out.split("\n")[-1], err, str(tmp_path / "ro"), "Read-only file system")
    assert not (tmp_path / "ro").exists()


def test_explore_out_into_a_read_only_folder(monkeypatch, capsys, tmp_path, fail_writes):
    fail_writes(tmp_path)
    code, out, err = _main(
        monkeypatch, capsys, "explore", "--dataset", "mnist-sample", "--out", str(tmp_path / "ex")
    )
    _one_line_error(code, "", err, str(tmp_path / "ex"), "Read-only file system")
    assert _listing(tmp_path) == []


def test_data_import_into_a_read_only_home(
    monkeypatch, capsys, mnist_dir, mnistlab_home, fail_writes
):
    fail_writes(mnistlab_home)
    code, out, err = _main(monkeypatch, capsys, "data", "import", str(mnist_dir))
    _one_line_error(code, out, err, str(mnistlab_home), "Read-only file system")
    assert _listing(mnistlab_home) == []


def test_disk_full_is_one_line(monkeypatch, capsys, tmp_path, fail_writes):
    fail_writes(tmp_path / "full", errno.ENOSPC)
    code, out, err = _main(
        monkeypatch, capsys, "explore", "--dataset", "mnist-sample", "--out", str(tmp_path / "full")
    )
    _one_line_error(code, "", err, "No space left on device", "free some disk space")


def test_train_sizes_that_cannot_fit_are_one_line(monkeypatch, capsys, tmp_path):
    for flags, words in (
        (["--hidden", ",".join(["65536"] * 8)], ["needs about", "is available"]),
        (["--threads", "100000"], ["'threads'", "from 1 to 256"]),
    ):
        code, out, err = _main(
            monkeypatch, capsys, "train", *SMALL, *flags, "--out", str(tmp_path / "r")
        )
        _one_line_error(code, out, err, *words)
        assert _listing(tmp_path) == []


def test_train_resume_of_a_held_run_names_the_holder(monkeypatch, capsys, tiny_run, tmp_path):
    import shutil
    import subprocess
    import sys as sys_

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "model.safetensors").unlink()  # as if killed after its last checkpoint
    holder = subprocess.Popen(
        [
            sys_.executable,
            "-c",
            "import time; from mnistlab.rundir import lock as runlock\n"
            f"with runlock.hold({str(run)!r}, command='mnistlab train'):\n"
            "    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, out, err = _main(monkeypatch, capsys, "train", "--resume", str(run), "--quiet")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    _one_line_error(code, out, err, f"in use by pid {holder.pid}", "wait for it")
    assert not (run / "model.safetensors").exists()


@pytest.mark.parametrize("home", ["a file", "read-only"])
def test_train_from_a_data_dir_does_not_need_a_usable_home(
    monkeypatch, capsys, tmp_path, mnist_dir, fail_writes, home
):
    path = tmp_path / "home"
    if home == "a file":
        path.write_text("not a folder")
    else:
        path.mkdir()
        fail_writes(path)
    monkeypatch.setenv("MNISTLAB_HOME", str(path))
    code, out, err = _main(
        monkeypatch,
        capsys,
        "train",
        "--data-dir",
        str(mnist_dir),
        "--hidden",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "512",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    )
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "array cache" in lines[0], err
    assert "UserWarning" not in err and "Traceback" not in err
    assert (tmp_path / "run" / "model.safetensors").is_file()
    if home == "a file":
        assert path.read_text() == "not a folder"
    else:
        assert list(path.iterdir()) == []


def test_train_resume_of_an_edited_or_bare_run_folder(monkeypatch, capsys, tiny_run, tmp_path):
    import shutil

    run = tmp_path / "edited"
    shutil.copytree(tiny_run, run)
    (run / "model.safetensors").unlink()  # as if killed after its last checkpoint
    toml = run / "recipe.toml"
    toml.write_text(toml.read_text().replace("epochs = 1", "epochs = 3"))
    code, out, err = _main(monkeypatch, capsys, "train", "--resume", str(run), "--quiet")
    _one_line_error(code, out, err, "field 'epochs' is 3", "was made with 1")
    assert not (run / "model.safetensors").exists()

    bare = tmp_path / "bare"  # killed right after its first file, by an older mnistlab
    bare.mkdir()
    shutil.copy(tiny_run / "recipe.toml", bare)
    code, out, err = _main(monkeypatch, capsys, "train", "--resume", str(bare), "--quiet")
    assert code == 0 and err == "", err
    assert sorted(p.name for p in bare.iterdir()) == [
        "calibration.json",  # train calibrates the run it finished
        "checkpoint.safetensors",
        "environment.json",
        "history.csv",
        "metrics.json",
        "model.safetensors",
        "predictions.safetensors",
        "recipe.toml",
        "report.html",
    ]
