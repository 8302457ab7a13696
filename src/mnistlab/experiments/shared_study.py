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
# Deadlines of every PostgreSQL step: a server that accepts TCP and never answers, or a query
# that hangs (a lock never granted), is one line after these, not a wait forever. A URL's own
# ?connect_timeout=... wins.
CONNECT_TIMEOUT = 10  # s to connect and log in
STATEMENT_TIMEOUT = 60  # s for one statement (Optuna's, and waiting for the claim lock)
SQLITE_BUSY_TIMEOUT = 60  # s a worker waits for another one's write lock on the SQLite file
MAX_STUDY_NAME = 512  # characters: the width of Optuna's study_name column


# ---- storage and the claim lock ---------------------------------------------------------
def storage_url(url: str | None, out: Path) -> str:
    """The study URL of ``--storage`` (default: ``OUT/study.db``), checked: SQLite in a file whose
    folder exists (workers share a study through a file, never an in-memory one), or PostgreSQL.
    """
    if url is None:
        return f"sqlite:///{(out / 'study.db').resolve()}"
    scheme = url.split(":", 1)[0].lower()
    if not (scheme == "sqlite" or scheme.startswith("postgresql")) or "://" not in url:
        raise MnistlabError(
            f"--storage: expected sqlite:///FILE or postgresql://user@host:port/db, got {url!r}"
        )
    if scheme == "sqlite":
        _check_sqlite_file(url)
    return url


def _check_sqlite_file(url: str) -> None:
    path = url[len("sqlite:///") :].split("?", 1)[0] if url.startswith("sqlite:///") else ""
    if not path or path == ":memory:" or "mode=memory" in url:
        raise MnistlabError(
            f"--storage {url}: an in-memory study is lost when the process ends and no other "
            "worker can join it; give a file, sqlite:///FILE"
        )
    folder = Path(path).parent
    if not folder.is_dir():
        raise MnistlabError(
            f"--storage {url}: folder {folder} does not exist; create it, or give a file "
            "in an existing folder"
        )


def check_study_name(name: str) -> str:
    if not name or len(name) > MAX_STUDY_NAME:
        raise MnistlabError(
            f"--study: expected a name of 1 to {MAX_STUDY_NAME} characters (the study "
            f"storage's limit), got {len(name)}"
        )
    return name


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options of a study URL: the deadlines above, the URL's own first.

    >>> engine_kwargs("postgresql://me@db/x?connect_timeout=3")["connect_args"]["options"]
    '-c statement_timeout=60000'
    >>> "connect_timeout" in engine_kwargs("postgresql://me@db/x?connect_timeout=3")["connect_args"]
    False
    """
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    from sqlalchemy.engine import make_url

    given = make_url(url).query
    deadlines: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT,
        # a server gone mid-query (a lost machine) is noticed by TCP keepalives in ~1 min
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    args = {k: v for k, v in deadlines.items() if k not in given}
    if "options" not in given:
        args["options"] = f"-c statement_timeout={STATEMENT_TIMEOUT * 1000}"
    return {"pool_pre_ping": True, "connect_args": args}


def make_storage(url: str, heartbeat: int = HEARTBEAT):
    if url.startswith("sqlite"):
        # Optuna creates its tables on first use, and SQLite answers a second creator with
        # "table already exists" (an OperationalError), so workers on one file take turns.
        from filelock import FileLock

        first_use = FileLock(url.split("///", 1)[1] + ".claim.lock")
    else:
        first_use = contextlib.nullcontext()
    with first_use:
        return _rdb_storage(url, engine_kwargs(url), heartbeat)


def _rdb_storage(url: str, kwargs: dict[str, Any], heartbeat: int):
    import optuna
    from optuna.exceptions import StorageInternalError
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
            except (SQLAlchemyError, StorageInternalError, ValueError) as exc:
                # a bad URL, a server down or silent past CONNECT_TIMEOUT, a refused login
                raise MnistlabError(
                    f"--storage {safe_url(url)}: cannot open the study storage "
                    f"({type(exc).__name__}: {_first_line(exc)})"
                ) from None
    raise AssertionError("unreachable")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


@contextlib.contextmanager
def storage_errors(url: str, doing: str) -> Iterator[None]:
    """A database failure inside the block (a statement past STATEMENT_TIMEOUT, a server gone)
    as one MnistlabError line naming the storage and what was being done."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (SQLAlchemyError, StorageInternalError) as exc:
        raise MnistlabError(
            f"--storage {safe_url(url)}: {doing} failed ({type(exc).__name__}: "
            f"{_first_line(exc)}); run the same command again to continue"
        ) from None


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
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as exc:  # the storage is gone: the trial will be retried elsewhere
                warnings.warn(
                    f"trial heartbeat failed ({type(exc).__name__}: {_first_line(exc)}); "
                    "another worker may retry this trial",
                    stacklevel=1,
                )
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def open_study(url: str, study_name: str, heartbeat: int, pruner=None):
    """(RDBStorage, Study): the study in ``url``, created on first use (maximizing)."""
    import optuna
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_study_name(study_name)
    rdb = make_storage(url, heartbeat)
    try:
        st = optuna.create_study(
            storage=rdb,
            study_name=study_name,
            direction="maximize",
            load_if_exists=True,
            pruner=pruner,
        )
    except (SQLAlchemyError, StorageInternalError, ValueError) as exc:
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
        with storage_errors(url, "claiming a trial"), claim_lock(url, study_name, rdb):
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
