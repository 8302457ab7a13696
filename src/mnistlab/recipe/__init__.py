"""The recipe: one plain-data object that says how to train, in the seed notebook's vocabulary.

Its defaults ARE the notebook's final recipe (784 → 3 × Dense(128, relu) → Dense(10, softmax),
SGD lr 0.01, decay 1e-6, momentum 0.9, nesterov, batch 32, 5 epochs, validation_split 0.3 on
standardized pixels), so ``Recipe()`` trains exactly what the notebook trains.

Each field is declared once below, with its recipe.toml section, default, help and what it
accepts (``recipe.fields``); a Recipe is checked when it is built, so one that exists is valid.
The optimizers and activations it can name are the rows of ``recipe.optimizers``.

>>> r = Recipe()
>>> r.hidden, r.learning_rate, r.batch_size
([128, 128, 128], 0.01, 32)
>>> Recipe(lr=0.1).learning_rate     # the notebook's spelling is accepted
0.1
>>> try:
...     Recipe(batch_size=0)
... except RecipeError as err:
...     print(err)
recipe field 'batch_size': expected an integer from 1 to 60000, got 0
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mnistlab.errors import RecipeError
from mnistlab.fsio import atomic_write_text, read_toml
from mnistlab.recipe.fields import (
    FieldError,
    Flag,
    Interval,
    IntList,
    Options,
    OrUnset,
    Spec,
    Text,
    default_of,
    param,
    specs,
)
from mnistlab.recipe.optimizers import ACTIVATIONS, OPTIMIZERS

NORMALIZE = ("standardize", "scale", "none")
KINDS = ("mlp", "cnn")
SCHEDULES = ("constant", "step", "exponential", "cosine", "onecycle", "plateau")
PLATEAU_MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")
ENGINES = ("auto", "fast", "reference")
MONITORS = ("val_loss", "val_accuracy")

# Ranges that make sense for MNIST (28x28 images, 60,000 training images); a recipe is portable,
# so they are fixed (train holds a run to this machine's memory and CPUs, mnistlab.training.budget).
MAX_EPOCHS = 10_000
MAX_BATCH = 60_000  # the whole MNIST training set in one step
MAX_WIDTH, MAX_DEPTH = 65_536, 32  # hidden Dense units, hidden Dense layers
MAX_CHANNELS = 1024
MAX_CONV_BLOCKS = 4  # 28 -> 14 -> 7 -> 3 -> 1: a fifth 2x2 max-pool has nothing left to pool
MAX_THREADS = 256  # more than any CPU of today has cores
MAX_SEED = 2**32 - 1
MAX_LR = 10.0  # adadelta trains at 1.0; 10x that diverges with every optimizer
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}"

_EPOCHS = Interval(int, 0, MAX_EPOCHS)
_FRACTION = Interval(float, 0, 1, closed="left")  # [0, 1)
_FACTOR = Interval(float, 0, 1, closed="right")  # (0, 1]


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run; see the module docstring for the defaults."""

    name: str = param(
        "notebook",
        Text(NAME, "letters, digits, '.', '_' or '-', at most 200 (it names a folder)"),
        "run name, used in the run folder's name",
        section=None,
    )
    # data
    dataset: str | None = param(
        None,
        OrUnset(Text()),
        "dataset name; unset = full MNIST, else the bundled sample",
        section="data",
    )
    data_dir: str | None = param(
        None,
        OrUnset(Text()),
        "folder holding the four IDX files (skips cache/download)",
        section="data",
    )
    validation_split: float = param(
        0.3,
        _FRACTION,
        "share of the training set held out for validation (the LAST part, as Keras takes "
        "it); 0 = none",
        section="data",
    )
    normalize: str = param("standardize", Options(*NORMALIZE), "input scaling", section="data")
    # model
    kind: str = param("mlp", Options(*KINDS), "network family", section="model")
    hidden: list[int] = param(
        [128, 128, 128],
        IntList(1, MAX_WIDTH, MAX_DEPTH, "[128, 128, 128]"),
        "sizes of the hidden Dense layers",
        section="model",
    )
    conv_channels: list[int] = param(
        [32, 64],
        IntList(1, MAX_CHANNELS, None, "[32, 64]"),
        "channels of the conv blocks (kind=cnn; each block halves the 28x28 image)",
        section="model",
    )
    kernel_size: int = param(
        3,
        Interval(int, 1, 7, odd=True),
        "conv kernel size (kind=cnn; odd, so 'same' padding is symmetric)",
        section="model",
    )
    activation: str = param("relu", Options(*ACTIVATIONS), "hidden activation", section="model")
    dropout: float = param(0.0, _FRACTION, "dropout rate after each hidden layer", section="model")
    batch_norm: bool = param(
        False, Flag(), "batch normalization after each hidden Dense", section="model"
    )
    l2: float = param(
        0.0,
        Interval(float, 0, 1),
        "L2 penalty: l2 * sum(kernel**2) added to the loss (Keras semantics)",
        section="model",
    )
    max_norm: float = param(
        0.0,
        Interval(float, 0, 100),
        "max-norm constraint on each Dense kernel's columns after every update (Keras "
        "MaxNorm, axis 0); 0 = off",
        section="model",
    )
    # optimizer
    optimizer: str = param("sgd", Options(*OPTIMIZERS), "optimizer", section="optimizer")
    learning_rate: float = param(
        0.01,
        Interval(float, 0, MAX_LR, closed="right"),
        "learning rate",
        section="optimizer",
        alias="lr",
    )
    decay: float = param(
        1e-6,
        Interval(float, 0, 1),
        "Keras legacy decay: lr / (1 + decay * iterations)",
        section="optimizer",
    )
    momentum: float | None = param(
        None, OrUnset(_FRACTION), "momentum", section="optimizer", per_optimizer=True
    )
    nesterov: bool = param(True, Flag(), "Nesterov momentum (sgd)", section="optimizer")
    weight_decay: float | None = param(
        None,
        OrUnset(Interval(float, 0, 10)),
        "decoupled weight decay: w -= weight_decay * lr * w each step",
        section="optimizer",
        per_optimizer=True,
    )
    schedule: str = param(
        "constant", Options(*SCHEDULES), "learning-rate schedule", section="optimizer"
    )
    warmup_epochs: float = param(
        0.0,
        Interval(float, 0, MAX_EPOCHS),
        "linear warm-up length in epochs",
        section="optimizer",
    )
    step_size: int = param(
        1,
        Interval(int, 1, MAX_EPOCHS),
        "epochs per lr factor gamma (schedule=step: a drop every step_size epochs; "
        "exponential: the same decay spread smoothly over the steps)",
        section="optimizer",
    )
    gamma: float = param(
        0.1,
        _FACTOR,
        "lr factor per step_size epochs (schedule=step or exponential)",
        section="optimizer",
    )
    plateau_monitor: str = param(
        "val_loss",
        Options(*PLATEAU_MONITORS),
        "number watched by schedule=plateau (Keras' ReduceLROnPlateau); losses must fall, "
        "accuracies rise",
        section="optimizer",
    )
    plateau_factor: float = param(
        0.1,
        _FACTOR,
        "lr factor when the monitored number stalls (schedule=plateau)",
        section="optimizer",
    )
    plateau_patience: int = param(
        10,
        Interval(int, 1, MAX_EPOCHS),
        "epochs without improvement before the lr drops (schedule=plateau)",
        section="optimizer",
    )
    plateau_min_delta: float = param(
        1e-4,
        Interval(float, 0, 10),
        "smallest change that counts as an improvement (schedule=plateau)",
        section="optimizer",
    )
    plateau_cooldown: int = param(
        0,
        _EPOCHS,
        "epochs after a drop before stalls count again (schedule=plateau)",
        section="optimizer",
    )
    min_lr: float = param(
        0.0,
        Interval(float, 0, MAX_LR),
        "the lr schedule=plateau never drops below",
        section="optimizer",
    )
    # fit
    batch_size: int = param(
        32, Interval(int, 1, MAX_BATCH), "samples per optimizer step", section="fit"
    )
    epochs: int = param(
        5, Interval(int, 1, MAX_EPOCHS), "passes over the training part", section="fit"
    )
    seed: int = param(
        0,
        Interval(int, 0, MAX_SEED),
        "seed of initialization, shuffling and dropout",
        section="fit",
    )
    shuffle: bool = param(True, Flag(), "reshuffle the training part every epoch", section="fit")
    label_smoothing: float = param(
        0.0, _FRACTION, "label smoothing of the cross-entropy targets", section="fit"
    )
    engine: str = param(
        "auto",
        Options(*ENGINES),
        "training engine (auto: fast when it supports the recipe)",
        section="fit",
    )
    threads: int | None = param(
        None,
        OrUnset(
            Interval(int, 1, MAX_THREADS, note="at most the machine's CPU count"),
            unset="the engine's measured choice",
        ),
        "CPU threads",
        section="fit",
    )
    early_stopping: int = param(
        0,
        _EPOCHS,
        "stop after this many epochs without a better monitor value (needs "
        "validation_split > 0); 0 = off",
        section="fit",
    )
    monitor: str = param(
        "val_loss",
        Options(*MONITORS),
        "validation metric early stopping watches",
        section="fit",
    )
    restore_best: bool = param(
        True,
        Flag(),
        "with early stopping, the run keeps the best epoch's weights",
        section="fit",
    )
    # augment (training images only, redrawn every epoch; 0 = off)
    augment_shift: float = param(
        0.0,
        Interval(float, 0, 14, unit="pixels"),
        "random shift of each training image, up to this many pixels along each axis",
        section="augment",
    )
    augment_rotate: float = param(
        0.0,
        Interval(float, 0, 180, unit="degrees"),
        "random rotation, up to this many degrees either way",
        section="augment",
    )
    augment_scale: float = param(
        0.0,
        _FRACTION,
        "random zoom by a factor within 1 +/- this fraction",
        section="augment",
    )
    augment_elastic: float = param(
        0.0,
        Interval(float, 0, 100, unit="pixels"),
        "elastic distortion strength alpha (Simard 2003: 34 with sigma 4)",
        section="augment",
    )
    augment_elastic_sigma: float = param(
        4.0,
        Interval(float, 0.1, 20, unit="pixels"),
        "smoothness of the elastic distortion",
        section="augment",
    )

    def __post_init__(self) -> None:
        self.validate()

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def compose(
        cls, file: str | Path | None = None, preset: str | None = None, **changes: Any
    ) -> Recipe:
        """The recipe a run trains with: a base (a TOML ``file`` OR a ``preset``, else the
        notebook's ``Recipe()``), then ``changes`` on top (``lr`` accepted).

        >>> Recipe.compose(preset="notebook", lr=0.1, epochs=2).learning_rate
        0.1
        """
        if file is not None and preset is not None:
            raise RecipeError(
                f"give a recipe file or a preset, not both (file {file}, preset {preset})"
            )
        base = (
            cls.from_toml(file)
            if file is not None
            else load_preset(preset)
            if preset is not None
            else cls()
        )
        return base.replace(**changes) if changes else base

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "recipe") -> Recipe:
        """Build from a flat or sectioned dict; unknown keys and bad values are one-line errors
        that start with ``source``."""
        flat = flatten(data, source)
        try:
            return cls(**flat)
        except FieldError as err:
            raise err.at(source) from None

    @classmethod
    def from_toml(cls, path: str | Path) -> Recipe:
        """Read a recipe file; a relative ``data_dir`` in it is relative to the file's folder
        (so a recipe and its data can move together), not to wherever the command runs."""
        recipe = cls.from_dict(read_toml(path, "recipe"), source=str(path))
        if recipe.data_dir is not None and not Path(recipe.data_dir).is_absolute():
            recipe = dataclasses.replace(
                recipe, data_dir=str((Path(path).parent / recipe.data_dir).resolve())
            )
        return recipe

    def to_dict(self) -> dict[str, Any]:
        """Sectioned, TOML-ready (unset optional fields left out)."""
        values = dataclasses.asdict(self)
        out: dict[str, Any] = {k: values[k] for k, s in SPECS.items() if s.section is None}
        for section, keys in SECTIONS.items():
            out[section] = {k: values[k] for k in keys if values[k] is not None}
        return out

    def to_toml(self, path: str | Path | None = None) -> str:
        import tomli_w

        text = tomli_w.dumps(self.to_dict())
        if path is not None:
            atomic_write_text(path, text)
        return text

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (``lr`` accepted), checked as any new Recipe."""
        return dataclasses.replace(self, **canonical(changes, "recipe"))

    def resolved(self) -> Recipe:
        """A copy with the per-optimizer values of unset fields filled in (what the engines
        train with).

        >>> Recipe().resolved().momentum, Recipe(optimizer="rmsprop").resolved().momentum
        (0.9, 0.0)
        >>> Recipe(optimizer="adamw").resolved().weight_decay
        0.004
        """
        row = OPTIMIZERS[self.optimizer]
        filled = {
            name: getattr(row, name)
            for name, spec in SPECS.items()
            if spec.per_optimizer and getattr(self, name) is None
        }
        return dataclasses.replace(self, **filled) if filled else self

    # ---- validation ---------------------------------------------------------------------
    def validate(self, source: str = "recipe") -> Recipe:
        """Raise FieldError (a RecipeError) naming the first bad field and what it accepts;
        return self. A Recipe runs it when built, so this re-states a recipe's validity."""
        for name, spec in SPECS.items():
            if not spec.constraint.ok(getattr(self, name)):
                raise FieldError(name, spec.constraint.describe(), getattr(self, name), source)
        for name, expected, broken in (
            (
                "plateau_monitor",
                "'loss' or 'accuracy' when validation_split is 0 (no validation numbers to watch)",
                self.schedule == "plateau"
                and self.plateau_monitor.startswith("val_")
                and self.validation_split == 0,
            ),
            (
                "early_stopping",
                "0 when validation_split is 0 (it watches the validation part)",
                self.early_stopping > 0 and self.validation_split == 0,
            ),
            (
                "conv_channels",
                "at least one conv block when kind is 'cnn'",
                self.kind == "cnn" and not self.conv_channels,
            ),
            (
                "conv_channels",
                f"at most {MAX_CONV_BLOCKS} conv blocks when kind is 'cnn' (each 2x2 max-pool "
                "halves the 28x28 image: 14, 7, 3, 1)",
                self.kind == "cnn" and len(self.conv_channels) > MAX_CONV_BLOCKS,
            ),
        ):
            if broken:
                raise FieldError(name, expected, getattr(self, name), source)
        return self


