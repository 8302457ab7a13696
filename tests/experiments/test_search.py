"""search: space files, an SQLite study end to end (pruning, resume, best_recipe.toml that
`mnistlab train` accepts), and two workers sharing a real PostgreSQL study, one of them killed."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mnistlab import datasets
from mnistlab.cli import main
from mnistlab.errors import MnistlabError, RecipeError
from mnistlab.experiments import search as srch
from mnistlab.experiments import shared_study
from mnistlab.experiments.compare import slice_dataset

SPACE = """
[base]
hidden = [16]
epochs = 1
batch_size = 64
threads = 1
[space]
lr = { low = 1e-3, high = 0.1, log = true }
hidden = { choices = [[16], [24, 16]] }
optimizer = { choices = ["sgd", "adam"] }
"""
QUICK = ["--dataset", "mnist-sample", "--train-images", "600", "--test-images", "200"]


@pytest.fixture(scope="module")
def tiny():
    return slice_dataset(datasets.load("mnist-sample"), 600, 200)


def _space(tmp_path, text=SPACE):
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def _cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["mnistlab", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


# ---- space files -------------------------------------------------------------------------
def test_space_parses_ranges_and_choices(tmp_path):
    space = srch.load_space(
        _space(tmp_path, SPACE + "batch_size = { low = 32, high = 128, step = 32 }\n")
    )
    p = space.params
    assert (p["learning_rate"].kind, p["learning_rate"].log) == ("float", True)
    assert p["hidden"].choices == ([16], [24, 16]) and p["batch_size"].kind == "int"
    assert space.base.hidden == [16] and space.name == "space"


@pytest.mark.parametrize(
    "text,words",
    [
        ("[space]\nlearning_rat = { low = 0.1, high = 0.2 }\n", ["did you mean 'learning_rate'"]),
        ("[space]\nlr = { low = 0.2, high = 0.1 }\n", ["learning_rate", "low < high"]),
        ("[space]\nlr = { low = 0.0, high = 0.1, log = true }\n", ["log = true needs low > 0"]),
        ("[space]\noptimizer = { choices = [] }\n", ["optimizer", "non-empty list"]),
        ("[space]\noptimizer = { choices = ['sgd', 'adamm'] }\n", ["optimizer", "one of"]),
        ("[space]\noptimizer = { low = 1, high = 2 }\n", ["optimizer", "choices"]),
        ("[space]\nbatch_size = { low = 8.5, high = 64 }\n", ["batch_size", "an integer"]),
        ("[space]\ndropout = { low = 0.0, high = 1.5 }\n", ["dropout", "[0, 1)"]),
        ("[space]\ndataset = { choices = ['mnist'] }\n", ["dataset", "cannot be searched"]),
        ("[space]\nlr = { low = 0.1, high = 0.2, lg = true }\n", ["unknown key 'lg'"]),
        ("[base]\nepochs = 2\n", ["[space]"]),
        (
            "[base]\npreset = 3\n[space]\nlr = { low = 0.1, high = 0.2 }\n",
            ["expected a preset name"],
        ),
        (
            "[base]\nvalidation_split = 0.0\n[space]\nlr = { low = 0.1, high = 0.2 }\n",
            ["validation_split", "trials are scored"],
        ),
        ("[space\n", ["not valid TOML"]),
    ],
)
def test_bad_space_file_is_one_line(tmp_path, text, words):
    with pytest.raises(RecipeError) as exc:
        srch.load_space(_space(tmp_path, text))
    msg = str(exc.value)
    assert "\n" not in msg and "space.toml" in msg
    for w in words:
        assert w in msg, msg


def test_cli_bad_space_exits_2(tmp_path, monkeypatch, capsys):
    path = _space(tmp_path, "[space]\nepoch = { low = 1, high = 3 }\n")
    code, _, err = _cli(monkeypatch, capsys, "search", path, "--trials", 2)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "did you mean 'epochs'" in err and "Traceback" not in err
    code, _, err = _cli(
        monkeypatch,
        capsys,
        "search",
        _space(tmp_path),
        "--trials",
        2,
        "--storage",
        "mysql://x@y/z",
        "--out",
        tmp_path / "o",
    )
    assert code == 2 and "--storage" in err and err.count("\n") == 1
    # nothing listens on port 9: one line, not a driver traceback
    code, _, err = _cli(
        monkeypatch,
        capsys,
        "search",
        _space(tmp_path),
        "--trials",
        2,
        "--storage",
        "postgresql://me:secret@127.0.0.1:9/db",
        "--out",
        tmp_path / "o",
    )
    assert code == 2 and err.startswith("error: --storage") and err.count("\n") == 1, err
    assert "secret" not in err and "Traceback" not in err


# ---- SQLite (the default) ----------------------------------------------------------------
def test_sqlite_search_end_to_end_resume_and_best_recipe(tmp_path, tiny, monkeypatch, capsys):
    space = srch.load_space(_space(tmp_path))
    out = tmp_path / "s"
    first = srch.search(space, 3, out=out, dataset=tiny)
    assert first["counts"]["COMPLETE"] == 3 and (out / "study.db").is_file()
    stamps = {
        p.name: (p / "model.safetensors").stat().st_mtime_ns for p in (out / "trials").iterdir()
    }
    assert sorted(stamps) == ["trial-0000", "trial-0001", "trial-0002"]
    # the same storage again with a larger N continues; finished trials are not redone
    again = srch.search(space, 5, out=out, dataset=tiny)
    assert again["counts"]["COMPLETE"] == 5 and again["counts"]["RUNNING"] == 0
    for name, stamp in stamps.items():
        assert (out / "trials" / name / "model.safetensors").stat().st_mtime_ns == stamp
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("number,state,val_accuracy,learning_rate,hidden,optimizer")
    assert len(rows) == 6 and all(",COMPLETE," in r for r in rows[1:])
    best = again["best"]
    values = [float(r.split(",")[2]) for r in rows[1:]]
    assert best["value"] == max(values)
    # best_recipe.toml is a recipe `mnistlab train --recipe` takes, and it is the best trial's
    recipe = out / "best_recipe.toml"
    assert recipe.read_text().startswith("# Best of 5 complete trials")
    from mnistlab.recipe import Recipe

    trained = Recipe.from_toml(out / best["run"] / "recipe.toml")
    found = Recipe.from_toml(recipe)
    # named after the study, on the data it was found on, the drawn rate to 3 digits
    assert (found.name, found.dataset, found.threads) == ("space-best", "mnist-sample", 1)
    assert found.learning_rate == float(f"{trained.learning_rate:.3g}")
    same = {"name": found.name, "dataset": found.dataset, "learning_rate": found.learning_rate}
    assert found.resolved() == trained.replace(**same)
    assert (
        f"validation accuracy {best['value']:.4f}, trial {best['number']}"
        in (recipe.read_text().splitlines()[0])
    )
    code, _, err = _cli(
        monkeypatch,
        capsys,
        "train",
        "--recipe",
        recipe,
        "--dataset",
        "mnist-sample",
        "--epochs",
        1,
        "--quiet",
        "--out",
        tmp_path / "t",
    )
    assert code == 0, err
    assert (tmp_path / "t" / "model.safetensors").is_file()


def test_one_worker_search_repeats_exactly_and_trials_draw_apart(tmp_path, tiny):
    space = srch.load_space(_space(tmp_path))
    tables = [
        (srch.search(space, 3, out=tmp_path / f"s{i}", dataset=tiny), tmp_path / f"s{i}")
        for i in range(2)
    ]
    import csv

    def drawn(out):  # everything but the wall time
        rows = csv.DictReader((out / "trials.csv").read_text().splitlines())
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert drawn(tables[0][1]) == drawn(tables[1][1])
    assert len({row["learning_rate"] for row in drawn(tables[0][1])}) == 3
    assert srch.sampler_seed(0, 1) != srch.sampler_seed(0, 2) != srch.sampler_seed(1, 2)
    assert srch.sampler_seed(0, 1) == srch.sampler_seed(0, 1) < 2**32


def test_a_study_refuses_a_worker_with_another_space(tmp_path, tiny):
    out = tmp_path / "s"
    srch.search(srch.load_space(_space(tmp_path)), 1, out=out, dataset=tiny)
    other = srch.load_space(_space(tmp_path, SPACE.replace("high = 0.1", "high = 0.2")))
    with pytest.raises(MnistlabError, match="searches another space; give another --study"):
        srch.search(other, 2, out=out, dataset=tiny, study="space")


def test_pin_records_once_and_refuses_a_different_value():
    class Study:
        user_attrs: dict = {}

        def set_user_attr(self, key, value):
            self.user_attrs = {**self.user_attrs, key: value}

    st = Study()
    shared_study.pin(st, "compare", "A", "sqlite:///x.db", "s", "compares other variants")
    shared_study.pin(st, "compare", "A", "sqlite:///x.db", "s", "compares other variants")
    assert st.user_attrs == {"compare": "A"}
    with pytest.raises(MnistlabError, match="study 's' in .* compares other variants; give"):
        shared_study.pin(st, "compare", "B", "sqlite:///x.db", "s", "compares other variants")


def test_pruned_trials_stop_early_and_report_every_epoch(tmp_path, tiny):
    import optuna

    space = srch.load_space(_space(tmp_path, SPACE.replace("epochs = 1", "epochs = 3")))
    seen = []
    result = srch.search(
        space,
        2,
        out=tmp_path / "p",
        dataset=tiny,
        pruner=optuna.pruners.ThresholdPruner(lower=1.01),  # prunes everything
        on_run=lambda d, tags: seen.append((d, tags)),
    )
    assert result["counts"]["PRUNED"] == 2 and result["best"] is None
    assert seen == [
        (
            tmp_path / "p" / "trials" / f"trial-000{n}",
            {"mnistlab.study": "space", "mnistlab.trial": str(n), "mnistlab.trial_state": "PRUNED"},
        )
        for n in (0, 1)
    ]
    study = optuna.load_study(
        study_name="space", storage=shared_study.storage_url(None, tmp_path / "p")
    )
    for t in study.trials:
        assert list(t.intermediate_values) == [1]
        history = (tmp_path / "p" / t.user_attrs["run"] / "history.csv").read_text()
        assert len(history.splitlines()) == 2  # header + the one epoch before pruning
    # without pruning every epoch is reported
    full = srch.search(space, 1, out=tmp_path / "f", dataset=tiny)
    study = optuna.load_study(
        study_name="space", storage=shared_study.storage_url(None, tmp_path / "f")
    )
    assert full["counts"]["COMPLETE"] == 1
    assert list(study.trials[0].intermediate_values) == [1, 2, 3]


def test_ctrl_c_mid_trial_queues_the_trial_again(tmp_path, tiny, monkeypatch):
    import optuna

    space = srch.load_space(_space(tmp_path))
    real_fit = srch.fit
    calls = []

    def interrupted_second_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(srch, "fit", interrupted_second_fit)  # where search calls it
    with pytest.raises(KeyboardInterrupt):
        srch.search(space, 3, out=tmp_path / "s", dataset=tiny)
    url = shared_study.storage_url(None, tmp_path / "s")
    states = [t.state.name for t in optuna.load_study(study_name="space", storage=url).trials]
    assert states == ["COMPLETE", "FAIL", "WAITING"]  # queued at once, no grace period
    monkeypatch.setattr(srch, "fit", real_fit)
    result = srch.search(space, 3, out=tmp_path / "s", dataset=tiny)
    trials = optuna.load_study(study_name="space", storage=url).trials
    assert result["counts"]["COMPLETE"] == 3 and len(trials) == 4
    assert trials[2].system_attrs["failed_trial"] == 1 and trials[2].params == trials[1].params


def test_sqlite_tables_are_created_by_one_worker_at_a_time(tmp_path, monkeypatch):
    # SQLite answers a second concurrent creator of Optuna's tables with "table already exists"
    from filelock import FileLock, Timeout

    db = tmp_path / "study.db"
    real, opened = shared_study._rdb_storage, []

    def while_locked(url, kwargs, heartbeat):
        with pytest.raises(Timeout):
            FileLock(f"{db}.claim.lock").acquire(timeout=0)
        opened.append(url)
        return real(url, kwargs, heartbeat)

    monkeypatch.setattr(shared_study, "_rdb_storage", while_locked)
    shared_study.make_storage(f"sqlite:///{db}")
    assert opened == [f"sqlite:///{db}"] and db.is_file()
    FileLock(f"{db}.claim.lock").acquire(timeout=0)  # and released afterwards


def test_storage_url_must_name_a_file_or_server(tmp_path):
    assert shared_study.storage_url(None, tmp_path).startswith("sqlite:///")
    for bad in ("sqlite://", "sqlite:///", "mysql://x@y/z", "study.db"):
        with pytest.raises(MnistlabError, match="--storage"):
            shared_study.storage_url(bad, tmp_path)


def test_result_of_a_trial_failed_meanwhile_is_dropped_not_double_counted():
    import optuna
    from optuna.trial import TrialState

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)  # what a live worker sees after a missed heartbeat
    lines = []
    assert shared_study.tell(study, trial, lines.append, 0.9) is False
    assert "already finished elsewhere" in lines[0]
    assert [t.state for t in study.trials] == [TrialState.FAIL]
    fresh = study.ask()
    assert shared_study.tell(study, fresh, lines.append, 0.8) is True
    assert study.best_value == 0.8


# ---- PostgreSQL: many workers, one study ---------------------------------------------------
def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_missing(reason: str) -> None:
    """Skip, or fail where CI demands the services (so it cannot pass by skipping)."""
    if os.environ.get("MNISTLAB_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " (MNISTLAB_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def test_missing_postgres_skips_unless_services_are_required(monkeypatch):
    monkeypatch.delenv("MNISTLAB_REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception):
        _service_missing("no server")
    monkeypatch.setenv("MNISTLAB_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="MNISTLAB_REQUIRE_SERVICES=1"):
        _service_missing("no server")


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server in a temp folder; yields a database URL, stops it after."""
    bindir = _pg_bin()
    as_root = os.geteuid() == 0
    missing = (
        "PostgreSQL binaries not found in /usr/lib/postgresql/*/bin"
        if bindir is None
        else "running as root and there is no 'postgres' user for initdb"
        if as_root and shutil.which("runuser") is None
        else None
    )
    if missing:
        _service_missing(missing)
    root = Path(tempfile.mkdtemp(prefix="mnistlab-pg-"))
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:  # initdb refuses root: the server runs as the postgres user, in a folder it owns
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    data, log = root / "data", root / "server.log"

    def run(*cmd):
        subprocess.run(prefix + [str(c) for c in cmd], check=True, capture_output=True, timeout=120)

    started = False
    try:
        run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
        run(
            bindir / "pg_ctl",
            "-D",
            data,
            "-l",
            log,
            "-w",
            "-t",
            "60",
            "start",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off",
        )
        started = True
        run(bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "mnistlab")
        yield f"postgresql://postgres@127.0.0.1:{port}/mnistlab"
    finally:
        if started:
            subprocess.run(
                prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                check=False,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


def _worker(space, url, out):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mnistlab",
            "search",
            str(space),
            "--trials",
            "6",
            "--storage",
            url,
            "--study",
            "shared",
            "--out",
            str(out),
            "--heartbeat",
            "1",
            "--quiet",
            *QUICK,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_postgres_workers_share_one_study_and_survive_a_kill(tmp_path, postgres_url):
    import optuna
    from optuna.trial import TrialState

    # Trials of ~1 s (many short epochs, each ending in a checkpoint): long enough that worker A
    # is always caught inside one, however fast the machine.
    space = _space(tmp_path, SPACE.replace("epochs = 1", "epochs = 40"))
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    a, b = _worker(space, postgres_url, outs[0]), _worker(space, postgres_url, outs[1])
    killed = None
    try:
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and a.poll() is None:
            try:
                study = optuna.load_study(study_name="shared", storage=postgres_url)
            except KeyError:  # not created yet
                time.sleep(0.2)
                continue
            mine = [
                t
                for t in study.get_trials(states=(TrialState.RUNNING,))
                if t.user_attrs.get("worker", "").endswith(f":{a.pid}")
            ]
            if not mine:
                time.sleep(0.05)
                continue
            # Freeze it, then look again: a trial still RUNNING now is killed mid-trial for sure.
            os.kill(a.pid, signal.SIGSTOP)
            state = (
                optuna.load_study(study_name="shared", storage=postgres_url)
                .trials[mine[0].number]
                .state
            )
            if state == TrialState.RUNNING:
                os.kill(a.pid, signal.SIGKILL)
                killed = mine[0].number
            else:
                os.kill(a.pid, signal.SIGCONT)
        if killed is None:
            err_a = a.communicate(timeout=60)[1] if a.poll() is not None else "(still running)"
            pytest.fail(f"worker A was never caught inside a trial (exit {a.poll()}): {err_a}")
        _, err_b = b.communicate(timeout=180)
        assert b.returncode == 0, err_b
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
            p.communicate()
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.trials
    states = [t.state for t in trials]
    done = (TrialState.COMPLETE, TrialState.PRUNED)  # N counts finished trials, pruned too
    assert sum(s in done for s in states) == 6  # exactly N: no trial lost, none extra
    assert states.count(TrialState.RUNNING) == 0 and states.count(TrialState.WAITING) == 0
    assert trials[killed].state == TrialState.FAIL and states.count(TrialState.FAIL) == 1
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retried) == 1 and retried[0].state in done
    assert retried[0].params == trials[killed].params
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)
    # every finished trial has exactly one finished run folder, on the machine that ran it
    for t in trials:
        if t.state in done:
            homes = [o for o in outs if (o / t.user_attrs["run"] / "model.safetensors").is_file()]
            assert len(homes) == 1, (t.number, homes)
    assert {t.user_attrs["worker"].rsplit(":", 1)[1] for t in trials} == {str(a.pid), str(b.pid)}
    assert (outs[1] / "best_recipe.toml").is_file()


def test_search_scaling_bench_parses_its_arguments():
    bench = Path(__file__).resolve().parents[2] / "bench" / "search_scaling.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "--trials" in proc.stdout, proc.stderr


def test_postgres_sessions_run_under_the_statement_deadline(postgres_url):
    """Every connection of a study carries STATEMENT_TIMEOUT (a hung statement ends), and a
    study name longer than Optuna's column is one line before the database sees it."""
    from sqlalchemy import text

    rdb, _ = shared_study.open_study(postgres_url, "deadlines", 10)
    with rdb.engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "1min"
    with pytest.raises(MnistlabError, match="1 to 512 characters"):
        shared_study.open_study(postgres_url, "s" * 600, 10)
