"""Compare recipes the honest way: variants x seeds, ranked on validation, tested on paired images.

A variants file is TOML: an optional base recipe plus named variants, each a set of recipe-field
changes on top of the base::

    baseline = "notebook"          # optional: the variant the others are tested against (first)
    seeds = 3                      # optional: default of --seeds
    [base]                         # optional: recipe fields (flat or sectioned); `preset = NAME`
    epochs = 5                     # starts from a shipped recipe
    [variants.notebook]            # an empty table is the base itself
    [variants.adam]
    optimizer = "adam"
    lr = 0.001

With ``storage`` (``--storage URL``) the runs are the queued trials of a shared study
(``mnistlab.experiments.shared_study``): start the same command on several machines and they
share the work.

Every (variant, seed) trains into its own run folder ``OUT/runs/<variant>-seed<seed>`` (seeds are
``base.seed + 0 .. N-1``), so an interrupted compare run again with the same ``--out`` skips the
finished runs and resumes a half-finished one from its checkpoint. Runs train single-threaded
unless the recipe sets ``threads``, so ``jobs`` changes the wall time, never the numbers.

Statistics: variants are ranked by the mean of the chosen metric (``metric``: accuracy by
default, or ``ece``, see ``mnistlab.evaluation.paired``) on the validation part (the selection
split); the test set is reported and never used to choose. Each variant is compared with the
baseline on the same test images by an exact McNemar test (``scipy.stats.binomtest`` on the
discordant pairs), per seed pair (variant seed s against baseline seed s) and combined over
seeds by pooling the discordant counts (the exact conditional test of the stratified
matched-pairs design: one seed pair alone has little power for the 0.1-0.5 point differences
between recipes, and a paired t-test over 3 seeds has 2 degrees of freedom). Holm's step-down
correction runs over the variants; a difference is called real when its Holm-adjusted p-value
is below ``ALPHA``. Pooling treats each (image, seed) disagreement as independent evidence, so
it speaks of these seeds on this test set, not of every possible seed; the per-seed p-values
are kept in ``leaderboard.json`` to show how consistent the direction is. Other metrics use
their own paired test the same way (ECE: a paired permutation test, stratified by seed pair).
The statistics and the files live in ``mnistlab.experiments.leaderboard``.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import datasets, rundir
from mnistlab.datasets.preprocess import split_validation
from mnistlab.engines import make_engine
from mnistlab.engines.init import init_weights
from mnistlab.errors import MnistlabError, RecipeError
from mnistlab.evaluation.paired import metric as find_metric
from mnistlab.experiments import shared_study
from mnistlab.experiments.leaderboard import leaderboard, write_leaderboard
from mnistlab.fsio import make_dirs, read_toml, remove_temps_on_signals
from mnistlab.paths import runs_dir
from mnistlab.recipe import SECTIONS, Recipe, flatten
from mnistlab.recipe import load_preset as load_recipe_preset
from mnistlab.training.fit import fit
from mnistlab.training.fit import resume as resume_run

SHARED = ("dataset", "data_dir", "validation_split", "seed", "name")  # the same for every variant
# Each run is a whole training; a plan past these is a typo (or an exponent), refused before
# anything is built.
MAX_SEEDS = 1_000
MAX_RUNS = 10_000  # variants x seeds
MAX_JOBS = 256  # worker processes of one machine
_NAME_OK = "letters, digits, '.', '_' or '-' (it names a folder)"
_TOP_KEYS = ("name", "baseline", "seeds", "base", "variants")


@dataclass
class Variants:
    """A parsed variants file: the recipes to compare, in file order."""

    name: str
    baseline: str
    recipes: dict[str, Recipe]
    seeds: int | None = None


# ---- reading variants files -------------------------------------------------------------
def load_variants(path: str | Path, changes: dict[str, Any] | None = None) -> Variants:
    """Parse and validate a variants TOML file; any problem is one RecipeError line.
    ``changes``: recipe fields set on its base (e.g. the command line's), under every variant's
    own changes."""
    path = Path(path)
    data = read_toml(path, "variants file")
    return parse_variants(data, source=str(path), default_name=path.stem, changes=changes)


def preset_names() -> list[str]:
    """Names of the variants files shipped in ``mnistlab/presets/compare``."""
    root = resources.files("mnistlab.experiments") / "presets"
    if not root.is_dir():
        return []
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str, changes: dict[str, Any] | None = None) -> Variants:
    """A shipped variants file by name (``preset_names()``); ``changes`` as ``load_variants``."""
    return parse_variants(
        tomllib.loads(preset_text(name)),
        source=f"compare preset {name}",
        default_name=name,
        changes=changes,
    )


def preset_text(name: str) -> str:
    """A shipped variants file's TOML, comments and all: a starting point to copy and edit."""
    names = preset_names()
    if name not in names:
        raise RecipeError(
            f"unknown compare preset {name!r}: expected one of {', '.join(names) or '(none)'}"
        )
    path = resources.files("mnistlab.experiments") / "presets" / f"{name}.toml"
    return path.read_text(encoding="utf-8")


def _flat(table: dict[str, Any], where: str) -> dict[str, Any]:
    """Recipe changes as a flat {field: value}, sections unfolded and aliases resolved."""

    return flatten(table, where)


def base_recipe(
    data: dict[str, Any], source: str, scored: str, changes: dict[str, Any] | None = None
) -> Recipe:
    """The ``[base]`` table of a variants or space file (an optional ``preset`` plus recipe
    fields, then ``changes`` on top), validated; it must hold out a validation split, since
    ``scored`` on it."""
    table = data.get("base", {})
    if not isinstance(table, dict):
        raise RecipeError(f"{source} [base]: expected a table of recipe fields")
    table = dict(table)
    preset = table.pop("preset", None)
    if preset is not None and not isinstance(preset, str):
        raise RecipeError(f"{source} [base] preset: expected a preset name")
    base = load_recipe_preset(preset) if preset else Recipe()
    where = f"{source} [base]"
    base = Recipe.from_dict({**_fields(base), **_flat(table, where)}, source=where)
    if changes:
        base = Recipe.from_dict({**_fields(base), **changes}, source="the command line")
    if not base.validation_split > 0:
        raise RecipeError(
            f"{source} [base] field 'validation_split': expected a number in "
            f"(0, 1): {scored} on the validation split"
        )
    return base


def parse_variants(
    data: dict[str, Any],
    *,
    source: str,
    default_name: str,
    changes: dict[str, Any] | None = None,
) -> Variants:
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise RecipeError(
            f"{source}: unknown key '{unknown[0]}'; allowed keys: " + ", ".join(_TOP_KEYS)
        )
    base = base_recipe(data, source, "variants are ranked", changes)
    variants = data.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise RecipeError(f"{source}: expected at least one [variants.NAME] table")
    recipes: dict[str, Recipe] = {}
    import re

    for name, changes in variants.items():
        where = f"{source} variant '{name}'"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise RecipeError(f"{where}: expected a name of {_NAME_OK}")
        if not isinstance(changes, dict):
            raise RecipeError(f"{where}: expected a table of recipe-field changes")
        dotted = [k for k, v in changes.items() if isinstance(v, dict) and k not in SECTIONS]
        if dotted:  # TOML reads [variants.lr-0.1] as variant 'lr-0' holding a table '1'
            raise RecipeError(
                f"{where}: holds a table '{dotted[0]}'; a name with a dot needs quotes: "
                f'[variants."{name}.{dotted[0]}"]'
            )
        flat = _flat(changes, where)
        for key in SHARED:
            if key in flat:
                why = (
                    "seeds come from --seeds"
                    if key == "seed"
                    else "the variant's name names its runs"
                    if key == "name"
                    else "all variants must see the same images; set it in [base]"
                )
                raise RecipeError(f"{where} field '{key}': cannot differ between variants ({why})")
        recipes[name] = Recipe.from_dict({**_fields(base), **flat, "name": name}, source=where)
    baseline = data.get("baseline", next(iter(recipes)))
    if baseline not in recipes:
        raise RecipeError(
            f"{source}: baseline {baseline!r} is not one of the variants ({', '.join(recipes)})"
        )
    seeds = data.get("seeds")
    if seeds is not None:
        try:
            _count("seeds", seeds, MAX_SEEDS)
        except MnistlabError as exc:
            raise RecipeError(f"{source}: {exc}") from None
    name = data.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise RecipeError(f"{source}: name: expected {_NAME_OK}, got {name!r}")
    return Variants(name=name, baseline=baseline, recipes=recipes, seeds=seeds)


def _fields(recipe: Recipe) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)}


