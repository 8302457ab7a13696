"""The recipe: one plain-data object that says how to train, in the seed notebook's vocabulary.

Its defaults ARE the notebook's final recipe (784 → 3 × Dense(128, relu) → Dense(10, softmax),
SGD lr 0.01, decay 1e-6, momentum 0.9, nesterov, batch 32, 5 epochs, validation_split 0.3 on
standardized pixels), so ``Recipe()`` trains exactly what the notebook trains.

>>> r = Recipe()
>>> r.hidden, r.learning_rate, r.batch_size
([128, 128, 128], 0.01, 32)
>>> Recipe.from_dict({"lr": 0.1}).learning_rate     # the notebook's spelling is accepted
0.1
>>> Recipe(batch_size=0).validate()
Traceback (most recent call last):
...
mnistlab.errors.RecipeError: recipe field 'batch_size': expected an integer >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mnistlab.errors import RecipeError
from mnistlab.fsio import atomic_write_text, read_toml

NORMALIZE = ("standardize", "scale", "none")
KINDS = ("mlp", "cnn")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")
MAX_CONV_BLOCKS = 4  # 28 -> 14 -> 7 -> 3 -> 1: a fifth 2x2 max-pool has nothing left to pool
OPTIMIZERS = ("sgd", "adam", "adamw", "nadam", "rmsprop", "adagrad", "adadelta")
SCHEDULES = ("constant", "step", "exponential", "cosine", "onecycle", "plateau")
PLATEAU_MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")
ENGINES = ("auto", "fast", "reference")
MONITORS = ("val_loss", "val_accuracy")
ALIASES = {"lr": "learning_rate"}
# More threads than any CPU of today has cores: a recipe is portable, so this bound is fixed
# (train holds a new run to the machine's own CPU count, see mnistlab.training.budget).
MAX_THREADS = 256
# Unset fields whose sensible default depends on the optimizer: sgd keeps the notebook's
# momentum 0.9, while Keras' RMSprop has none (0.9 on top of rmsprop's own scaling diverges at
# lr 0.01), and Keras' AdamW decays by 0.004 (0 would make it plain adam).
_PER_OPTIMIZER: dict[str, dict[str | None, float]] = {
    "momentum": {"sgd": 0.9, None: 0.0},
    "weight_decay": {"adamw": 0.004, None: 0.0},
}

# How the fields group in a recipe.toml (reading also accepts a flat table).
SECTIONS = {
    "data": ("dataset", "data_dir", "validation_split", "normalize"),
    "model": (
        "kind",
        "hidden",
        "conv_channels",
        "kernel_size",
        "activation",
        "dropout",
        "batch_norm",
        "l2",
        "max_norm",
    ),
    "optimizer": (
        "optimizer",
        "learning_rate",
        "decay",
        "momentum",
        "nesterov",
        "weight_decay",
        "schedule",
        "warmup_epochs",
        "step_size",
        "gamma",
        "plateau_monitor",
        "plateau_factor",
        "plateau_patience",
        "plateau_min_delta",
        "plateau_cooldown",
        "min_lr",
    ),
    "fit": (
        "batch_size",
        "epochs",
        "seed",
        "shuffle",
        "label_smoothing",
        "engine",
        "threads",
        "early_stopping",
        "monitor",
        "restore_best",
    ),
    "augment": (
        "augment_shift",
        "augment_rotate",
        "augment_scale",
        "augment_elastic",
        "augment_elastic_sigma",
    ),
}


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field carrying its one-line help (used for CLI flags and error messages)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Recipe:
    """Everything that decides a training run; see the module docstring for the defaults."""

    name: str = _f("notebook", "run name, used in the run folder's name")
    # data
    dataset: str | None = _f(None, "dataset name; unset = full MNIST, else the bundled sample")
    data_dir: str | None = _f(None, "folder holding the four IDX files (skips cache/download)")
    validation_split: float = _f(
        0.3,
        "share of the training set held out for validation "
        "(the LAST part, as Keras takes it); 0 = none",
    )
    normalize: str = _f("standardize", "input scaling", choices=NORMALIZE)
    # model
    kind: str = _f("mlp", "network family", choices=KINDS)
    hidden: list[int] = _f([128, 128, 128], "sizes of the hidden Dense layers")
    conv_channels: list[int] = _f([32, 64], "channels of the conv blocks (kind=cnn)")
    kernel_size: int = _f(3, "conv kernel size (kind=cnn)")
    activation: str = _f("relu", "hidden activation", choices=ACTIVATIONS)
    dropout: float = _f(0.0, "dropout rate after each hidden layer")
    batch_norm: bool = _f(False, "batch normalization after each hidden Dense")
    l2: float = _f(0.0, "L2 penalty: l2 * sum(kernel**2) added to the loss (Keras semantics)")
    max_norm: float = _f(
        0.0,
        "max-norm constraint on each Dense kernel's columns after every "
        "update (Keras MaxNorm, axis 0); 0 = off",
    )
    # optimizer
    optimizer: str = _f("sgd", "optimizer", choices=OPTIMIZERS)
    learning_rate: float = _f(0.01, "learning rate (alias: lr)")
    decay: float = _f(1e-6, "Keras legacy decay: lr / (1 + decay * iterations)")
    momentum: float | None = _f(
        None, "momentum (unset: the notebook's 0.9 for sgd, Keras' 0 for rmsprop)"
    )
    nesterov: bool = _f(True, "Nesterov momentum (sgd)")
    weight_decay: float | None = _f(None, "decoupled weight decay (adamw; unset: Keras' 0.004)")
    schedule: str = _f("constant", "learning-rate schedule", choices=SCHEDULES)
    warmup_epochs: float = _f(0.0, "linear warm-up length in epochs")
    step_size: int = _f(
        1,
        "epochs per lr factor gamma (schedule=step: a drop every step_size "
        "epochs; exponential: the same decay spread smoothly over the steps)",
    )
    gamma: float = _f(0.1, "lr factor per step_size epochs (schedule=step or exponential)")
    plateau_monitor: str = _f(
        "val_loss",
        "number watched by schedule=plateau (Keras' "
        "ReduceLROnPlateau); losses must fall, accuracies rise",
        choices=PLATEAU_MONITORS,
    )
    plateau_factor: float = _f(0.1, "lr factor when the monitored number stalls (schedule=plateau)")
    plateau_patience: int = _f(
        10, "epochs without improvement before the lr drops (schedule=plateau)"
    )
    plateau_min_delta: float = _f(
        1e-4, "smallest change that counts as an improvement (schedule=plateau)"
    )
    plateau_cooldown: int = _f(
        0, "epochs after a drop before stalls count again (schedule=plateau)"
    )
    min_lr: float = _f(0.0, "the lr schedule=plateau never drops below")
    # fit
    batch_size: int = _f(32, "samples per optimizer step")
    epochs: int = _f(5, "passes over the training part")
    seed: int = _f(0, "seed of initialization, shuffling and dropout")
    shuffle: bool = _f(True, "reshuffle the training part every epoch")
    label_smoothing: float = _f(0.0, "label smoothing of the cross-entropy targets")
    engine: str = _f(
        "auto", "training engine (auto: fast when it supports the recipe)", choices=ENGINES
    )
    threads: int | None = _f(None, "CPU threads (unset: the engine's measured choice)")
    early_stopping: int = _f(
        0,
        "stop after this many epochs without a better monitor value "
        "(needs validation_split > 0); 0 = off",
    )
    monitor: str = _f("val_loss", "validation metric early stopping watches", choices=MONITORS)
    restore_best: bool = _f(True, "with early stopping, the run keeps the best epoch's weights")
    # augment (training images only, redrawn every epoch; 0 = off)
    augment_shift: float = _f(
        0.0, "random shift of each training image, up to this many pixels along each axis"
    )
    augment_rotate: float = _f(0.0, "random rotation, up to this many degrees either way")
    augment_scale: float = _f(0.0, "random zoom by a factor within 1 +/- this fraction")
    augment_elastic: float = _f(
        0.0, "elastic distortion strength alpha in pixels (Simard 2003: 34 with sigma 4)"
    )
    augment_elastic_sigma: float = _f(4.0, "smoothness of the elastic distortion, in pixels")

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def compose(
        cls,
        file: str | Path | None = None,
        preset: str | None = None,
        *,
        resume: bool = False,
        **changes: Any,
    ) -> Recipe | None:
        """The recipe a run trains with: a base (a TOML ``file`` OR a ``preset``, else the
        notebook's ``Recipe()``), then ``changes`` on top (``lr`` accepted), validated.

        ``resume=True`` continues a run exactly as it started: the recipe comes from the run
        folder, so a file, a preset or a change is refused (one line naming them) and None is
        returned (``fit(None, out=RUN, resume=True)`` reads the run's own recipe).

        >>> Recipe.compose(preset="notebook", lr=0.1, epochs=2).learning_rate
        0.1
        >>> Recipe.compose(resume=True, epochs=3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mnistlab.errors.RecipeError: --resume ... drop: field 'epochs'
        """
        if resume:
            given = (
                ([f"recipe file {file}"] if file is not None else [])
                + ([f"preset {preset}"] if preset is not None else [])
                + [f"field '{_canonical(k, 'recipe')}'" for k in changes]
            )
            if given:
                raise RecipeError(
                    "--resume continues a run exactly as it started, so it takes "
                    "no recipe input; drop: " + ", ".join(given)
                )
            return None
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
        return base.replace(**changes) if changes else base.validate()

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "recipe") -> Recipe:
        """Build and validate from a flat or sectioned dict; unknown keys are errors."""
        flat: dict[str, Any] = {}

        def put(key: str, value: Any, where: str) -> None:
            name = _canonical(key, where)
            if name in flat:
                raise RecipeError(
                    f"{where}: '{name}' is given twice (lr is an alias of learning_rate)"
                )
            flat[name] = value

        for key, value in data.items():
            if key in SECTIONS and isinstance(value, dict):
                for k, v in value.items():
                    put(k, v, f"{source} [{key}]")
            else:
                put(key, value, source)
        recipe = cls(**flat)
        recipe.validate(source)
        return recipe

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
        out: dict[str, Any] = {"name": values.pop("name")}
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
        """A validated copy with some fields changed (``lr`` accepted)."""
        names = [_canonical(k, "recipe") for k in changes]
        if len(set(names)) < len(names):
            raise RecipeError(
                "recipe: 'learning_rate' is given twice (lr is an alias of learning_rate)"
            )
        changes = dict(zip(names, changes.values()))
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def resolved(self) -> Recipe:
        """A copy with the per-optimizer defaults filled in (what the engines train with).

        >>> Recipe().resolved().momentum, Recipe(optimizer="rmsprop").resolved().momentum
        (0.9, 0.0)
        >>> Recipe(optimizer="adamw").resolved().weight_decay
        0.004
        """
        filled = {
            name: defaults.get(self.optimizer, defaults[None])
            for name, defaults in _PER_OPTIMIZER.items()
            if getattr(self, name) is None
        }
        return dataclasses.replace(self, **filled) if filled else self

    # ---- validation ---------------------------------------------------------------------
    def validate(self, source: str = "recipe") -> Recipe:
        """Raise RecipeError naming the first bad field and what it accepts; return self."""

        def bad(name: str, expected: str) -> RecipeError:
            return RecipeError(
                f"{source} field '{name}': expected {expected}, got {getattr(self, name)!r}"
            )

        for name, choices in (
            ("normalize", NORMALIZE),
            ("kind", KINDS),
            ("activation", ACTIVATIONS),
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("engine", ENGINES),
            ("monitor", MONITORS),
            ("plateau_monitor", PLATEAU_MONITORS),
        ):
            if getattr(self, name) not in choices:
                raise bad(name, "one of " + ", ".join(choices))
        for name in ("batch_size", "epochs", "kernel_size", "step_size", "plateau_patience"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "an integer >= 1")
        for name in ("seed", "early_stopping"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "an integer >= 0")
        if self.threads is not None and (
            not _is_int(self.threads) or not 1 <= self.threads <= MAX_THREADS
        ):
            raise bad(
                "threads",
                f"an integer from 1 to {MAX_THREADS}, at most the machine's "
                "CPU count (or unset: the engine's measured choice)",
            )
        for name in ("learning_rate",):
            if not _is_num(getattr(self, name)) or not getattr(self, name) > 0:
                raise bad(name, "a number > 0")
        if not _is_int(self.plateau_cooldown) or self.plateau_cooldown < 0:
            raise bad("plateau_cooldown", "an integer >= 0")
        for name in (
            "decay",
            "l2",
            "weight_decay",
            "warmup_epochs",
            "max_norm",
            "plateau_min_delta",
            "min_lr",
            "augment_shift",
            "augment_elastic",
        ):
            if name in _PER_OPTIMIZER and getattr(self, name) is None:
                continue
            if not _is_num(getattr(self, name)) or not getattr(self, name) >= 0:
                raise bad(name, "a number >= 0")
        if not _is_num(self.augment_rotate) or not 0 <= self.augment_rotate <= 180:
            raise bad("augment_rotate", "a number of degrees in [0, 180]")
        if not _is_num(self.augment_elastic_sigma) or not self.augment_elastic_sigma > 0:
            raise bad("augment_elastic_sigma", "a number > 0")
        for name in ("validation_split", "dropout", "momentum", "label_smoothing", "augment_scale"):
            if name in _PER_OPTIMIZER and getattr(self, name) is None:
                continue
            if not _is_num(getattr(self, name)) or not 0 <= getattr(self, name) < 1:
                raise bad(name, "a number in [0, 1)")
        for name in ("gamma", "plateau_factor"):
            if not _is_num(getattr(self, name)) or not 0 < getattr(self, name) <= 1:
                raise bad(name, "a number in (0, 1]")
        if (
            self.schedule == "plateau"
            and self.plateau_monitor.startswith("val_")
            and self.validation_split == 0
        ):
            raise bad(
                "plateau_monitor",
                "'loss' or 'accuracy' when validation_split is 0 (no validation numbers to watch)",
            )
        for name in ("batch_norm", "nesterov", "shuffle", "restore_best"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "true or false")
        for name in ("hidden", "conv_channels"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(_is_int(v) and v >= 1 for v in value):
                raise bad(name, "a list of integers >= 1, e.g. [128, 128, 128]")
        if self.kind == "cnn" and not self.conv_channels:
            raise bad("conv_channels", "at least one conv block when kind is 'cnn'")
        if self.kind == "cnn" and len(self.conv_channels) > MAX_CONV_BLOCKS:
            raise bad(
                "conv_channels",
                f"at most {MAX_CONV_BLOCKS} conv blocks (each 2x2 max-pool "
                "halves the 28x28 image: 14, 7, 3, 1)",
            )
        if not isinstance(self.name, str) or not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", self.name
        ):
            raise bad("name", "letters, digits, '.', '_' or '-', at most 200 (it names a folder)")
        if self.early_stopping and not self.validation_split:
            raise bad(
                "early_stopping", "0 when validation_split is 0 (it watches the validation part)"
            )
        for name in ("dataset", "data_dir"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise bad(name, "a string (or unset)")
        return self


def fields_help() -> dict[str, tuple[str, tuple[str, ...] | None]]:
    """name -> (help, choices) for every recipe field: the CLI builds its flags from this."""
    return {
        f.name: (f.metadata["help"], f.metadata.get("choices")) for f in dataclasses.fields(Recipe)
    }


def preset_names() -> list[str]:
    """Names of the recipes shipped in ``mnistlab/presets``."""
    root = resources.files("mnistlab.recipe") / "presets"
    if not root.is_dir():
        return []
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> Recipe:
    """A shipped recipe by name (see ``preset_names()``)."""
    names = preset_names()
    if name not in names:
        raise RecipeError(
            f"unknown preset {name!r}: expected one of {', '.join(names) or '(none)'}"
        )
    res = resources.files("mnistlab.recipe") / "presets" / f"{name}.toml"
    data = tomllib.loads(res.read_text(encoding="utf-8"))
    return Recipe.from_dict(data, source=f"preset {name}")


def _canonical(key: str, source: str) -> str:
    key = ALIASES.get(key, key)
    known = [f.name for f in dataclasses.fields(Recipe)]
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RecipeError(
            f"{source}: unknown key '{key}'{hint}; allowed keys: "
            + ", ".join(known + list(ALIASES))
        )
    return key


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    # inf passes every range check below (--lr inf trained to NaN), so require finite numbers
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
