"""Search recipes with Optuna: a declared space, pruning on validation accuracy, any number of
workers sharing one study through a database.

A space file is TOML: a base recipe plus one entry per searched recipe field::

    [base]                                   # recipe fields (flat or sectioned), `preset = NAME`
    epochs = 3
    [space]
    learning_rate = { low = 1e-4, high = 0.1, log = true }     # float field: a float range
    batch_size = { low = 32, high = 256, step = 32 }           # int field: an int range
    dropout = { low = 0.0, high = 0.5 }
    hidden = { choices = [[128], [256, 128], [512, 256, 128]] }  # widths and depth at once
    optimizer = { choices = ["sgd", "adam"] }

Each trial trains one recipe with ``train.fit`` into ``OUT/trials/trial-NNNN`` and reports every
epoch's validation accuracy (the objective, maximized; the test set is never looked at), so
Optuna's MedianPruner stops unpromising trials early.

The study lives in ``--storage`` (default: ``sqlite:///OUT/study.db``; a
``postgresql://user@host:port/db`` URL lets workers on many machines share it). Workers count
the study's finished (complete or pruned) trials, not their own: every worker stops when the
study holds N. A worker claims its next trial under a lock held in the database itself (an
advisory lock on PostgreSQL, a file lock beside the SQLite file), so N is never overshot. While
a trial trains, its worker records a heartbeat; a trial whose worker died (SIGKILL, lost
machine) stops beating, is marked FAIL by the next worker that looks after the grace period, and
Optuna's RetryHeartbeatStaleTrialCallback enqueues it again with the same parameters. Re-running
the same command (same storage and study) continues to N.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import socket
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnistlab import datasets
from mnistlab.errors import MnistlabError, RecipeError
from mnistlab.experiments.compare import _fields, base_recipe, slice_dataset
from mnistlab.experiments.shared_study import (
    GRACE,
    HEARTBEAT,
    claims,
    open_study,
    pin,
    running,
    safe_url,
    storage_url,
    tell,
)
from mnistlab.fsio import atomic_write_json, atomic_write_text, make_dirs, read_toml
from mnistlab.paths import runs_dir
from mnistlab.recipe import SPECS, Recipe, _canonical
from mnistlab.recipe.optimizers import OPTIMIZERS
from mnistlab.rundir.listing import IMPORTANCE
from mnistlab.training.fit import fit

NOT_SEARCHABLE = ("name", "dataset", "data_dir", "validation_split")  # the objective's ground
MAX_TRIALS = 10_000  # each a whole training; trial folders are numbered trial-0000..trial-9999
IMPORTANCE_METHOD = "fANOVA (optuna.importance.FanovaImportanceEvaluator)"
PARAM_KEYS = ("low", "high", "log", "step", "choices")


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched recipe field: a float or int range, or a list of choices."""

    field: str
    kind: str  # "float", "int" or "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if v not in (None, (), False) or k == "kind"
        }


@dataclasses.dataclass
class Space:
    name: str
    base: Recipe
    params: dict[str, Param]

    def describe(self) -> str:
        """A canonical JSON of the space: workers of one study must agree on it."""
        return json.dumps(
            {
                "base": self.base.to_dict(),
                "params": {k: p.describe() for k, p in self.params.items()},
            },
            sort_keys=True,
            default=list,
        )


# ---- reading space files ----------------------------------------------------------------
def load_space(path: str | Path, changes: dict[str, Any] | None = None) -> Space:
    """Parse and validate a space TOML file; any problem is one RecipeError line.
    ``changes``: recipe fields set on its base (e.g. the command line's); searched fields
    still take the values the trials draw."""
    path = Path(path)
    return parse_space(
        read_toml(path, "space file"), source=str(path), default_name=path.stem, changes=changes
    )


