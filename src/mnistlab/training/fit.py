"""Train a recipe: ``fit(recipe) -> Run``, the notebook's ``model.fit`` as one call, and
``resume(run)`` to continue a run that was killed.

The loop below is the whole training: plan (``training.plan``: fresh, restart or resume, with
the data split and standardized), build the engine (``mnistlab.engines``), then per epoch a
permutation from ``(seed, epoch)``, the learning rate of every step
(``training.schedules``), one ``train_epoch``, a large-batch validation, an atomic checkpoint
(``training.recorder``) and the watch's verdict (``training.watch``: health check, early
stopping, stop-on-divergence, ``on_epoch``). Finally the test set is evaluated and the run
folder completed. A run killed at any moment continues with ``resume(RUN)`` and ends with the
same weights and history as if never interrupted: all randomness is a function of
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
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import rundir
from mnistlab.engines import make_engine
from mnistlab.engines.init import init_weights
from mnistlab.errors import FileSystemError, RunError
from mnistlab.recipe import Recipe
from mnistlab.rundir import lock as runlock
from mnistlab.training import augment
from mnistlab.training.console import Console, dataset_line, summary
from mnistlab.training.plan import Plan, plan_fresh, plan_resume, prepare
from mnistlab.training.recorder import Recorder
from mnistlab.training.schedules import learning_rates, steps_per_epoch
from mnistlab.training.watch import Watch


def _train(plan: Plan, console: Console, hold, device, **watching: Any) -> rundir.Run:
    """Train the planned run to its end; ``watching``: the Watch's stop_on_divergence/on_epoch."""

    recipe = plan.recipe
    console.line(dataset_line(plan.dataset))
    data = prepare(plan)
    weights = init_weights(recipe, n_classes=data.n_classes)
    engine = make_engine(recipe.replace(engine=plan.engine), weights, device=device)
    record = Recorder.start(plan, engine, hold)  # from here on the run folder exists and is held
    watch = Watch(recipe, plan.history, console, data.pixel_std, data.n_classes, **watching)
    if plan.state is not None:
        engine.load_state(watch.load(plan.state))
        console.line(f"resuming {record.run_dir} after epoch {plan.start}/{recipe.epochs}")
    console.line(
        f"run: {record.run_dir}  engine: {engine.name} ({engine.reason}) on {engine.device}"
    )
    history = list(plan.history)
    steps = steps_per_epoch(len(data.x_train), recipe.batch_size)
    end = plan.start if watch.done else recipe.epochs
    for epoch in range(plan.start, end):  # engines apply recipe.threads themselves
        t0 = time.perf_counter()
        order = epoch_order(recipe.seed, epoch, len(data.x_train), recipe.shuffle)
        lrs = learning_rates(recipe, epoch, steps, history)
        x = augment.epoch_images(
            recipe, data.xtr_u8, order, epoch, data.x_train, data.mean, data.std
        )
        with _stopping_cleanly(console, record.run_dir, epoch):
            with console.epoch(epoch + 1, recipe.epochs, steps) as on_progress:
                loss, acc = engine.train_epoch(x, data.y_train, order, lrs, epoch, on_progress)
        val_loss, val_acc = (
            engine.evaluate(data.x_val, data.y_val) if len(data.x_val) else (None, None)
        )
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
        console.line(summary(row, recipe.epochs, steps))
        # History and state go to disk together, every epoch: a kill loses one epoch at most.
        record.checkpoint(watch.observe(row, engine), epoch + 1, history)
        if watch.stop(row):
            break

    final = watch.restore_best(engine, history)
    test_loss, test_acc = engine.evaluate(*data.test())
    run = record.finish(engine, data, final, (test_loss, test_acc), watch.record())
    console.line(f"test: loss {test_loss:.4f} - accuracy {test_acc:.4f}  ->  {record.run_dir}")
    return run


