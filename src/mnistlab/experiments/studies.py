"""Studies shared by workers: the storage URL, the claim lock, heartbeats, exact trial counts.

``mnistlab search`` and ``mnistlab compare --storage`` run their trials through this module, so
both scale out the same way: every worker opens the same Optuna RDB study (an SQLite file on one
machine, a PostgreSQL database for many), claims one trial at a time under a lock held in the
database itself (an advisory lock on PostgreSQL, a file lock beside the SQLite file), beats
while it trains, and tells the result. A trial whose worker died stops beating; the next worker
that claims after the grace period marks it FAIL, and Optuna's RetryHeartbeatStaleTrialCallback
queues it again with the same parameters and user attributes.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError

HEARTBEAT = 10  # seconds between heartbeats; a trial silent for GRACE x this is failed, retried
GRACE = 3


# ---- storage and the claim lock ---------------------------------------------------------
def storage_url(url: str | None, out: Path) -> str:
    if url is None:
        return f"sqlite:///{(out / 'study.db').resolve()}"
    scheme = url.split(":", 1)[0].lower()
    file_ok = scheme != "sqlite" or (url.startswith("sqlite:///") and len(url) > 10)
    if (
        not (scheme == "sqlite" or scheme.startswith("postgresql"))
        or "://" not in url
        or not file_ok
    ):  # workers share a study through a file, never an in-memory one
        raise MnistlabError(
            f"--storage: expected sqlite:///FILE or postgresql://user@host:port/db, got {url!r}"
        )
    return url


def make_storage(url: str, heartbeat: int = HEARTBEAT):
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}  # workers on one machine wait for the file lock
        # Optuna creates its tables on first use, and SQLite answers a second creator with
        # "table already exists" (an OperationalError), so workers on one file take turns.
        from filelock import FileLock

        first_use = FileLock(url.split("///", 1)[1] + ".claim.lock")
    else:
        kwargs["pool_pre_ping"] = True
        first_use = contextlib.nullcontext()
    with first_use:
        return _rdb_storage(url, kwargs, heartbeat)


def _rdb_storage(url: str, kwargs: dict[str, Any], heartbeat: int):
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

    for attempt in range(5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return RDBStorage(
                    url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=GRACE * heartbeat,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                )
            except ImportError as exc:  # the database driver is an extra
                raise MnistlabError(
                    f"--storage {safe_url(url)}: no database driver ({exc}); "
                    "install mnistlab[postgres] for PostgreSQL"
                ) from None
            except (IntegrityError, ProgrammingError):
                # Workers started together on an empty database all create Optuna's tables;
                # the losers of that race see duplicate keys. The tables exist now: try again.
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
            except (SQLAlchemyError, ValueError) as exc:  # bad URL, server down, refused login
                raise MnistlabError(
                    f"--storage {safe_url(url)}: cannot open the study storage "
                    f"({type(exc).__name__}: {_first_line(exc)})"
                ) from None
    raise AssertionError("unreachable")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


def safe_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)  # never print a password


@contextlib.contextmanager
def claim_lock(url: str, study_name: str, storage) -> Iterator[None]:
    """Serialize "count the trials, then take one" across every worker of the study."""
    if url.startswith("sqlite"):
        from filelock import FileLock

        db = url.split("///", 1)[1]
        with FileLock(db + ".claim.lock"):
            yield
        return
    from sqlalchemy import text

    key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big") >> 1
    with storage.engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


class Heartbeat:
    """Beats for one trial from a thread while the trial trains."""

    def __init__(self, storage, trial_id: int, interval: int):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.storage.record_heartbeat(self.trial_id)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def open_study(url: str, study_name: str, heartbeat: int, pruner=None):
    """(RDBStorage, Study): the study in ``url``, created on first use (maximizing)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = make_storage(url, heartbeat)
    try:
        st = optuna.create_study(
            storage=rdb,
            study_name=study_name,
            direction="maximize",
            load_if_exists=True,
            pruner=pruner,
        )
    except (SQLAlchemyError, ValueError) as exc:
        raise MnistlabError(
            f"--storage {safe_url(url)}: cannot open study {study_name!r} "
            f"({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    return rdb, st


def pin(st, key: str, value: str, url: str, study_name: str, holds: str) -> None:
    """Record ``value`` under ``key`` in a new study; refuse a study that holds another one:
    every worker of a study must run the same space or variants on the same data."""
    known = st.user_attrs.get(key)
    if known is None:
        st.set_user_attr(key, value)
    elif known != value:
        raise MnistlabError(
            f"study {study_name!r} in {safe_url(url)} {holds}; give another --study name"
        )


def claims(st, rdb, url: str, study_name: str, heartbeat: int, target: int | None):
    """Yield trials for this worker to run, one at a time, until the study is done.

    ``target``: the number of finished (complete or pruned) trials the study should hold;
    new trials are created up to it. ``None``: run only the queued (enqueued or retried) trials.
    Each claim happens under ``claim_lock``, after failing the trials of dead workers.
    """
    import optuna
    from optuna.trial import TrialState

    poll = min(1.0, heartbeat / 2)
    while True:
        with claim_lock(url, study_name, rdb):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(st)  # dead workers' trials: FAIL, re-enqueued
            states = [t.state for t in st.get_trials(deepcopy=False)]
            finished = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
            running = states.count(TrialState.RUNNING)
            waiting = states.count(TrialState.WAITING)
            if target is None:
                done, take = not waiting and not running, bool(waiting)
            else:
                done = finished >= target
                take = not done and (waiting > 0 or finished + running < target)
            trial = None
            if take:
                with warnings.catch_warnings():  # ask/tell with our own heartbeat, on purpose
                    warnings.simplefilter("ignore")
                    trial = st.ask()  # a waiting (retried) trial first, else a new one
                # Beat before the lock is released: a trial with no beat is never failed.
                rdb.record_heartbeat(trial._trial_id)
        if done:
            return
        if trial is None:  # the last trials are running elsewhere: wait for them
            time.sleep(poll)
            continue
        yield trial


@contextlib.contextmanager
def running(st, rdb, trial, heartbeat: int, log) -> Iterator[None]:
    """Beat while the body trains the trial; if it raises, the trial is told FAIL (and on
    Ctrl-C queued again at once rather than after the grace period)."""
    from optuna.trial import TrialState

    with Heartbeat(rdb, trial._trial_id, heartbeat):
        try:
            yield
        except KeyboardInterrupt:
            if tell(st, trial, log, state=TrialState.FAIL):
                retry = rdb.get_heartbeat_stale_trial_callback()
                if retry is not None:
                    retry(st, rdb.get_trial(trial._trial_id))
            raise
        except BaseException:
            tell(st, trial, log, state=TrialState.FAIL)
            raise


def tell(st, trial, log, *args, **kwargs) -> bool:
    """study.tell, unless another worker already failed the trial for a missed heartbeat (a
    frozen or overloaded worker): then its retry counts, and this result is dropped."""
    from optuna.exceptions import UpdateFinishedTrialError

    try:
        st.tell(trial, *args, **kwargs)
        return True
    except (UpdateFinishedTrialError, ValueError) as exc:  # optuna raises either, by version
        text = str(exc).lower()
        if not (
            isinstance(exc, UpdateFinishedTrialError)
            or "cannot tell a" in text
            or "finished" in text
        ):
            raise
        log(f"trial {trial.number}: already finished elsewhere ({_first_line(exc)})")
        return False