def parse_space(
    data: dict[str, Any], *, source: str, default_name: str, changes: dict[str, Any] | None = None
) -> Space:

    unknown = [k for k in data if k not in ("name", "base", "space")]
    if unknown:
        raise RecipeError(f"{source}: unknown key '{unknown[0]}'; allowed keys: name, base, space")
    base = base_recipe(data, source, "trials are scored", changes)
    space = data.get("space")
    if not isinstance(space, dict) or not space:
        raise RecipeError(f"{source}: expected a [space] table with at least one recipe field")

    hints = typing.get_type_hints(Recipe)
    params: dict[str, Param] = {}
    for key, spec in space.items():
        field = _canonical(key, f"{source} [space]")
        where = f"{source} [space] {field}"
        if field in NOT_SEARCHABLE:
            raise RecipeError(
                f"{where}: cannot be searched (every trial must be scored on the "
                "same data); set it in [base]"
            )
        if field in params:
            raise RecipeError(f"{where}: given twice (lr is an alias of learning_rate)")
        params[field] = _param(field, spec, hints[field], where)
        for value in _endpoints(params[field]):  # every reachable value must make a recipe
            Recipe.from_dict({**_fields(base), field: value}, source=where)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise RecipeError(
            f"{source}: name: expected letters, digits, '.', '_' or '-', got {name!r}"
        )
    return Space(name=name, base=base, params=params)