# ---- running ----------------------------------------------------------------------------
_WORKER_DATASET = None
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _init_worker(dataset, parent: int, recipes=()) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = dataset
    remove_temps_on_signals()
    die_with_parent(parent)
    warm_up(recipes, dataset)


def die_with_parent(parent: int, *, poll: float = 1.0) -> None:
    """End this process (SIGTERM) as soon as ``parent`` does, however it ended: a compare
    killed with SIGTERM or SIGKILL must not leave workers training the rest of its queue and
    holding its run folders. On Linux the kernel does it (``prctl(PR_SET_PDEATHSIG)``); elsewhere
    a daemon thread watches the parent pid every ``poll`` seconds."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
            if os.getppid() != parent:  # it died before the prctl: no signal will come
                os.kill(os.getpid(), signal.SIGTERM)
            return
    threading.Thread(target=_watch_parent, args=(parent, poll), daemon=True).start()


def _watch_parent(parent: int, poll: float) -> None:
    while os.getppid() == parent:
        time.sleep(poll)
    os.kill(os.getpid(), signal.SIGTERM)


def warm_up(recipes, ds) -> None:
    """Load what each engine of ``recipes`` compiles or imports on its first step before any
    run's clock starts: one throwaway step and one evaluation on blank images per distinct
    recipe, in memory, nothing written. A worker's first run would otherwise count that load
    (about a second for the compiled fast engine) in its first epoch, and the leaderboard's
    training seconds would depend on which run a worker happened to train first."""
    import numpy as np

    seen = set()
    for recipe in recipes:
        one = recipe.replace(seed=0, name="warm-up", epochs=1)
        key = one.to_toml()
        if key in seen:
            continue
        seen.add(key)
        n_in = int(np.prod(ds.x_train.shape[1:]))
        x = np.zeros((one.batch_size, n_in), np.float32)
        y = np.zeros(one.batch_size, np.int64)
        engine = make_engine(one, init_weights(one, n_classes=len(ds.class_names)))
        engine.train_epoch(x, y, np.arange(len(y)), np.full(1, one.learning_rate), 0)
        engine.evaluate(x, y)


def _train_one(run_dir: str, recipe: Recipe, resume: bool, dataset=None) -> str:
    """Train (or resume) one (variant, seed) run; module-level so spawned workers can run it."""

    ds = dataset if dataset is not None else _WORKER_DATASET
    if resume:
        resume_run(run_dir, dataset=ds, quiet=True)
    else:
        fit(recipe, ds, out=run_dir, quiet=True)
    return run_dir


def slice_dataset(ds, train_images: int | None = None, test_images: int | None = None):
    """The first ``train_images`` training and ``test_images`` test images (quick trials)."""
    for name, n in (("train_images", train_images), ("test_images", test_images)):
        if n is not None and (not isinstance(n, int) or n < 1):
            raise MnistlabError(f"{name}: expected an integer >= 1, got {n!r}")
    changes = {}
    if train_images is not None:
        changes.update(x_train=ds.x_train[:train_images], y_train=ds.y_train[:train_images])
    if test_images is not None:
        changes.update(x_test=ds.x_test[:test_images], y_test=ds.y_test[:test_images])
    return replace(ds, **changes) if changes else ds


def planned_recipe(recipe: Recipe, seed: int) -> Recipe:
    """The exact recipe a (variant, seed) run records: resolved, one thread unless set."""
    r = recipe.replace(seed=seed)
    if r.threads is None:
        r = r.replace(threads=1)
    if r.data_dir is not None:
        r = r.replace(data_dir=str(Path(r.data_dir).resolve()))
    return r.resolved()


def _state(run_dir: Path, recipe: Recipe) -> str:
    """'done', 'resume' or 'new' for a planned run folder; a foreign recipe there is an error."""

    if not (run_dir / rundir.RECIPE).is_file():
        if run_dir.exists():  # killed between mkdir and the first write: nothing to keep
            shutil.rmtree(run_dir)
        return "new"
    if Recipe.from_toml(run_dir / rundir.RECIPE) != recipe:
        raise MnistlabError(
            f"{run_dir}: holds a run of another recipe than this compare "
            "declares now; use another --out"
        )
    done = (run_dir / rundir.MODEL).is_file() and (run_dir / rundir.METRICS).is_file()
    return "done" if done else "resume"


def compare(
    variants: Variants,
    *,
    seeds: int | None = None,
    jobs: int = 1,
    out: str | Path | None = None,
    dataset=None,
    train_images: int | None = None,
    test_images: int | None = None,
    storage: str | None = None,
    study: str | None = None,
    heartbeat: int = 10,
    log: Callable[[str], None] | None = None,
    on_run: Callable[[Path, dict[str, str]], None] | None = None,
    metric: str = "accuracy",
) -> dict[str, Any]:
    """Train every variant x seed into ``out`` (resuming what is there) and write the
    leaderboard; returns the leaderboard.json object.

    ``dataset``: a Dataset or a name (default: the base recipe's, else full MNIST with the
    sample as fallback); ``train_images`` / ``test_images`` keep only the first N images.
    ``storage`` (a study URL, as for search): the runs become the queued trials of a shared
    Optuna study, so any number of processes on any number of machines work through one
    compare; each writes the leaderboard once all runs are finished.
    ``on_run(run_dir, tags)`` is called once per run this process finishes (with --storage:
    once per run it reports to the study), tags naming the compare, variant and seed; e.g.
    ``lambda d, tags: mnistlab.experiments.track.log_run(d, uri, tags=tags)``.
    ``metric``: what ranks (on validation) and is tested (paired, on the test images); a name
    of ``mnistlab.evaluation.paired.METRICS``.
    """

    find_metric(metric)  # an unknown name is one line, before anything trains
    n_seeds = _count("--seeds", seeds if seeds is not None else (variants.seeds or 3), MAX_SEEDS)
    _count("--jobs", jobs, MAX_JOBS)
    if len(variants.recipes) * n_seeds > MAX_RUNS:
        raise MnistlabError(
            f"--seeds {n_seeds}: {len(variants.recipes)} variants x {n_seeds} seeds is "
            f"{len(variants.recipes) * n_seeds:,} runs; a compare trains at most {MAX_RUNS:,}"
        )
    if storage is not None and jobs != 1:
        raise MnistlabError(
            "--jobs: with --storage every `mnistlab compare` process is one "
            "worker; start more of them (on any machine) instead"
        )
    log = log or (lambda _text: None)
    out = make_dirs(out if out is not None else runs_dir() / f"compare-{variants.name}")
    ds = _dataset(variants, dataset, train_images, test_images, log)
    seed_list = [variants.recipes[variants.baseline].seed + i for i in range(n_seeds)]
    plan = [
        (name, s, out / "runs" / f"{name}-seed{s}", planned_recipe(r, s))
        for name, r in variants.recipes.items()
        for s in seed_list
    ]
    log(
        f"compare {variants.name}: {len(variants.recipes)} variants x {n_seeds} seeds on "
        f"{ds.name} ({len(ds.x_train):,} train / {len(ds.x_test):,} test images) -> {out}"
    )
    finished = _announcer(variants.name, on_run)
    if storage is not None:
        where = (storage, study, heartbeat)
        records = _shared(variants, plan, ds, out, where, log, finished, metric)
    else:
        records = _local(plan, ds, jobs, log, finished, metric)
    board = leaderboard(records, variants, seed_list, ds, metric)
    write_leaderboard(out, board)
    board["folder"] = str(out)  # after writing: the JSON holds paths relative to it only
    return board


def _count(flag: str, n: Any, most: int) -> int:
    """``n`` if it is an integer in [1, most], else one MnistlabError line naming ``flag``.

    >>> _count("--seeds", 10**11, MAX_SEEDS)
    Traceback (most recent call last):
    mnistlab.errors.MnistlabError: --seeds: expected an integer from 1 to 1,000, got 100000000000
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= most:
        raise MnistlabError(f"{flag}: expected an integer from 1 to {most:,}, got {n!r}")
    return n


