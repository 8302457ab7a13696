"""``mnistlab train``'s recipe flags: made from the field declarations, ranges in the help, bad
values and --resume with recipe input refused in one line before anything is written."""

import sys

import pytest

from mnistlab.cli import main


def _main(monkeypatch, capsys, tmp_path, *args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["mnistlab", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_help_states_every_fields_range_and_default(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("COLUMNS", "400")  # one flag, one line
    code, out, _ = _main(monkeypatch, capsys, tmp_path, "train", "--help")
    assert code == 0
    for words in (
        "Recipe fields: optimizer",
        "an odd integer from 1 to 7; default: 3",
        "a number of pixels in [0, 14]; default: 0.0",
        "a number in (0, 10]; default: 0.01",
        "unset: sgd 0.9, rmsprop 0",
        "e.g. 32,64; empty for none",
    ):
        assert words in out, words


@pytest.mark.parametrize(
    "flags,words",
    [
        (["--augment-elastic-sigma", "1e308"], "a number of pixels in [0.1, 20], got 1e+308"),
        (["--augment-shift", "1e39"], "a number of pixels in [0, 14], got 1e+39"),
        (["--kind", "cnn", "--kernel-size", "99"], "an odd integer from 1 to 7, got 99"),
        (["--hidden", "8,0"], "'hidden': expected a list of at most 32 integers"),
    ],
)
def test_out_of_range_flags_are_one_line_before_any_run_folder(
    monkeypatch, capsys, tmp_path, flags, words
):
    code, out, err = _main(monkeypatch, capsys, tmp_path, "train", *flags, "--quiet")
    assert code == 2 and err.startswith("error: recipe field ") and err.count("\n") == 1, err
    assert words in err and "Traceback" not in out + err
    assert list(tmp_path.iterdir()) == []


def test_resume_refuses_recipe_input_naming_each_piece(monkeypatch, capsys, tmp_path):
    (tmp_path / "r.toml").write_text("epochs = 2\n")
    code, out, err = _main(
        monkeypatch,
        capsys,
        tmp_path,
        "train",
        "--resume",
        "some-run",
        "--recipe",
        "r.toml",
        "--preset",
        "notebook",
        "--lr",
        "0.1",
        "--epochs",
        "2",
    )
    assert code == 2 and err.count("\n") == 1 and "--resume" in err, err
    for words in ("recipe file r.toml", "preset notebook", "'learning_rate'", "'epochs'"):
        assert words in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.toml"]
