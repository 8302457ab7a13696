"""What every check hands back: a ``Result`` it has printed, or ``NotDone`` for a cell left empty.

A check reads the learner's objects and answers in a few lines: passed or not yet, what is off,
and a hint that points at the idea without writing the code. ``Off`` is how a check's reading
code says "this object is not what the exercise asks for" (a wrong type, a wrong shape): the
check turns it into a "not yet" result, never a traceback.

``NotDone`` is for an exercise cell still holding its ``...`` placeholder: there is nothing to
judge, so the check stops the notebook there with one line saying what to do (IPython shows an
exception's ``_render_traceback_`` instead of a traceback).

>>> r = Result("data", False, ["x_train has 100 rows"], "look at its shape", {})
>>> print(r)
✗ data: not yet
  - x_train has 100 rows
  hint: look at its shape
>>> bool(r), r.messages[-1]
(False, 'hint: look at its shape')
>>> given(..., "x", "load it")
Traceback (most recent call last):
...
mnistlab.check.verdict.NotDone: x is still `...`: load it, run that cell, then this check again
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mnistlab.errors import MnistlabError


class NotDone(MnistlabError):
    """An exercise cell still holds its ``...`` placeholder: the check has nothing to judge."""

    def _render_traceback_(self) -> list[str]:  # IPython: this one line instead of a traceback
        return [f"NotDone: {self}"]


class Off(Exception):
    """The learner's object is not what the exercise asks for; ``str(self)`` says how."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def given(value: Any, name: str, todo: str) -> Any:
    """``value``, or NotDone when it is still the exercise's ``...`` placeholder."""
    if value is ...:
        raise NotDone(f"{name} is still `...`: {todo}, run that cell, then this check again")
    return value


@dataclass
class Result:
    """One check's answer: ``passed``, what is off or worth knowing (``problems``, ``notes``),
    a ``hint`` that does not give the answer away, and what it read and measured
    (``details``)."""

    exercise: str
    passed: bool
    problems: list[str] = field(default_factory=list)
    hint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    summary: str = ""  # the passed line's tail: what was found right
    _shown_in: int | None = field(default=None, repr=False, compare=False)

    @property
    def messages(self) -> list[str]:
        """The printed lines below the verdict, as plain strings."""
        lines = [*self.problems, *self.notes]
        return lines + ([f"hint: {self.hint}"] if self.hint and not self.passed else [])

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            head = f"✓ {self.exercise}: passed" + (f": {self.summary}" if self.summary else "")
        else:
            head = f"✗ {self.exercise}: not yet"
        body = [f"  - {p}" for p in self.problems] + [f"  note: {n}" for n in self.notes]
        if self.hint and not self.passed:
            body.append(f"  hint: {self.hint}")
        return "\n".join([head, *body])

    def show(self) -> Result:
        """Print the verdict (once per notebook cell: the cell's own display then skips it)."""
        print(self)
        self._shown_in = _execution_count()
        return self

    def _ipython_display_(self) -> None:
        if self._shown_in is None or self._shown_in != _execution_count():
            print(self)


def _execution_count() -> int | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else shell.execution_count


def verdict(
    exercise: str,
    problems: list[str],
    hint: str | None,
    details: dict[str, Any],
    notes: list[str] | None = None,
    summary: str = "",
) -> Result:
    """The printed Result: passed when there is no problem."""
    return Result(
        exercise, not problems, list(problems), hint, details, list(notes or []), summary
    ).show()


def refused(exercise: str, off: Off, details: dict[str, Any] | None = None) -> Result:
    """The printed "not yet" for an object the check could not read as the exercise asks."""
    return verdict(exercise, [str(off)], off.hint, details or {})