def _dataset(variants: Variants, dataset, train_images, test_images, log):
    """The data every run of the compare trains on: ``dataset`` (a Dataset or a name), else the
    base recipe's, cut to the first ``train_images`` / ``test_images``."""

    base = variants.recipes[variants.baseline]
    if not isinstance(dataset, datasets.Dataset):
        dataset = datasets.load(dataset or base.dataset, data_dir=base.data_dir)
    ds = slice_dataset(dataset, train_images, test_images)
    if ds.note:
        log(f"note: {ds.note}")
    return ds


def _announcer(compare_name: str, on_run):
    """``finished(variant, seed, run_dir)``: hands each finished run to ``on_run`` with tags."""

    def finished(vname: str, s: int, run_dir: Path) -> None:
        if on_run is not None:
            tags = {"mnistlab.compare": compare_name, "mnistlab.variant": vname}
            on_run(Path(run_dir), {**tags, "mnistlab.seed": str(s)})

    return finished


def _local(
    plan, ds, jobs: int, log, finished, metric: str = "accuracy"
) -> dict[tuple[str, int], dict[str, Any]]:
    """Train what the plan lacks in this process or a pool of ``jobs`` processes."""
    todo = []
    for name, s, run_dir, recipe in plan:
        state = _state(run_dir, recipe)
        if state != "done":
            todo.append((name, s, run_dir, recipe, state == "resume"))
    log(
        f"{len(plan) - len(todo)} runs already done, {len(todo)} to train with {jobs} "
        f"job{'s' if jobs > 1 else ''}"
    )
    done = len(plan) - len(todo)
    if jobs == 1 or len(todo) <= 1:
        warm_up([recipe for _, _, _, recipe, _ in todo], ds)
        for name, s, run_dir, recipe, resume in todo:
            _train_one(str(run_dir), recipe, resume, ds)
            done += 1
            log(f"[{done}/{len(plan)}] {name} seed {s}{' (resumed)' if resume else ''}")
            finished(name, s, run_dir)
    else:
        ctx = multiprocessing.get_context("spawn")  # fork would copy numba/BLAS thread state
        pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(ds, os.getpid(), [recipe for _, _, _, recipe, _ in todo]),
        )
        try:
            futures = {
                pool.submit(_train_one, str(run_dir), recipe, resume): (name, s, resume)
                for name, s, run_dir, recipe, resume in todo
            }
            for future in as_completed(futures):
                run_dir = Path(future.result())
                name, s, resume = futures[future]
                done += 1
                log(f"[{done}/{len(plan)}] {name} seed {s}{' (resumed)' if resume else ''}")
                finished(name, s, run_dir)
        finally:
            # On Ctrl-C or a failed run, queued runs must not start; finished ones are kept.
            pool.shutdown(wait=True, cancel_futures=True)
    return {(name, s): run_record(run_dir, ds, metric) for name, s, run_dir, _ in plan}


