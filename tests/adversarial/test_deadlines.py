"""Every network or database step has a deadline and a one-line error; study and tracking
locations are checked before any work."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnistlab.errors import MnistlabError
from mnistlab.experiments import shared_study, track

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_a_database_that_never_answers_is_given_up_after_the_connect_timeout(
    silent_port, monkeypatch
):
    pytest.importorskip("psycopg")
    monkeypatch.setattr(shared_study, "CONNECT_TIMEOUT", 1)
    t0 = time.monotonic()
    with pytest.raises(MnistlabError, match="cannot open the study storage") as err:
        shared_study.open_study(f"postgresql://me@127.0.0.1:{silent_port}/db", "s", 10)
    assert time.monotonic() - t0 < 8
    assert "\n" not in str(err.value)


def test_postgres_urls_carry_connect_and_statement_deadlines():
    kw = shared_study.engine_kwargs("postgresql://me@db/x")
    assert kw["connect_args"]["connect_timeout"] == shared_study.CONNECT_TIMEOUT
    assert (
        kw["connect_args"]["options"] == f"-c statement_timeout={shared_study.STATEMENT_TIMEOUT}000"
    )
    mine = shared_study.engine_kwargs("postgresql://me@db/x?connect_timeout=2&options=-c%20a%3Db")
    assert "connect_timeout" not in mine["connect_args"] and "options" not in mine["connect_args"]


@pytest.mark.parametrize(
    "url, words",
    [
        ("sqlite:///:memory:", "in-memory study is lost"),
        ("sqlite://", "in-memory study is lost"),
        ("sqlite:///file:x?mode=memory&uri=true", "in-memory"),
        ("sqlite:////nonexistent/dir/x.db", "folder /nonexistent/dir does not exist"),
    ],
)
def test_study_files_that_cannot_be_shared_are_refused(tmp_path, monkeypatch, url, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MnistlabError, match=words) as err:
        shared_study.storage_url(url, tmp_path)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == [] and not Path("/nonexistent").exists()


def test_a_study_name_longer_than_the_storage_holds_is_one_line(tmp_path):
    url = shared_study.storage_url(None, tmp_path)
    with pytest.raises(MnistlabError, match="1 to 512 characters .* got 600"):
        shared_study.open_study(url, "s" * 600, 10)
    shared_study.open_study(url, "s" * 512, 10)


@pytest.mark.parametrize("spec", ["mlflow:bogus://x", "mlflow:ftp://host/x"])
def test_a_tracking_uri_mlflow_cannot_store_to_is_refused(spec):
    with pytest.raises(track.TrackError, match="MLflow has no store for"):
        track.parse_target(spec)


def test_bad_track_uri_fails_before_training(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "mnistlab", "train", "--dataset", "mnist-sample", "--epochs", "1"]
        + ["--track", "mlflow:bogus://x", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=60,
    )
    assert p.returncode == 2 and p.stderr.startswith("error: --track mlflow:bogus://x")
    assert p.stderr.count("\n") == 1 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("where", ["refused", "silent"])
def test_a_tracking_server_that_does_not_answer_is_one_line(silent_port, monkeypatch, where):
    monkeypatch.setattr(track, "REACH_TIMEOUT", 1.0)
    port = 1 if where == "refused" else silent_port
    t0 = time.monotonic()
    with pytest.raises(track.TrackError, match="does not answer within 1 s"):
        track.check_target(f"http://127.0.0.1:{port}")
    assert time.monotonic() - t0 < 4


def test_a_tracking_store_that_cannot_be_written_is_refused(tmp_path, fail_writes):
    track.check_target(f"sqlite:///{tmp_path / 'm.db'}")
    track.check_target(str(tmp_path / "new" / "mlruns"))  # a folder store MLflow will make
    fail_writes(tmp_path)
    with pytest.raises(track.TrackError, match="cannot write the tracking store"):
        track.check_target(str(tmp_path / "new" / "mlruns"))
    with pytest.raises(track.TrackError, match="cannot write the tracking store .*Read-only"):
        track.check_target(f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(track.TrackError, match="no such folder"):
        track.check_target(f"sqlite:///{tmp_path / 'missing' / 'm.db'}")


def test_logging_to_a_dead_server_is_one_line_within_its_deadlines(tmp_path, fake_run, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setitem(track.HTTP_DEADLINES, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    run = fake_run(tmp_path / "r")
    t0 = time.monotonic()
    with pytest.raises(track.TrackError, match="logging to MLflow failed") as err:
        track.log_run(run, "http://127.0.0.1:1")
    assert time.monotonic() - t0 < 20 and "\n" not in str(err.value)
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # restored after the call