def fit(
    recipe: Recipe | None = None,
    dataset=None,
    out: str | Path | None = None,
    *,
    quiet: bool = False,
    stop_on_divergence: bool = False,
    data_dir: str | Path | None = None,
    device: str | None = None,
    on_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
    resume: bool = False,
    epochs: int | None = None,
) -> rundir.Run:
    """Train ``recipe`` (default: the notebook's) and return the finished run.

    ``dataset``: a Dataset, a name, or None (the recipe's, else full MNIST with fallback to the
    bundled sample). ``out``: the run folder (default runs/<UTC time>-<name>).
    ``stop_on_divergence``: stop after the first epoch the health check flags.
    ``on_epoch``: called with each epoch's history row after its checkpoint; returning True
    stops training there (the run is completed as usual, ``run.stopped`` says why).
    ``resume=True`` is ``resume(out, ..., epochs=epochs)`` spelled as the CLI's ``train
    --resume`` spells it.
    """

    def make_plan(say, hold) -> Plan:
        if resume:
            return plan_resume(out, recipe, dataset, data_dir, say, hold, epochs)
        return plan_fresh(recipe, dataset, out, data_dir)

    return _run(
        make_plan,
        quiet=quiet,
        device=device,
        stop_on_divergence=stop_on_divergence,
        on_epoch=on_epoch,
    )


def resume(
    run,
    *,
    dataset=None,
    quiet: bool = False,
    stop_on_divergence: bool = False,
    data_dir: str | Path | None = None,
    device: str | None = None,
    on_epoch: Callable[[dict[str, Any]], bool | None] | None = None,
    epochs: int | None = None,
) -> rundir.Run:
    """Continue the run folder ``run`` (a path or a Run) from its last checkpoint, with the
    recipe, dataset and engine it started with; a finished run is returned as it is, unless
    ``epochs`` asks for more than it has (``training.plan.extend``: trained on exactly as a
    run of that many epochs would have gone, where its schedule allows it).

    ``dataset``: the Dataset it trained on, when it was not one ``datasets.load`` gives by
    name (checked against the recorded checksums); ``data_dir``: where to load it from instead
    of the recorded folder. The other options are ``fit``'s.
    """
    out = getattr(run, "path", run)
    return _run(
        lambda say, hold: plan_resume(out, None, dataset, data_dir, say, hold, epochs),
        quiet=quiet,
        stop_on_divergence=stop_on_divergence,
        device=device,
        on_epoch=on_epoch,
    )


def _run(make_plan, *, quiet, device, **watching) -> rundir.Run:
    """Plan and train, holding the run folder's lock from its creation (or resume) on; a full
    disk or memory is one line saying how to continue."""
    console = Console(quiet)
    held: list[Path] = []
    with contextlib.ExitStack() as stack:

        def hold(run_dir: Path) -> None:
            stack.enter_context(runlock.hold(run_dir, command="mnistlab train"))
            held.append(run_dir)

        try:
            plan = make_plan(console.line, hold)
            if plan.mode == "complete":
                return rundir.load_run(plan.run_dir)
            return _train(plan, console, hold, device, **watching)
        except (FileSystemError, MemoryError) as exc:
            if not held:  # nothing made yet: the message alone says it
                raise _out_of_memory(None, None) if isinstance(exc, MemoryError) else exc from None
            # A full disk or memory mid-run: every file is whole, the last checkpoint stands.
            if isinstance(exc, MemoryError):
                raise _out_of_memory(held[0], None) from None
            exc.args = (f"{exc}; then continue with: mnistlab train --resume {held[0]}",)
            raise


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool = True) -> np.ndarray:
    """This epoch's sample order: a function of (seed, epoch) only, so resume replays it."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


@contextlib.contextmanager
def _stopping_cleanly(console: Console, run_dir: Path, epoch: int) -> Iterator[None]:
    """Ctrl-C or no memory inside an epoch: say how to continue from the last checkpoint."""
    try:
        yield
    except KeyboardInterrupt:
        console.warn(
            f"interrupted in epoch {epoch + 1}; continue with: mnistlab train --resume {run_dir}"
        )
        raise
    except MemoryError:
        raise _out_of_memory(run_dir, epoch) from None


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