def _param(field: str, spec: Any, hint: Any, where: str) -> Param:
    if not isinstance(spec, dict):
        raise RecipeError(
            f"{where}: expected a table such as {{ low = 0.0, high = 0.5 }} or "
            "{ choices = [...] }"
        )
    unknown = [k for k in spec if k not in PARAM_KEYS]
    if unknown:
        raise RecipeError(f"{where}: unknown key '{unknown[0]}'; allowed: " + ", ".join(PARAM_KEYS))
    base_type = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if "choices" in spec:
        if set(spec) - {"choices"}:
            raise RecipeError(f"{where}: give choices or low/high, not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise RecipeError(f"{where}: choices: expected a non-empty list")
        if len({json.dumps(c, sort_keys=True) for c in choices}) != len(choices):
            raise RecipeError(f"{where}: choices: a value is listed twice")
        return Param(field, "choice", choices=tuple(choices))
    if base_type not in (int, float):
        raise RecipeError(
            f"{where}: a {getattr(base_type, '__name__', base_type)} field is "
            "searched over choices = [...]"
        )
    if "low" not in spec or "high" not in spec:
        raise RecipeError(f"{where}: expected low and high (or choices)")
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    kind = "int" if base_type is int else "float"
    number = (
        (lambda v: isinstance(v, int) and not isinstance(v, bool))
        if kind == "int"
        else (
            lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        )
    )
    for key, v in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if not number(v):
            expected = "an integer" if kind == "int" else "a number"
            raise RecipeError(f"{where}: {key}: expected {expected}, got {v!r}")
    if not isinstance(log, bool):
        raise RecipeError(f"{where}: log: expected true or false, got {log!r}")
    if not low < high:
        raise RecipeError(f"{where}: expected low < high, got low {low!r}, high {high!r}")
    if log and low <= 0:
        raise RecipeError(f"{where}: log = true needs low > 0, got {low!r}")
    if step is not None and (log or not step > 0):
        raise RecipeError(f"{where}: step: expected a number > 0 and no log, got {step!r}")
    if kind == "float":
        low, high = float(low), float(high)
    return Param(field, kind, low=low, high=high, log=log, step=step)


def _endpoints(p: Param) -> tuple[Any, ...]:
    """Values a space can reach that stand for all: both ends of a range, and for integers the
    second value too (an odd-only field such as kernel_size refuses it)."""
    if p.kind == "choice":
        return p.choices
    if p.kind == "int" and p.low + (p.step or 1) < p.high:
        return (p.low, p.low + (p.step or 1), p.high)
    return (p.low, p.high)


def sampler_seed(seed: int, number: int) -> int:
    """A 32-bit seed for trial ``number`` of a search whose base recipe has ``seed``."""
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def suggest(trial, space: Space) -> Recipe:
    """The trial's recipe: the base with each searched field drawn by Optuna."""
    import optuna

    # Each trial draws with a sampler seeded from (the base recipe's seed, the trial number):
    # a one-worker search repeats exactly, and workers sharing a study never draw alike
    # (their trial numbers differ). TPE's choice of what to draw still reads the whole study.
    trial.study.sampler = optuna.samplers.TPESampler(
        seed=sampler_seed(space.base.seed, trial.number)
    )
    values: dict[str, Any] = {}
    for name, p in space.params.items():
        if p.kind == "float":
            values[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
        elif p.kind == "int":
            values[name] = trial.suggest_int(name, p.low, p.high, log=p.log, step=p.step or 1)
        else:  # Optuna's choices must be scalars: lists (widths) travel as their JSON text
            encoded = [json.dumps(c) if isinstance(c, (list, dict)) else c for c in p.choices]
            picked = trial.suggest_categorical(name, encoded)
            values[name] = p.choices[encoded.index(picked)]
    recipe = Recipe.from_dict({**_fields(space.base), **values}, source=f"trial {trial.number}")
    if recipe.threads is None:  # workers share the machine; --jobs-like scale-out, no contention
        recipe = dataclasses.replace(recipe, threads=1)
    return recipe.resolved()  # what the run records


# ---- the worker loop --------------------------------------------------------------------
def search(
    space: Space,
    trials: int,
    *,
    storage: str | None = None,
    study: str | None = None,
    out: str | Path | None = None,
    dataset=None,
    train_images: int | None = None,
    test_images: int | None = None,
    heartbeat: int = HEARTBEAT,
    pruner=None,
    log: Callable[[str], None] | None = None,
    on_run: Callable[[Path, dict[str, str]], None] | None = None,
) -> dict[str, Any]:
    """Run trials until the study holds ``trials`` finished ones; write best_recipe.toml,
    trials.csv and importance.json in ``out``; return {"study", "best", "counts", "out"}.

    ``on_run(run_dir, tags)`` is called once per trial this worker reports complete or pruned,
    tags naming the study, the trial number and its state (e.g. to log it with
    ``mnistlab.experiments.track.log_run(run_dir, uri, tags=tags)``)."""
    import optuna

    if not isinstance(trials, int) or isinstance(trials, bool) or not 1 <= trials <= MAX_TRIALS:
        raise MnistlabError(
            f"--trials: expected an integer from 1 to {MAX_TRIALS:,}, got {trials!r}"
        )
    if not isinstance(heartbeat, int) or heartbeat < 1:
        raise MnistlabError(f"--heartbeat: expected an integer >= 1 (seconds), got {heartbeat!r}")
    log = log or (lambda _text: None)
    if out is None:
        out = runs_dir() / f"search-{space.name}"
    out = make_dirs(out)
    url = storage_url(storage, out)
    study_name = study or space.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb, st = open_study(
        url, study_name, heartbeat, pruner or optuna.pruners.MedianPruner(n_startup_trials=5)
    )
    pin(st, "space", space.describe(), url, study_name, "searches another space")
    if not isinstance(dataset, datasets.Dataset):
        dataset = datasets.load(dataset or space.base.dataset, data_dir=space.base.data_dir)
    ds = slice_dataset(dataset, train_images, test_images)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    log(
        f"search {study_name}: {trials} trials on {ds.name} ({len(ds.x_train):,} train images), "
        f"storage {safe_url(url)}, worker {worker}"
    )
    for trial in claims(st, rdb, url, study_name, heartbeat, target=trials):
        state = _run_trial(st, trial, space, ds, out, worker, rdb, heartbeat, log)
        if state is not None and on_run is not None:
            on_run(
                out / trial.user_attrs["run"],
                {
                    "mnistlab.study": study_name,
                    "mnistlab.trial": str(trial.number),
                    "mnistlab.trial_state": state,
                },
            )
    return _finish(st, out, space, log, ds)


def _run_trial(
    st, trial, space: Space, ds, out: Path, worker: str, rdb, heartbeat: int, log
) -> str | None:
    """Train one trial and report it; return its state name when this worker finished it
    (COMPLETE or PRUNED), else None."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    run_rel = f"trials/trial-{trial.number:04d}"
    pruned: list[int] = []
    lost: list[int] = []
    with running(st, rdb, trial, heartbeat, log):
        if (out / run_rel).is_dir() and any((out / run_rel).iterdir()):  # numbers are per study
            raise MnistlabError(
                f"{out / run_rel}: holds trial {trial.number} of another study than "
                f"{st.study_name!r} (another --study or --storage with this --out); give this "
                "search its own --out, or the --study and --storage of that one to continue it"
            )
        recipe = suggest(trial, space)
        trial.set_user_attr("recipe", recipe.to_dict())
        trial.set_user_attr("run", run_rel)
        trial.set_user_attr("worker", worker)

        def on_epoch(row: dict[str, Any]) -> bool:
            if row["val_accuracy"] is None:
                return False
            try:
                trial.report(row["val_accuracy"], step=row["epoch"])
            except UpdateFinishedTrialError:  # declared dead meanwhile: its retry counts
                lost.append(row["epoch"])
                return True
            # the last epoch is not pruned: the trial is complete by then
            if row["epoch"] < recipe.epochs and trial.should_prune():
                pruned.append(row["epoch"])
                return True
            return False

        run = fit(recipe, ds, out=out / run_rel, quiet=True, on_epoch=on_epoch)
    value = run.metrics.get("train", {}).get("val_accuracy")
    if lost:
        log(
            f"trial {trial.number}: failed by another worker (no heartbeat for "
            f"{GRACE * heartbeat} s); its retry counts instead"
        )
    elif pruned:
        if tell(st, trial, log, state=TrialState.PRUNED):
            log(f"trial {trial.number}: pruned after epoch {pruned[0]} (val_accuracy {value})")
            return TrialState.PRUNED.name
    elif value is None or not math.isfinite(value):
        tell(st, trial, log, state=TrialState.FAIL)
        log(f"trial {trial.number}: no validation accuracy; failed")
    elif tell(st, trial, log, value):
        log(f"trial {trial.number}: val_accuracy {value:.4f}  {trial.params}")
        return TrialState.COMPLETE.name
    return None


# ---- results ----------------------------------------------------------------------------
def best_recipe(trial: Recipe, space: Space, study: str, dataset: str) -> Recipe:
    """The recipe of the best trial as best_recipe.toml states it: named ``<study>-best``, with
    the dataset it was found on, the searched numbers rounded to 3 significant digits (what
    the search can tell apart), and no thread count or per-optimizer value the base left unset
    (the trials pin one thread each, and record the values they resolved).

    >>> space = Space("s", Recipe(), {"learning_rate": Param("learning_rate", "float", 1e-4, 1.0)})
    >>> r = best_recipe(Recipe(lr=0.0031622777, threads=1).resolved(), space, "s", "mnist")
    >>> r.name, r.dataset, r.learning_rate, r.threads, r.momentum
    ('s-best', 'mnist', 0.00316, None, None)
    """

    changes: dict[str, Any] = {
        "name": re.sub(r"[^A-Za-z0-9._-]", "_", f"{study}-best")[:200],
        "dataset": trial.dataset or dataset,
        "threads": space.base.threads,
    }
    row = OPTIMIZERS[trial.optimizer]
    for name, spec in SPECS.items():
        if spec.per_optimizer and getattr(space.base, name) is None:
            if getattr(trial, name) == getattr(row, name):
                changes[name] = None
    recipe = trial.replace(**changes)
    for name, p in space.params.items():
        value = getattr(recipe, name)
        if p.kind == "float" and value:
            try:
                recipe = recipe.replace(**{name: float(f"{value:.3g}")})
            except RecipeError:  # rounded past the field's range (0.9996 of [0, 1)): as drawn
                pass
    return recipe


def _finish(st, out: Path, space: Space, log, ds) -> dict[str, Any]:
    from optuna.trial import TrialState

    all_trials = st.get_trials(deepcopy=False)
    write_trials_csv(all_trials, space, out / "trials.csv")
    write_importance(st, space, out / IMPORTANCE)
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE]
    counts = {s.name: sum(t.state == s for t in all_trials) for s in TrialState}
    best = None
    if complete:
        best_trial = max(complete, key=lambda t: (t.value, -t.number))
        trial_recipe = Recipe.from_dict(
            best_trial.user_attrs["recipe"], source=f"trial {best_trial.number}"
        )
        recipe = best_recipe(trial_recipe, space, st.study_name, ds.name)
        header = (
            f"# Best of {counts['COMPLETE']} complete trials of study {st.study_name!r} "
            f"(mnistlab search): validation accuracy {best_trial.value:.4f}, trial "
            f"{best_trial.number} ({best_trial.user_attrs.get('run')}).\n"
            f"# Found on {ds.name} ({len(ds.x_train):,} training images); the searched numbers "
            "are rounded to 3 significant digits.\n"
            "# Chosen on the validation split only; train it with "
            "`mnistlab train --recipe best_recipe.toml`.\n\n"
        )
        atomic_write_text(out / "best_recipe.toml", header + recipe.to_toml())
        best = {
            "number": best_trial.number,
            "value": best_trial.value,
            "params": best_trial.params,
            "run": best_trial.user_attrs.get("run"),
        }
        log(
            f"best: trial {best_trial.number}, val_accuracy {best_trial.value:.4f} -> "
            f"{out / 'best_recipe.toml'}"
        )
    return {"study": st.study_name, "best": best, "counts": counts, "out": str(out)}


def write_importance(st, space: Space, path: Path) -> Path:
    """importance.json: each searched field's share of the variance of the complete trials'
    validation accuracy (Optuna's fANOVA, seeded with the base recipe's seed so the same study
    gives the same shares), or in ``problem`` why there are none (fewer than 2 complete trials).
    The search page reads it; nothing on the page needs the study database."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    complete = st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    doc: dict[str, Any] = {
        "study": st.study_name,
        "method": IMPORTANCE_METHOD,
        "seed": space.base.seed,
        "complete_trials": len(complete),
        "importances": None,
        "problem": None,
    }
    if len(complete) < 2:
        doc["problem"] = f"{len(complete)} complete trial(s); the importance needs at least 2"
    elif len({t.value for t in complete}) == 1:
        doc["problem"] = "every complete trial has the same validation accuracy"
    else:
        evaluator = FanovaImportanceEvaluator(seed=space.base.seed)
        try:
            shares = get_param_importances(st, evaluator=evaluator, params=list(space.params))
        except (ValueError, RuntimeError) as exc:
            doc["problem"] = f"Optuna could not compute it: {exc}"
        else:
            doc["importances"] = {k: float(v) for k, v in shares.items()}
    atomic_write_json(path, doc)
    return path


def write_trials_csv(all_trials, space: Space, path: Path) -> Path:
    fields = [
        "number",
        "state",
        "val_accuracy",
        *space.params,
        "epochs",
        "seconds",
        "run",
        "worker",
        "retry_of",
    ]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for t in all_trials:
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else ""
        )
        w.writerow(
            {
                "number": t.number,
                "state": t.state.name,
                "val_accuracy": "" if t.value is None else t.value,
                **{k: t.params.get(k, "") for k in space.params},
                "epochs": len(t.intermediate_values),
                "seconds": seconds,
                "run": t.user_attrs.get("run", ""),
                "worker": t.user_attrs.get("worker", ""),
                "retry_of": t.system_attrs.get("failed_trial", ""),
            }
        )
    atomic_write_text(path, buf.getvalue())
    return path