SPECS: dict[str, Spec] = specs(Recipe)
# How the fields group in a recipe.toml (reading also accepts a flat table).
SECTIONS: dict[str, tuple[str, ...]] = {
    section: tuple(n for n, s in SPECS.items() if s.section == section)
    for section in dict.fromkeys(s.section for s in SPECS.values() if s.section is not None)
}
ALIASES: dict[str, str] = {s.alias: n for n, s in SPECS.items() if s.alias is not None}
_ALIAS_NOTE = ", ".join(f"{a} is an alias of {n}" for a, n in ALIASES.items())


def _accept_aliases(init):
    """``Recipe(lr=0.1)``: the dataclass's own __init__, with aliases and unknown keys handled
    as in a recipe file."""

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **canonical(kwargs, "recipe"))

    return __init__


Recipe.__init__ = _accept_aliases(Recipe.__init__)  # type: ignore[method-assign]


def canonical(changes: dict[str, Any], source: str) -> dict[str, Any]:
    """``changes`` with aliases resolved to field names: one-line errors for an unknown key
    (with a did-you-mean) or a field given twice (once through its alias)."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        name = _canonical(key, source)
        if name in out:
            raise RecipeError(f"{source}: '{name}' is given twice ({_ALIAS_NOTE})")
        out[name] = value
    return out


def flatten(data: dict[str, Any], source: str) -> dict[str, Any]:
    """A flat or sectioned table of recipe fields as one flat {field: value}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        where, items = source, [(key, value)]
        if key in SECTIONS and isinstance(value, dict):
            where, items = f"{source} [{key}]", list(value.items())
        for name, v in canonical(dict(items), where).items():
            if name in flat:
                raise RecipeError(f"{where}: '{name}' is given twice ({_ALIAS_NOTE})")
            flat[name] = v
    return flat


