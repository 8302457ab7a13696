"""Train a recipe: ``fit(recipe) -> Run``, the notebook's ``model.fit`` as one call.

What it does, in order: load the dataset, hold out the LAST ``validation_split`` of the training
set (as Keras does), standardize with statistics of the training part only, build the engine
(``mnistlab.engines``), then per epoch: a permutation from ``(seed, epoch)``, the learning rates
of every step (``mnistlab.training.schedules``), one ``train_epoch``, a large-batch
validation, the health check, and an atomic checkpoint. Finally the test set is evaluated and
the run folder completed (``mnistlab.rundir``). A run killed at any moment continues with
``fit(out=RUN, resume=True)`` and ends with the same weights and history as if never
interrupted: all randomness is a function of
``(seed, epoch)`` and the checkpoint holds the whole engine state.

torch is imported only if the chosen engine needs it.

>>> import dataclasses, tempfile
>>> from mnistlab import datasets
>>> from mnistlab.recipe import Recipe
>>> ds = datasets.load("mnist-sample")
>>> small = dataclasses.replace(ds, x_train=ds.x_train[:1000], y_train=ds.y_train[:1000])
>>> run = fit(Recipe(epochs=1, hidden=[32]), small, out=tempfile.mkdtemp() + "/r", quiet=True)
>>> len(run.history), run.history[0]["epoch"]
(1, 1)
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import fsio, rundir
from mnistlab._version import __version__
from mnistlab.datasets import Dataset
from mnistlab.datasets.preprocess import normalization_stats, preprocess, split_validation
from mnistlab.engines.protocol import Engine
from mnistlab.errors import FileSystemError, RunError
from mnistlab.fsio import normalize
from mnistlab.recipe import Recipe
from mnistlab.rundir import lock as runlock
from mnistlab.training import augment
from mnistlab.training import budget as memory
from mnistlab.training.health import HealthWarning, check_epoch, check_history
from mnistlab.training.schedules import learning_rates, steps_per_epoch
from mnistlab.training.stopping import EarlyStopping


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool = True) -> np.ndarray:
    """This epoch's sample order: a function of (seed, epoch) only, so resume replays it."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


def _load_dataset(dataset: Dataset | str | None, recipe: Recipe, data_dir) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    from mnistlab import datasets

    return datasets.load(dataset or recipe.dataset, data_dir=data_dir or recipe.data_dir)