def _shared(
    variants: Variants, plan, ds, out: Path, where, log, finished, metric: str = "accuracy"
) -> dict[tuple[str, int], dict[str, Any]]:
    """Run the (variant, seed) runs as the queued trials of an Optuna study that any number of
    `mnistlab compare` processes share (see experiments.shared_study); returns every
    run's record. ``where``: (storage URL, study name or None, heartbeat seconds)."""
    import json
    import socket

    storage, study, heartbeat = where
    url = shared_study.storage_url(storage, out)
    name = study or f"compare-{variants.name}"
    rdb, st = shared_study.open_study(url, name, heartbeat)
    pinned = {
        "baseline": variants.baseline,
        "recipes": {n: r.to_dict() for n, r in variants.recipes.items()},
        "dataset": [ds.name, len(ds.x_train), len(ds.x_test)],
    }
    if metric != "accuracy":  # every worker keeps the same per-image records
        pinned["metric"] = metric
    described = json.dumps(pinned, sort_keys=True)
    shared_study.pin(st, "compare", described, url, name, "compares other variants or data")
    _enqueue_missing(st, rdb, url, name, plan)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    warm_up([planned_recipe(r, 0) for r in variants.recipes.values()], ds)
    for trial in shared_study.claims(st, rdb, url, name, heartbeat, target=None):
        vname, s = trial.user_attrs["variant"], trial.user_attrs["seed"]
        with shared_study.running(st, rdb, trial, heartbeat, log):
            recipe = planned_recipe(variants.recipes[vname], s)
            run_dir = out / "runs" / f"{vname}-seed{s}"
            state = _state(run_dir, recipe)
            if state != "done":
                _train_one(str(run_dir), recipe, state == "resume", ds)
            rec = run_record(run_dir, ds, metric)
            trial.set_user_attr("result", {**_pack(rec), "worker": worker})
        if shared_study.tell(st, trial, log, rec["val_accuracy"]):
            log(f"{vname} seed {s}: val_accuracy {rec['val_accuracy']:.4f} ({worker})")
            finished(vname, s, run_dir)
    return _finished_records(st, plan, ds, name)