def fields_help() -> dict[str, str]:
    """name -> one line of help for every recipe field: what it is, what it accepts, its
    default (``mnistlab train`` takes its flags' help from this)."""
    out = {}
    for name, spec in SPECS.items():
        alias = f" (alias: {spec.alias})" if spec.alias else ""
        out[name] = f"{spec.help}{alias} — {spec.constraint.describe()}; {default_text(name, spec)}"
    return out


def default_text(name: str, spec: Spec) -> str:
    """A field's default in words, as help and docs show it ('default: 32'; a per-optimizer
    field: 'unset: sgd 0.9, rmsprop 0')."""
    if spec.per_optimizer:
        users = [o for o in OPTIMIZERS.values() if name in o.reads]
        return "unset: " + ", ".join(f"{o.name} {getattr(o, name):g}" for o in users)
    default = default_of(Recipe, name)
    return "default: unset" if default is None else f"default: {_toml(default)}"


def _toml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---- how two recipes differ -------------------------------------------------------------
# Fields that say where or how fast a run goes, not what it learns: no run is told apart by them.
NOT_WHAT_IT_LEARNS = ("name", "data_dir", "threads")
# The order changes are named in: the data, the network family, the optimizer, then the rest in
# declaration order ("adam-lr0.001-dropout0.2-bn").
_FIRST = ("dataset", "normalize", "kind", "optimizer", "learning_rate")
_SHORT = {
    "learning_rate": "lr",
    "batch_norm": "bn",
    "batch_size": "batch",
    "validation_split": "val",
    "label_smoothing": "smooth",
    "weight_decay": "wd",
    "warmup_epochs": "warmup",
    "early_stopping": "patience",
    "restore_best": "restore-best",
    "conv_channels": "conv",
    "kernel_size": "kernel",
    "max_norm": "maxnorm",
    "augment_shift": "shift",
    "augment_rotate": "rotate",
    "augment_scale": "zoom",
    "augment_elastic": "elastic",
    "augment_elastic_sigma": "elastic-sigma",
    "plateau_monitor": "plateau-monitor",
    "plateau_factor": "plateau-factor",
    "plateau_patience": "plateau-patience",
    "plateau_min_delta": "plateau-delta",
    "plateau_cooldown": "plateau-cooldown",
    "min_lr": "min-lr",
    "step_size": "step-size",
}
_BARE = ("dataset", "kind", "optimizer", "schedule", "activation")  # the value says it all


