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


@pytest.mark.parametrize("args,words", [
    (["train", "--lr", "abc"], "'--learning-rate'"),
    (["train", "--no-such-flag"], "--no-such-flag"),
    (["predict", "some-run"], "Missing argument 'IMAGE...'"),
    (["no-such-command"], "no-such-command"),
])
def test_usage_errors_are_one_line_exit_2(monkeypatch, capsys, args, words):
    # typer's own rendering is a multi-line box; the brief wants `error: ...` on one line.
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
