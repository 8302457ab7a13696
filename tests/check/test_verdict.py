"""Result and NotDone: a printed verdict, and one line where an exercise is left empty."""

from __future__ import annotations

import pytest

import mnistlab
from mnistlab import check
from mnistlab.check.verdict import NotDone, Result, given


def test_a_result_prints_its_verdict_problems_notes_and_hint(capsys):
    r = Result("model", False, ["hidden layer 2 has 64 units"], "compare", {}, ["a note"]).show()
    assert capsys.readouterr().out == (
        "✗ model: not yet\n  - hidden layer 2 has 64 units\n  note: a note\n  hint: compare\n"
    )
    assert not r and r.messages == ["hidden layer 2 has 64 units", "a note", "hint: compare"]
    ok = Result("model", True, [], "never shown when passed", {}, summary="784 → 10")
    assert str(ok) == "✓ model: passed: 784 → 10" and ok and ok.messages == []


def test_an_empty_exercise_raises_one_line_that_says_what_to_do():
    with pytest.raises(NotDone) as err:
        given(..., "x_train", "load the images")
    assert err.value._render_traceback_() == [
        "NotDone: x_train is still `...`: load the images, run that cell, then this check again"
    ]
    assert isinstance(err.value, mnistlab.errors.MnistlabError)
    assert given(None, "r2", "") is None and given(0, "x", "") == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: check.data(..., ..., ..., ...),
        lambda: check.model(...),
        lambda: check.raw_pixels(...),
        lambda: check.learning_rates(...),
        lambda: check.standardization(..., ...),
        lambda: check.beat_this(..., []),
        lambda: check.metrics([0], ..., precision=..., recall=...),
    ],
)
def test_every_check_stops_on_an_empty_exercise(call):
    with pytest.raises(NotDone, match="is still `...`"):
        call()


def test_the_checks_are_reachable_from_the_package_without_weighing_on_its_import():
    import subprocess
    import sys

    code = "import sys, mnistlab; print('mnistlab.check' in sys.modules, mnistlab.check.data)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("False <function data")