def differences(recipe: Recipe, base: Recipe | None = None) -> dict[str, tuple[Any, Any]]:
    """field -> (base's value, recipe's value) for every field but ``name`` in which ``recipe``
    differs from ``base`` (default: the notebook's ``Recipe()``). A per-optimizer field at its
    optimizer's own value counts as unset, so the momentum sgd fills in is no difference.

    >>> differences(Recipe(optimizer="adam", lr=0.001, momentum=0.0))
    {'optimizer': ('sgd', 'adam'), 'learning_rate': (0.01, 0.001)}
    """
    a, b = _unresolved(base or Recipe()), _unresolved(recipe)
    return {name: (a[name], b[name]) for name in SPECS if name != "name" and a[name] != b[name]}


def _unresolved(recipe: Recipe) -> dict[str, Any]:
    row = OPTIMIZERS[recipe.optimizer]
    values = {name: getattr(recipe, name) for name in SPECS}
    for name, spec in SPECS.items():
        if spec.per_optimizer and values[name] == getattr(row, name):
            values[name] = None
    return values


def changes(recipe: Recipe, base: Recipe | None = None) -> list[str]:
    """What ``recipe`` changes from ``base`` (default: the notebook's), one short token per
    field that changes what a run learns, data and optimizer first: the words a run folder is
    named with.

    >>> changes(Recipe(batch_norm=True, dropout=0.2, optimizer="adam", lr=0.001, threads=2))
    ['adam', 'lr0.001', 'dropout0.2', 'bn']
    >>> changes(Recipe(normalize="none", hidden=[256, 128]))
    ['normalize-none', 'hidden256_128']
    """
    diff = differences(recipe, base)
    order = [n for n in _FIRST if n in diff] + [n for n in diff if n not in _FIRST]
    return [_token(n, diff[n][1]) for n in order if n not in NOT_WHAT_IT_LEARNS]


