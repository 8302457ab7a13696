"""What each JSON file of a run folder may hold, declared once as data, and the one check.

A spec is a leaf (``NUMBER``, ``INTEGER``, ``TEXT``, ``BOOLEAN``), ``optional(spec)`` (null
too), ``listof(spec)``, ``mapping(spec)`` (an object with any keys) or ``fields(...)`` (an object
whose named keys, when present, match; ``required`` ones must be). Keys not named are kept
unchecked: metrics.json is shared, and a newer mnistlab may add keys an older one still reads.
A value that breaks its spec is one RunError naming the file, the key and what was expected.

>>> check({"test": {"accuracy": "high"}}, METRICS, "metrics.json")
Traceback (most recent call last):
mnistlab.errors.RunError: metrics.json: ['test']['accuracy'] is 'high', expected a number or null
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mnistlab.errors import RunError

MAX_DEPTH = 32  # the deepest file mnistlab writes nests 5 levels (metrics' confusion matrix)


@dataclass(frozen=True)
class Leaf:
    types: tuple[type, ...]
    name: str

    def accepts(self, value: Any) -> bool:  # JSON's true is no number, though Python's is
        return isinstance(value, self.types) and (bool in self.types or not isinstance(value, bool))


@dataclass(frozen=True)
class Optional:
    spec: Any

    @property
    def name(self) -> str:
        return f"{self.spec.name} or null"


@dataclass(frozen=True)
class ListOf:
    item: Any
    name: str = "a list"


@dataclass(frozen=True)
class Mapping:
    value: Any
    name: str = "an object"


@dataclass(frozen=True)
class Fields:
    specs: dict[str, Any]
    required: tuple[str, ...] = ()
    name: str = "an object"


NUMBER = Leaf((int, float), "a number")
INTEGER = Leaf((int,), "an integer")
TEXT = Leaf((str,), "a string")
BOOLEAN = Leaf((bool,), "true or false")


def optional(spec: Any) -> Optional:
    return Optional(spec)


def listof(item: Any) -> ListOf:
    return ListOf(item)


def mapping(value: Any, name: str = "an object") -> Mapping:
    return Mapping(value, name)


def fields(*, required: tuple[str, ...] = (), **specs: Any) -> Fields:
    return Fields(specs, required)


# ---- the files ----------------------------------------------------------------------------
_NUM = optional(NUMBER)  # null: a non-finite number (a diverged loss) is written as null
_SCORES = fields(precision=_NUM, recall=_NUM, f1=_NUM, support=INTEGER)
EVALUATION = fields(
    n=INTEGER,
    accuracy=_NUM,
    loss=_NUM,
    per_class=mapping(_SCORES),
    macro_avg=_SCORES,
    weighted_avg=_SCORES,
    confusion_matrix=listof(listof(INTEGER)),
    most_confused=listof(fields(true=TEXT, predicted=TEXT, count=INTEGER, share_of_true=_NUM)),
    r2=fields(probabilities_vs_onehot=_NUM, brier=_NUM, how_to_read=TEXT, labels=TEXT),
    class_names=listof(TEXT),
    split=TEXT,
    dataset=TEXT,
    figures=mapping(TEXT),
)
METRICS = fields(
    train=fields(
        epoch=optional(INTEGER), loss=_NUM, accuracy=_NUM, val_loss=_NUM, val_accuracy=_NUM
    ),
    test=fields(loss=_NUM, accuracy=_NUM),
    health=listof(TEXT),
    stopped=optional(TEXT),
    early_stopping=optional(
        fields(
            monitor=TEXT,
            patience=INTEGER,
            best=_NUM,
            best_epoch=optional(INTEGER),
            stopped_epoch=optional(INTEGER),
            restored_epoch=optional(INTEGER),
        )
    ),
    evaluation=mapping(EVALUATION),
)
DATASET = Fields(  # built directly: one of its keys is called "name"
    {
        "name": TEXT,
        "source": optional(TEXT),
        "checksums": mapping(TEXT, "an object (file name -> SHA-256)"),
        "note": optional(TEXT),
        "data_dir": optional(TEXT),
        "train": optional(INTEGER),
        "test": optional(INTEGER),
    },
    required=("name",),
    name="an object (the dataset's name, source and checksums)",
)
ENVIRONMENT = fields(
    required=("engine",),
    mnistlab=TEXT,
    python=TEXT,
    platform=TEXT,
    numpy=TEXT,
    seed=INTEGER,
    threads=optional(INTEGER),
    cpu_count=optional(INTEGER),
    engine=TEXT,
    engine_reason=optional(TEXT),
    device=optional(TEXT),
    dataset=DATASET,
    started=TEXT,
    engine_threads=optional(INTEGER),
    engine_backend=optional(TEXT),
    subnormals=optional(TEXT),
    torch=TEXT,
    numba=TEXT,
    torch_threads=optional(INTEGER),
    resumed=listof(fields(after_epoch=INTEGER, at=TEXT)),
    extended=listof(  # a finished run trained on: from_epochs -> to_epochs (training.plan.extend)
        fields(required=("from_epochs",), from_epochs=INTEGER, to_epochs=INTEGER, at=TEXT)
    ),
)


# ---- the check ----------------------------------------------------------------------------
def check(value: Any, spec: Any, path: Any, where: str = "") -> Any:
    """``value`` when it matches ``spec``, else RunError "``path``: ``where`` is X, expected Y"."""
    problem = _problem(value, spec, where)
    if problem is not None:
        raise RunError(f"{path}: {problem}")
    return value


def _problem(value: Any, spec: Any, where: str, name: str | None = None) -> str | None:
    """What is wrong with ``value`` at ``where``, or None; ``name`` is what to call the expected
    kind (an optional spec names its null too)."""
    name = name or spec.name
    if isinstance(spec, Optional):
        return None if value is None else _problem(value, spec.spec, where, spec.name)
    if isinstance(spec, Leaf):
        return None if spec.accepts(value) else _said(value, name, where)
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            return _said(value, name, where)
        return _first(_problem(v, spec.item, f"{where}[{i}]") for i, v in enumerate(value))
    if not isinstance(value, dict):
        return _said(value, name, where)
    if isinstance(spec, Mapping):
        return _first(_problem(v, spec.value, f"{where}[{k!r}]") for k, v in value.items())
    for key in spec.required:
        if key not in value:
            return f"{where}[{key!r}] is missing, expected {spec.specs[key].name}"
    return _first(
        _problem(value[k], s, f"{where}[{k!r}]") for k, s in spec.specs.items() if k in value
    )


def _first(problems) -> str | None:
    return next((p for p in problems if p is not None), None)


def _said(value: Any, expected: str, where: str) -> str:
    if isinstance(value, (list, dict)):
        shown = "a list" if isinstance(value, list) else "an object"
    else:
        shown = repr(value) if isinstance(value, str) else json.dumps(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{where} is {shown}, expected {expected}"


def depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (a number: 0), without recursion.

    >>> depth({"a": [1, [2]]}), depth(3)
    (3, 0)
    """
    deepest, todo = 0, [(value, 0)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d + 1)
            todo.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest
