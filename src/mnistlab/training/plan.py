"""Where a training starts, decided once: a ``Plan``, and the arrays it trains on, ``Data``.

Three ways in: ``plan_fresh`` (a new run folder), and ``plan_resume`` of an existing one: either
a restart (killed before anything but recipe.toml was written: nothing to continue) or a true
resume from the last checkpoint with the recipe, dataset and engine the run started with. A
resume of a finished run plans nothing ("complete"), unless it asks for more epochs: ``extend``
then makes the run a longer one, continued from its last checkpoint exactly as a run of that
many epochs would have gone (where the schedule allows it). After the plan, the training loop
reads the same for all of them: start epoch, history so far, engine state (or none).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import datasets, rundir
from mnistlab.datasets import Dataset
from mnistlab.datasets.preprocess import normalization_stats, preprocess, split_validation
from mnistlab.errors import RunError
from mnistlab.fsio import atomic_write_json, normalize
from mnistlab.recipe import Recipe
from mnistlab.training import budget as memory
from mnistlab.training.stopping import EarlyStopping

# Schedules whose rate at an epoch depends on the run's total epochs: the epochs a shorter run
# trained had other rates than a longer run's, so it cannot be continued into one.
NEEDS_THE_TOTAL = {
    "cosine": "decays to 0 over the run's total epochs",
    "onecycle": "rises and falls over the run's total epochs",
}


@dataclasses.dataclass
class Plan:
    """One training, decided: what to train, on what, into which folder, from which epoch."""

    mode: str  # "fresh", "restart", "resume" or "complete" (nothing left to train)
    recipe: Recipe
    engine: str  # the recipe's; on resume the engine the run started with
    dataset: Dataset | None  # None only when complete
    data_dir: Path | str | None  # the folder fit was given, as environment.json records it
    run_dir: Path | None  # fresh: the --out asked for (None: runs/<time>-<name>)
    state: dict[str, np.ndarray] | None = None  # the checkpoint's engine state
    start: int = 0  # epochs finished
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def plan_fresh(recipe: Recipe | None, dataset, out, data_dir) -> Plan:
    """A new run of ``recipe`` (default: the notebook's), checked before any data is loaded."""
    # Resolved: the run's recipe.toml records the momentum / weight decay actually used.
    recipe = (recipe or Recipe()).validate().resolved()
    if recipe.data_dir is not None:  # a relative one would break evaluate/resume elsewhere
        recipe = recipe.replace(data_dir=str(Path(recipe.data_dir).resolve()))
    if data_dir is not None:
        data_dir = Path(data_dir).resolve()
    if out is not None:
        out = normalize(out)  # x/../y: no stray x
        rundir.check_free(out)  # fail before the data is loaded, not after
    ds = _load(dataset, recipe, data_dir)
    return Plan("fresh", recipe, recipe.engine, ds, data_dir, out)


def plan_resume(out, recipe: Recipe | None, dataset, data_dir, say, hold, epochs=None) -> Plan:
    """Continue the run folder ``out`` exactly as it started (``recipe``, when given, must be
    its own); ``epochs`` more than it has trains it on (``extend``). ``hold(run_dir)`` takes the
    folder's lock before its checkpoint is read: a second trainer stops there. ``say`` prints
    one line."""
    if out is None:
        raise RunError("resume needs the run folder to continue")
    run_dir = normalize(out)
    if not (run_dir / rundir.RECIPE).is_file():
        raise RunError(
            f"{run_dir / rundir.RECIPE}: file is missing; {run_dir} is not a run "
            "folder that can be resumed"
        )
    saved = Recipe.from_toml(run_dir / rundir.RECIPE)
    if recipe is not None and recipe != saved:
        raise RunError(
            f"{run_dir}: the recipe given differs from the run's recipe.toml; "
            "resume continues a run exactly as it started"
        )
    if epochs is not None and epochs != saved.epochs:
        hold(run_dir)
        saved = extend(run_dir, saved, epochs, say)
    if not any((run_dir / f).exists() for f in (rundir.ENVIRONMENT, rundir.CHECKPOINT)):
        hold(run_dir)  # killed before anything but recipe.toml was written: start over
        say(f"{run_dir}: nothing was trained yet; starting it from epoch 0")
        return Plan(
            "restart", saved, saved.engine, _load(dataset, saved, data_dir), data_dir, run_dir
        )
    env_file = run_dir / rundir.ENVIRONMENT
    env = rundir.read_environment(env_file)
    record = rundir.DatasetRecord.from_environment(env, env_file)
    if (run_dir / rundir.MODEL).is_file() and (run_dir / rundir.METRICS).is_file():
        say(f"{run_dir}: the run is already complete; nothing to resume")
        return Plan("complete", saved, env["engine"], None, None, run_dir)
    hold(run_dir)
    state, start, history = None, 0, []
    if (run_dir / rundir.CHECKPOINT).is_file():
        # made before an extension (see ``extend``): with the epochs the run had then
        shorter = tuple(e["from_epochs"] for e in env.get("extended", []))
        state, start, history = rundir.read_checkpoint(
            run_dir / rundir.CHECKPOINT, saved, also_epochs=shorter
        )
    else:
        _no_checkpoint(run_dir, say)
    if isinstance(dataset, Dataset):
        ds = record.verify(dataset, env_file)
    else:
        ds = record.load(env_file, data_dir, saved.data_dir)
    # The same engine as before: "auto" could pick differently on a changed installation.
    return Plan("resume", saved, env["engine"], ds, data_dir, run_dir, state, start, history)


def extend(run_dir: Path, saved: Recipe, epochs: int, say) -> Recipe:
    """Make the (held) run folder a run of ``epochs`` epochs, to be continued from its last
    checkpoint; the new recipe. Refused in one line where that would not be the run a fresh
    ``epochs``-epoch training gives: fewer epochs, a schedule that depends on the total, a run
    that stopped early. The files of the shorter run's end go first (model, metrics, stored
    predictions, report, ONNX), then environment.json records the change, then recipe.toml
    states it: a kill at any moment leaves a run that ``--resume`` continues."""
    longer = saved.replace(epochs=epochs)  # checks the range
    if epochs < saved.epochs:
        raise RunError(
            f"{run_dir}: has {saved.epochs} epochs; --epochs {epochs} would cut it short, and "
            f"a run is only continued (train a new run with --epochs {epochs})"
        )
    env_file = run_dir / rundir.ENVIRONMENT
    if not env_file.is_file() and not (run_dir / rundir.CHECKPOINT).is_file():
        longer.to_toml(run_dir / rundir.RECIPE)  # nothing trained yet: it simply is longer
        return longer
    _refuse_extension(run_dir, saved, epochs)
    env = rundir.read_environment(env_file)
    for name in (rundir.REPORT, rundir.ONNX, rundir.PREDICTIONS, rundir.METRICS, rundir.MODEL):
        (run_dir / name).unlink(missing_ok=True)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    env.setdefault("extended", []).append(
        {"from_epochs": saved.epochs, "to_epochs": epochs, "at": at}
    )
    atomic_write_json(env_file, env)
    longer.to_toml(run_dir / rundir.RECIPE)
    say(f"{run_dir}: training on from {saved.epochs} to {epochs} epochs")
    return longer


def _refuse_extension(run_dir: Path, saved: Recipe, epochs: int) -> None:
    """RunError when continuing ``saved`` to ``epochs`` would differ from training that long."""
    fresh = f"train a new run with --epochs {epochs} instead"
    if saved.schedule in NEEDS_THE_TOTAL:
        raise RunError(
            f"{run_dir}: its schedule '{saved.schedule}' {NEEDS_THE_TOTAL[saved.schedule]}, so "
            f"its first {saved.epochs} epochs are not those of a {epochs}-epoch run; {fresh}"
        )
    if not (run_dir / rundir.CHECKPOINT).is_file():
        raise RunError(f"{run_dir}: has no checkpoint to continue from; {fresh}")
    metrics = run_dir / rundir.METRICS
    stopped = rundir.read_metrics(metrics).get("stopped") if metrics.is_file() else None
    if stopped:
        raise RunError(f"{run_dir}: it {stopped}; {fresh}")
    stopper = EarlyStopping.for_recipe(saved)
    history = run_dir / rundir.HISTORY
    if stopper is not None and history.is_file() and stopper.replay(rundir.read_history(history)):
        raise RunError(
            f"{run_dir}: early stopping ended it after epoch {stopper.stopped_epoch} "
            f"({saved.monitor} did not improve for {saved.early_stopping} epochs); more epochs "
            f"would not train it further; {fresh} or a larger early_stopping"
        )


def _no_checkpoint(run_dir: Path, say) -> None:
    """A run with no checkpoint starts from epoch 0: said when it was killed in its first
    epoch; refused when history.csv records finished epochs (the checkpoint was deleted, and
    their trained state with it), so their history is never silently trained over."""
    history = run_dir / rundir.HISTORY
    done = rundir.read_history(history) if history.is_file() else []
    if done:
        raise RunError(
            f"{run_dir / rundir.CHECKPOINT}: file is missing, but {history.name} records "
            f"{len(done)} finished epoch{'s' if len(done) > 1 else ''}: their trained state is "
            "lost and cannot be continued; train a new run (or delete history.csv to start "
            "this one over from epoch 0)"
        )
    say(f"{run_dir}: no epoch had finished (no checkpoint); starting it from epoch 0")


def _load(dataset: Dataset | str | None, recipe: Recipe, data_dir) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset

    return datasets.load(dataset or recipe.dataset, data_dir=data_dir or recipe.data_dir)


@dataclasses.dataclass
class Data:
    """The arrays of one training: the training part (uint8 for augmentation, and
    standardized), the held-out validation part, and the statistics both were scaled with."""

    xtr_u8: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    mean: float
    std: float
    pixel_std: float | None  # of raw pixels, for the health check's advice (normalize="none")
    n_classes: int
    dataset: Dataset

    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """The test set, scaled as training was (made at the end: no copy held meanwhile)."""
        x = preprocess(self.dataset.x_test, self.mean, self.std)
        return x, np.asarray(self.dataset.y_test, dtype=np.int64)


def prepare(plan: Plan) -> Data:
    """Hold out the LAST ``validation_split`` (as Keras does), check the memory budget, and
    standardize with statistics of the training part only."""
    ds, recipe = plan.dataset, plan.recipe
    xtr_u8, ytr, xval_u8, yval = split_validation(ds.x_train, ds.y_train, recipe.validation_split)
    n_classes = len(ds.class_names)
    memory.check(
        recipe, len(xtr_u8), len(xval_u8), len(ds.x_test), n_classes, new_run=plan.mode == "fresh"
    )
    mean, std = normalization_stats(xtr_u8, recipe.normalize)
    pixel_std = None
    if recipe.normalize == "none":
        pixel_std = normalization_stats(xtr_u8, "standardize")[1]
    return Data(
        xtr_u8=xtr_u8,
        x_train=preprocess(xtr_u8, mean, std),
        y_train=np.asarray(ytr, dtype=np.int64),
        x_val=preprocess(xval_u8, mean, std),
        y_val=np.asarray(yval, dtype=np.int64),
        mean=mean,
        std=std,
        pixel_std=pixel_std,
        n_classes=n_classes,
        dataset=ds,
    )
