"""What a recipe field accepts, as data: small constraint objects, and ``param`` to declare a field.

Each field of ``Recipe`` is declared once with its section in recipe.toml, its default, its
one-line help and its constraint (as scikit-learn declares its estimators' parameters); the
validation, the TOML sections, the ``mnistlab train`` flags and their help all read that. A
constraint says whether a value is accepted (``ok``) and what it accepts (``describe``), and
that sentence is the one every error states:

>>> Interval(int, 1, 60000).describe(), Interval(float, 0, 1, closed="left").describe()
('an integer from 1 to 60000', 'a number in [0, 1)')
>>> OrUnset(Interval(int, 1, 256), unset="auto").ok(None), Options("a", "b").ok("c")
(True, False)
>>> try:
...     raise FieldError("batch_size", "an integer from 1 to 60000", 0)
... except RecipeError as err:
...     print(err)
recipe field 'batch_size': expected an integer from 1 to 60000, got 0
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from mnistlab.errors import RecipeError


class FieldError(RecipeError):
    """A field holds a value its constraint refuses: ``<source> field '<name>': expected
    <what it accepts>, got <value>``; ``at(source)`` names where the value came from."""

    def __init__(self, field: str, expected: str, value: Any, source: str = "recipe"):
        super().__init__(f"{source} field '{field}': expected {expected}, got {value!r}")
        self.field, self.expected, self.value, self.source = field, expected, value, source

    def at(self, source: str) -> FieldError:
        return FieldError(self.field, self.expected, self.value, source)

    def __reduce__(self):  # pickles across process pools with its parts
        return FieldError, (self.field, self.expected, self.value, self.source)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    # inf passes every range check (--lr inf trained to NaN), so a number must be finite
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---- constraints ------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """An int or a finite number between ``low`` and ``high``; ``closed`` says which ends are
    included ("both", "left", "right", "neither"; integers are always both)."""

    type: type
    low: float
    high: float
    closed: str = "both"
    unit: str | None = None  # "a number of pixels in [0, 14]"
    odd: bool = False  # integers only
    note: str | None = None  # appended to the description after a comma

    def ok(self, v: Any) -> bool:
        if self.type is int:
            return is_int(v) and self.low <= v <= self.high and (not self.odd or v % 2 == 1)
        if not is_number(v):
            return False
        above = v >= self.low if self.closed in ("both", "left") else v > self.low
        below = v <= self.high if self.closed in ("both", "right") else v < self.high
        return above and below

    def describe(self) -> str:
        if self.type is int:
            text = f"an {'odd ' if self.odd else ''}integer from {self.low} to {self.high}"
        else:
            left = "[" if self.closed in ("both", "left") else "("
            right = "]" if self.closed in ("both", "right") else ")"
            of = f" of {self.unit}" if self.unit else ""
            text = f"a number{of} in {left}{_g(self.low)}, {_g(self.high)}{right}"
        return f"{text}, {self.note}" if self.note else text


@dataclass(frozen=True)
class Options:
    """One of a few strings."""

    choices: tuple[str, ...]

    def __init__(self, *choices: str):
        object.__setattr__(self, "choices", tuple(choices))

    def ok(self, v: Any) -> bool:
        return isinstance(v, str) and v in self.choices

    def describe(self) -> str:
        return "one of " + ", ".join(self.choices)


@dataclass(frozen=True)
class IntList:
    """A list of integers, each from ``low`` to ``high``, at most ``max_len`` of them."""

    low: int
    high: int
    max_len: int | None
    example: str

    def ok(self, v: Any) -> bool:
        return (
            isinstance(v, list)
            and (self.max_len is None or len(v) <= self.max_len)
            and all(is_int(x) and self.low <= x <= self.high for x in v)
        )

    def describe(self) -> str:
        most = "" if self.max_len is None else f"at most {self.max_len} "
        return f"a list of {most}integers from {self.low} to {self.high}, e.g. {self.example}"


@dataclass(frozen=True)
class Flag:
    """True or false (a TOML boolean; 1 and "yes" are refused)."""

    def ok(self, v: Any) -> bool:
        return isinstance(v, bool)

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Text:
    """A string, optionally matching ``pattern`` (then ``description`` says what it takes)."""

    pattern: str | None = None
    description: str = "a string"

    def ok(self, v: Any) -> bool:
        return isinstance(v, str) and (self.pattern is None or re.fullmatch(self.pattern, v))

    def describe(self) -> str:
        return self.description


@dataclass(frozen=True)
class OrUnset:
    """``inner``, or unset (None); ``unset`` says what unset means."""

    inner: Any
    unset: str | None = None

    def ok(self, v: Any) -> bool:
        return v is None or self.inner.ok(v)

    def describe(self) -> str:
        return f"{self.inner.describe()} (or unset{': ' + self.unset if self.unset else ''})"


def _g(x: float) -> str:
    return f"{x:g}"


# ---- declaring a field ------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """A recipe field's declaration beside its default (kept in the dataclass field's metadata).

    ``section``: its table in recipe.toml (None: top level); ``alias``: another accepted key;
    ``per_optimizer``: left unset, its value comes from the optimizer's row
    (``recipe.optimizers``).
    """

    section: str | None
    help: str
    constraint: Any
    alias: str | None = None
    per_optimizer: bool = False


def param(
    default: Any,
    constraint: Any,
    help: str,
    *,
    section: str | None,
    alias: str | None = None,
    per_optimizer: bool = False,
) -> Any:
    """A dataclass field of ``Recipe`` carrying its ``Spec``."""
    spec = Spec(section, help, constraint, alias, per_optimizer)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"spec": spec})
    return dataclasses.field(default=default, metadata={"spec": spec})


def specs(cls: type) -> dict[str, Spec]:
    """name -> Spec of every field of a dataclass declared with ``param``, in order."""
    return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls)}


def default_of(cls: type, name: str) -> Any:
    f = cls.__dataclass_fields__[name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