def _enqueue_missing(st, rdb, url: str, name: str, plan) -> None:
    """Queue each (variant, seed) the study does not hold yet, once, whoever asks first."""
    from optuna.trial import TrialState

    with shared_study.claim_lock(url, name, rdb):
        have = {
            (t.user_attrs.get("variant"), t.user_attrs.get("seed"))
            for t in st.get_trials(deepcopy=False)
            if t.state != TrialState.FAIL
        }
        for vname, s, _, _ in plan:
            if (vname, s) not in have:
                st.enqueue_trial({}, user_attrs={"variant": vname, "seed": s})


def _pack(record: dict[str, Any]) -> dict[str, Any]:
    """A run record as a study attribute: JSON, the per-image hits as base64 bits, any other
    per-image values (a metric's) as base64 float32."""
    import base64

    packed = base64.b64encode(np.packbits(record["correct"]).tobytes()).decode()
    out = {k: v for k, v in record.items() if k not in ("correct", "per_image")}
    out["correct"] = packed
    if "per_image" in record:
        out["per_image"] = {
            k: base64.b64encode(np.asarray(v, np.float32).tobytes()).decode()
            for k, v in record["per_image"].items()
        }
    return out


def _unpack(result: dict[str, Any], n: int) -> dict[str, Any]:
    """``_pack``'s record back, for ``n`` test images."""
    import base64

    bits = np.frombuffer(base64.b64decode(result["correct"]), dtype=np.uint8)
    out = {**result, "correct": np.unpackbits(bits, count=n).astype(bool)}
    if "per_image" in result:
        out["per_image"] = {
            k: np.frombuffer(base64.b64decode(v), dtype=np.float32)
            for k, v in result["per_image"].items()
        }
        if "correct" in out["per_image"]:
            out["per_image"]["correct"] = out["per_image"]["correct"].astype(bool)
    return out


