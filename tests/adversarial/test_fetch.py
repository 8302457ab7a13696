"""Hostile mirrors and damaged caches: an endless body, a trickle, a redirect loop, a full disk,
a gzip bomb and a verified.json of the wrong shape each end as one line, leaving no .part file."""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mnistlab.datasets import download, registry, store
from mnistlab.errors import DataError, FileSystemError

NAME = "t10k-labels-idx1-ubyte.gz"
GOOD = gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 60)  # what the mirror "should" serve


class Hostile:
    """A loopback HTTP server: /endless (gzip magic, then zeros forever, no length), /liar
    (announces a huge Content-Length), /trickle (a byte every 0.2 s), /loop (redirects to
    itself), /good (GOOD)."""

    def __init__(self):
        stop = self.stop = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                mode = self.path.split("/")[1]
                if mode == "loop":
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if mode == "liar":
                    self.send_header("Content-Length", str(10**12))
                if mode == "good":
                    self.send_header("Content-Length", str(len(GOOD)))
                self.end_headers()
                try:
                    if mode == "good":
                        self.wfile.write(GOOD)
                        return
                    self.wfile.write(b"\x1f\x8b")
                    while not stop.is_set():
                        if mode == "trickle":
                            self.wfile.write(b"\x00")
                            self.wfile.flush()
                            time.sleep(0.2)
                        else:
                            self.wfile.write(b"\x00" * 65536)
                except OSError:  # the client hung up, as it should
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile():
    h = Hostile()
    yield h
    h.close()


def _fetch(hostile, mode, dest, **kw):
    return download.Session(timeout=2).fetch(
        NAME, [f"{hostile.url}/{mode}/"], dest, lambda p: None, **kw
    )


@pytest.mark.parametrize("mode", ["endless", "liar"])
def test_a_mirror_sending_more_than_the_file_is_stopped_one_byte_past_it(hostile, tmp_path, mode):
    t0 = time.monotonic()
    with pytest.raises(download.DownloadError) as err:
        _fetch(hostile, mode, tmp_path / NAME, size=100_000)
    assert time.monotonic() - t0 < 5
    assert ("sent more than the 100,000 bytes" if mode == "endless" else "announces") in str(
        err.value
    )
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


def test_a_trickling_mirror_meets_the_overall_deadline(hostile, tmp_path, monkeypatch):
    monkeypatch.setattr(download, "DEADLINE_GRACE", 1.0)
    t0 = time.monotonic()
    with pytest.raises(download.DownloadError, match=r"too slow: \d+ bytes in 1 s"):
        _fetch(hostile, "trickle", tmp_path / NAME, size=100)
    assert time.monotonic() - t0 < 4  # each read got its byte well within the 2 s timeout
    assert list(tmp_path.iterdir()) == []


def test_a_redirect_loop_is_one_line(hostile, tmp_path):
    with pytest.raises(download.DownloadError, match="redirect") as err:
        _fetch(hostile, "loop", tmp_path / NAME)
    assert "\n" not in str(err.value)


def test_a_full_disk_while_downloading_is_one_line_and_leaves_no_part(
    hostile, tmp_path, monkeypatch
):
    real_open = open

    class Full:
        def __init__(self, path, mode):
            self.fh = real_open(path, mode)

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(download, "open", Full, raising=False)
    with pytest.raises(FileSystemError, match="No space left on device; free some disk") as err:
        _fetch(hostile, "good", tmp_path / NAME)
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


def test_a_gzip_bomb_is_not_inflated_past_the_payload_size(tmp_path):
    f = registry.FileSpec(
        role="test_labels",
        name=NAME,
        payload_size=1000,
        payload_sha256=hashlib.sha256(b"\x00" * 1000).hexdigest(),
    )
    bomb = tmp_path / NAME
    with gzip.open(bomb, "wb", compresslevel=1) as fh:
        for _ in range(64):  # 64 MiB of payload in ~64 KiB of gzip
            fh.write(bytes(2**20))
    t0 = time.monotonic()
    with pytest.raises(DataError, match="larger than the 1,000 bytes"):
        store.verify_file(bomb, f, "mnist")
    assert time.monotonic() - t0 < 0.5
    assert store.largest_gz(f) < 2000  # nor downloaded past what a gzip of 1,000 bytes takes


@pytest.mark.parametrize("text", ["[1]", '"text"', "{bad json", "entry 5", "entry [1]"])
def test_a_verified_json_of_the_wrong_shape_is_forgotten(tmp_path, text):
    (tmp_path / "x").write_bytes(b"")
    if text.startswith("entry "):  # the file's own entry is not a table
        text = json.dumps({str((tmp_path / "x").resolve()): json.loads(text[6:])})
    (tmp_path / "verified.json").write_text(text)
    memo = store.Memo(tmp_path)
    f = registry.get("mnist").files[0]
    assert memo.known(tmp_path / "x", f) is None
    memo.remember(tmp_path / "x", f, "gz-sha256")
    memo.save()
    assert isinstance(json.loads((tmp_path / "verified.json").read_text()), dict)


SLOW_BUILDER = """
import sys, time, numpy as np
from mnistlab import datasets
real_save = np.save
def slow_save(*a, **k):  # a slow disk: the cache takes seconds to write
    print("writing", flush=True)
    real_save(*a, **k)
    time.sleep(0.5)
np.save = slow_save
datasets.load("mnist", data_dir=sys.argv[1])
"""


def test_loads_while_another_process_builds_the_array_cache_warn_nothing(mnist_dir, mnistlab_home):
    """Another process writing the .npy cache is work in progress, not a modified cache: a load
    meanwhile waits for it and then serves it, without a warning."""
    import os
    import subprocess
    import sys
    import warnings

    from mnistlab import datasets

    env = {**os.environ, "MNISTLAB_HOME": str(mnistlab_home)}
    builder = subprocess.Popen(
        [sys.executable, "-c", SLOW_BUILDER, str(mnist_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(2):  # once while it writes its first array, once while its second
                assert builder.stdout.readline() == "writing\n", builder.stderr.read()
                ds = datasets.load("mnist", data_dir=mnist_dir)
                assert ds.x_train.shape == (60000, 28, 28)
        _, err = builder.communicate(timeout=60)
        assert builder.returncode == 0, err
        assert [str(w.message) for w in seen] == [] and "warn" not in err.lower(), err
    finally:
        builder.kill()