def _environment(recipe: Recipe, ds: Dataset, engine: Engine, data_dir) -> dict[str, Any]:
    env: dict[str, Any] = {
        "mnistlab": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "seed": recipe.seed,
        "threads": recipe.threads,
        "cpu_count": os.cpu_count(),
        "engine": engine.name,
        "engine_reason": engine.reason,
        "device": engine.device,
        "dataset": {
            "name": ds.name,
            "source": ds.source,
            "checksums": dict(ds.checksums),
            "note": ds.note,
            "data_dir": None if data_dir is None else str(data_dir),
            "train": int(len(ds.x_train)),
            "test": int(len(ds.x_test)),
        },
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    env.update(_imported(engine))
    return env


def _imported(engine: Engine) -> dict[str, Any]:
    """Versions and thread counts of what the run actually imported (known after training)."""
    # backend: numba or numpy on the fast engine, torch on the reference one
    out: dict[str, Any] = {"engine_threads": engine.threads, "engine_backend": engine.backend}
    out["subnormals"] = getattr(engine, "subnormals", None)  # flushed to zero, or why not
    for name in ("torch", "numba"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = module.__version__
    if "torch" in sys.modules:
        out["torch_threads"] = sys.modules["torch"].get_num_threads()
    return out


class _Reporter:
    """Keras verbose=1 look-alike: a progress bar per epoch, then one summary line."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        if not quiet:
            from rich.console import Console

            self.console = Console(highlight=False, soft_wrap=True)
        self.err = None

    def line(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def warn(self, text: str) -> None:
        # Warnings reach the user even with --quiet: they are about the result, not progress.
        if self.err is None:
            from rich.console import Console

            self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.err.print(f"[bold yellow]warning:[/] {text}")

    @contextlib.contextmanager
    def epoch(self, epoch: int, epochs: int, steps: int):
        if self.quiet or not self.console.is_terminal:
            yield None  # a bar in a log file is noise: the summary line says it all
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn(f"Epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
            transient=True,
        ) as bar:
            task = bar.add_task("", total=steps, metrics="")

            def update(done: int, loss: float, acc: float) -> None:
                bar.update(task, completed=done, metrics=f"loss: {loss:.4f} - accuracy: {acc:.4f}")

            yield update


def _summary(row: dict[str, Any], epochs: int, steps: int) -> str:
    parts = [
        f"Epoch {row['epoch']}/{epochs}",
        f"{steps}/{steps}",
        f"{row['seconds']:.1f}s",
        f"loss: {row['loss']:.4f}",
        f"accuracy: {row['accuracy']:.4f}",
    ]
    if row.get("val_loss") is not None:
        parts += [f"val_loss: {row['val_loss']:.4f}", f"val_accuracy: {row['val_accuracy']:.4f}"]
    return " - ".join(parts)


def _out_of_memory(run_dir: Path | None, epoch: int | None) -> RunError:
    smaller = "start a new run with smaller 'hidden' or 'batch_size'"
    if run_dir is None:
        return RunError(f"out of memory before training started; free memory or {smaller}")
    where = f" in epoch {epoch + 1}" if epoch is not None else ""
    kept = (
        "nothing trained yet"
        if epoch == 0
        else "it keeps its last checkpoint"
        if epoch is None
        else f"it keeps the checkpoint after epoch {epoch}"
    )
    return RunError(
        f"out of memory{where}: free memory and continue with mnistlab train "
        f"--resume {run_dir} ({kept}), or {smaller}"
    )


def fit(
    recipe: Recipe | None = None,
    dataset: Dataset | str | None = None,
    out: str | Path | None = None,
    *,
    quiet: bool = False,
    resume: bool = False,
    stop_on_divergence: bool = False,
    data_dir: str | Path | None = None,
    device: str | None = None,
    on_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
) -> rundir.Run:
    """Train ``recipe`` (default: the notebook's) and return the finished run.

    ``dataset``: a Dataset, a name, or None (the recipe's, else full MNIST with fallback to the
    bundled sample). ``out``: the run folder (default runs/<UTC time>-<name>). ``resume=True``
    continues the run in ``out`` from its last checkpoint (recipe and dataset as recorded there).
    ``stop_on_divergence``: stop after the first epoch the health check flags.
    ``on_epoch``: called with each epoch's history row after its checkpoint; returning True
    stops training there (the run is completed as usual, ``run.stopped`` says why).
    """
    held: list[Path] = []
    with contextlib.ExitStack() as stack:  # the run folder's lock, from creation (or resume) on

        def hold(run_dir: Path) -> None:
            stack.enter_context(runlock.hold(run_dir, command="mnistlab train"))
            held.append(run_dir)

        try:
            return _fit(
                recipe,
                dataset,
                out,
                quiet=quiet,
                resume=resume,
                stop_on_divergence=stop_on_divergence,
                data_dir=data_dir,
                device=device,
                on_epoch=on_epoch,
                hold=hold,
            )
        except (FileSystemError, MemoryError) as exc:
            if not held:  # nothing made yet: the message alone says it
                raise _out_of_memory(None, None) if isinstance(exc, MemoryError) else exc from None
            # A full disk or memory mid-run: every file is whole, the last checkpoint stands.
            if isinstance(exc, MemoryError):
                raise _out_of_memory(held[0], None) from None
            exc.args = (f"{exc}; then continue with: mnistlab train --resume {held[0]}",)
            raise


def _fit(
    recipe, dataset, out, *, quiet, resume, stop_on_divergence, data_dir, device, on_epoch, hold
):
    report = _Reporter(quiet)
    restart = False
    checkpoint = None
    if resume:
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
        recipe = saved
        # Killed before anything but recipe.toml was written: nothing to continue, start over.
        restart = not any((run_dir / f).exists() for f in (rundir.ENVIRONMENT, rundir.CHECKPOINT))
    if restart:
        hold(run_dir)
        report.line(f"{run_dir}: nothing was trained yet; starting it from epoch 0")
        engine_recipe = recipe
    elif resume:
        env = rundir.read_json(run_dir / rundir.ENVIRONMENT)
        recorded, engine_name = env.get("dataset"), env.get("engine")
        if not (
            isinstance(recorded, dict)
            and isinstance(recorded.get("name"), str)
            and isinstance(engine_name, str)
        ):
            raise RunError(
                f"{run_dir / rundir.ENVIRONMENT}: missing 'dataset' (with its 'name') or 'engine'"
            )
        if (run_dir / rundir.MODEL).is_file() and (run_dir / rundir.METRICS).is_file():
            report.line(f"{run_dir}: the run is already complete; nothing to resume")
            return rundir.load_run(run_dir)
        hold(run_dir)  # before the checkpoint is read: a second trainer stops here
        if not isinstance(dataset, Dataset):
            dataset = recorded["name"]
            data_dir = data_dir or recorded.get("data_dir")
        if (run_dir / rundir.CHECKPOINT).is_file():
            checkpoint = rundir.read_checkpoint(run_dir / rundir.CHECKPOINT, recipe)
        # The same engine as before: "auto" could pick differently on a changed installation.
        engine_recipe = recipe.replace(engine=engine_name)
    else:
        # Resolved: the run's recipe.toml records the momentum / weight decay actually used.
        recipe = (recipe or Recipe()).validate().resolved()
        if recipe.data_dir is not None:  # a relative one would break evaluate/resume elsewhere
            recipe = recipe.replace(data_dir=str(Path(recipe.data_dir).resolve()))
        if data_dir is not None:
            data_dir = Path(data_dir).resolve()
        engine_recipe = recipe
        run_dir = None
        if out is not None:
            out = normalize(out)  # x/../y: no stray x
            rundir.check_free(out)  # fail before the data is loaded, not after

    ds = _load_dataset(dataset, recipe, data_dir)
    if resume and not restart and dict(ds.checksums) != dict(recorded.get("checksums") or {}):
        raise RunError(
            f"{run_dir}: dataset {ds.name!r} differs from the one the run started "
            "with (checksums changed)"
        )
    first = (
        f"dataset: {ds.name} ({len(ds.x_train):,} train / {len(ds.x_test):,} test images"
        + (f", from {ds.source}" if ds.source else "")
        + ")"
    )
    report.line(first + (f" - note: {ds.note}" if ds.note else ""))

    xtr_u8, ytr, xval_u8, yval = split_validation(ds.x_train, ds.y_train, recipe.validation_split)
    memory.check(
        recipe, len(xtr_u8), len(xval_u8), len(ds.x_test), len(ds.class_names), new_run=not resume
    )
    mean, std = normalization_stats(xtr_u8, recipe.normalize)
    x_train = preprocess(xtr_u8, mean, std)
    y_train = np.asarray(ytr, dtype=np.int64)
    x_val = preprocess(xval_u8, mean, std)
    y_val = np.asarray(yval, dtype=np.int64)
    n_classes = len(ds.class_names)

    from mnistlab.engines import make_engine
    from mnistlab.engines.init import init_weights

    engine = make_engine(engine_recipe, init_weights(recipe, n_classes=n_classes), device=device)
    history: list[dict[str, Any]] = []
    start = 0
    stopper = EarlyStopping.for_recipe(recipe)
    if run_dir is None or restart:
        files = {
            rundir.RECIPE: recipe.to_toml().encode(),
            rundir.ENVIRONMENT: rundir.json_bytes(_environment(recipe, ds, engine, data_dir)),
        }
        if run_dir is None:
            run_dir = rundir.new_run_dir(recipe, out, files)  # appears whole or not at all
            hold(run_dir)
        else:
            fsio.atomic_write_bytes(run_dir / rundir.ENVIRONMENT, files[rundir.ENVIRONMENT])
    if checkpoint is not None:
        state, start, history = checkpoint
        engine.load_state(stopper.load(state) if stopper is not None else state)
        rundir.write_history(run_dir / rundir.HISTORY, history)
        report.line(f"resuming {run_dir} after epoch {start}/{recipe.epochs}")
    report.line(f"run: {run_dir}  engine: {engine.name} ({engine.reason}) on {engine.device}")

    pixel_std = None
    if recipe.normalize == "none":
        pixel_std = normalization_stats(xtr_u8, "standardize")[1]
    # Epochs finished before a resume keep their warnings (already shown back then).
    warnings: list[HealthWarning] = check_history(history, recipe, pixel_std, n_classes)
    stopped = None
    steps = steps_per_epoch(len(x_train), recipe.batch_size)
    # A run killed after early stopping had decided, but before the model was written, is done.
    end = start if stopper is not None and stopper.replay(history) else recipe.epochs
    # Engines apply recipe.threads themselves (torch threads / the BLAS pool).
    for epoch in range(start, end):
        t0 = time.perf_counter()
        order = epoch_order(recipe.seed, epoch, len(x_train), recipe.shuffle)
        lrs = learning_rates(recipe, epoch, steps, history)
        x_epoch = augment.epoch_images(recipe, xtr_u8, order, epoch, x_train, mean, std)
        try:
            with report.epoch(epoch + 1, recipe.epochs, steps) as on_progress:
                loss, acc = engine.train_epoch(x_epoch, y_train, order, lrs, epoch, on_progress)
        except KeyboardInterrupt:
            report.warn(
                f"interrupted in epoch {epoch + 1}; continue with: "
                f"mnistlab train --resume {run_dir}"
            )
            raise
        except MemoryError:
            raise _out_of_memory(run_dir, epoch) from None
        val_loss = val_acc = None
        if len(x_val):
            val_loss, val_acc = engine.evaluate(x_val, y_val)
        row = {
            "epoch": epoch + 1,
            "loss": float(loss),
            "accuracy": float(acc),
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "learning_rate": float(lrs[-1]),
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        report.line(_summary(row, recipe.epochs, steps))
        early_stop = stopper is not None and stopper.update(row)
        state = engine.state()
        if stopper is not None:
            if stopper.best_epoch == epoch + 1:
                stopper.keep(engine.weights())
            state.update(stopper.tensors())
        # History and state go to disk together, every epoch: a kill loses one epoch at most.
        # The checkpoint (which carries the history) first: the larger write fails first.
        rundir.write_checkpoint(
            run_dir / rundir.CHECKPOINT, state, epoch + 1, history, engine.name, recipe
        )
        rundir.write_history(run_dir / rundir.HISTORY, history)
        warning = check_epoch(row, recipe, pixel_std, n_classes)
        if warning is not None and warning.kind not in {w.kind for w in warnings}:
            warnings.append(warning)
            report.warn(warning.message)
        if warning is not None and stop_on_divergence:
            stopped = f"stopped after epoch {epoch + 1}: {warning.kind} (--stop-on-divergence)"
            report.warn(stopped)
            break
        if early_stop:
            report.line(
                f"early stopping after epoch {epoch + 1}: {recipe.monitor} did not "
                f"improve for {recipe.early_stopping} epochs (best: epoch "
                f"{stopper.best_epoch})"
            )
            break
        if on_epoch is not None and on_epoch(dict(row)):
            stopped = f"stopped after epoch {epoch + 1} by on_epoch"
            break

    final = history[-1] if history else {}
    if stopper is not None and stopper.best_weights is not None:
        state = engine.state()
        state.update(stopper.best_weights)
        engine.load_state(state)
        final = history[stopper.best_epoch - 1]
        report.line(
            f"restored the weights of epoch {stopper.best_epoch} ({recipe.monitor} "
            f"{stopper.best:.4f})"
        )

    test_loss, test_acc = engine.evaluate(
        preprocess(ds.x_test, mean, std), np.asarray(ds.y_test, dtype=np.int64)
    )
    rundir.write_model(
        run_dir / rundir.MODEL, engine.weights(), mean, std, tuple(ds.class_names), recipe, ds.name
    )
    env = rundir.read_json(run_dir / rundir.ENVIRONMENT)
    env.update(_imported(engine))
    if start > 0:
        env.setdefault("resumed", []).append(
            {"after_epoch": start, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        )
    fsio.atomic_write_json(run_dir / rundir.ENVIRONMENT, env)
    rundir.update_metrics(
        run_dir,
        {
            "train": {
                k: final.get(k) for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
            },
            "test": {"loss": test_loss, "accuracy": test_acc},
            "health": [w.message for w in warnings],
            "stopped": stopped,
            "early_stopping": stopper.record() if stopper is not None else None,
        },
    )
    report.line(f"test: loss {test_loss:.4f} - accuracy {test_acc:.4f}  ->  {run_dir}")
    run = rundir.load_run(run_dir)
    run.warnings = [w.message for w in warnings]
    run.stopped = stopped
    return run