def _finished_records(st, plan, ds, name: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Every completed trial's record; one line naming the runs no worker finished."""
    from optuna.trial import TrialState

    records = {}
    for t in st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        result = t.user_attrs.get("result")
        if result is not None:
            records[t.user_attrs["variant"], t.user_attrs["seed"]] = _unpack(result, len(ds.y_test))
    missing = [f"{n} seed {s}" for n, s, _, _ in plan if (n, s) not in records]
    if missing:
        raise MnistlabError(
            f"study {name!r}: no finished run for {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''} (failed, not retried); run "
            "the command again to queue them again"
        )
    return records


def run_record(run_dir: Path, ds, metric: str = "accuracy") -> dict[str, Any]:
    """What the leaderboard needs of one finished run: validation and test accuracy, training
    seconds, and which test images it classified right (for the paired test); for another
    ``metric``, its value on the validation part and the test set, and the test set's
    per-image record (``per_image``) its paired test takes."""

    run = rundir.load_run(run_dir)
    stored = Path(run_dir) / rundir.PREDICTIONS  # what the run's own end computed on ds.x_test
    proba = rundir.read_predictions(stored)["proba"] if stored.is_file() else None
    if proba is None or len(proba) != len(ds.y_test):
        proba = run.predict_proba(ds.x_test)
    hit = proba.argmax(axis=1) == np.asarray(ds.y_test)
    val = run.metrics.get("train", {}).get("val_accuracy")
    record = {
        "val_accuracy": float("nan") if val is None else float(val),
        "test_accuracy": float(hit.mean()),
        "seconds": float(sum(h["seconds"] or 0.0 for h in run.history)),
        "correct": hit,
    }
    if metric != "accuracy":
        m = find_metric(metric)
        _, _, x_val, y_val = split_validation(ds.x_train, ds.y_train, run.recipe.validation_split)
        record[f"val_{m.name}"] = m.value(m.measure(run, x_val, y_val))
        record["per_image"] = m.measure(run, ds.x_test, ds.y_test)
        record[f"test_{m.name}"] = m.value(record["per_image"])
    return record