def _token(name: str, value: Any) -> str:
    short = _SHORT.get(name, name)
    if isinstance(value, bool):
        text = short if value else f"no-{short}"
    elif value is None:
        text = f"{short}-unset"
    elif name in _BARE:
        text = str(value)
    elif isinstance(value, str):
        text = f"{short}-{value}"
    elif isinstance(value, list):
        text = f"{short}{'_'.join(map(str, value))}" if value else f"{short}-none"
    else:
        text = f"{short}{value:g}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def base_of(recipe: Recipe) -> tuple[str | None, Recipe]:
    """(preset name or None, the recipe ``recipe`` was made from): the shipped preset its name
    names, else the notebook's ``Recipe()`` (None: it carries a name of its own)."""
    if recipe.name in preset_names() and recipe.name != "notebook":
        return recipe.name, load_preset(recipe.name)
    return ("notebook" if recipe.name == "notebook" else None), Recipe()


def preset_names() -> list[str]:
    """Names of the recipes shipped in ``mnistlab/recipe/presets``."""
    root = resources.files("mnistlab.recipe") / "presets"
    if not root.is_dir():
        return []
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> Recipe:
    """A shipped recipe by name (see ``preset_names()``)."""
    return Recipe.from_dict(tomllib.loads(preset_text(name)), source=f"preset {name}")


def preset_text(name: str) -> str:
    """A shipped recipe's TOML file, comments and all: a starting point to copy and edit."""
    names = preset_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RecipeError(
            f"unknown preset {name!r}{hint}: expected one of {', '.join(names) or '(none)'}"
        )
    res = resources.files("mnistlab.recipe") / "presets" / f"{name}.toml"
    return res.read_text(encoding="utf-8")


def description(toml_text: str) -> str:
    """What a preset file is, in one line: its first comment line (empty without one).

    >>> description("# Adam at 0.001.\\n# More words.\\nlr = 0.001\\n")
    'Adam at 0.001.'
    """
    for line in toml_text.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def _canonical(key: str, source: str) -> str:
    key = ALIASES.get(key, key)
    if key not in SPECS:
        close = difflib.get_close_matches(key, list(SPECS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RecipeError(
            f"{source}: unknown key '{key}'{hint}; allowed keys: " + ", ".join([*SPECS, *ALIASES])
        )
    return key
