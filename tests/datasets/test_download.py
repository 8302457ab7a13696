"""Downloads against a real HTTP server on 127.0.0.1: bad mirrors, checksums, resume, locking."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mnistlab import datasets
from mnistlab.datasets import download, registry, store
from mnistlab.errors import DataError

SPEC = registry.get("mnist")


class Mirror:
    """A loopback HTTP server whose first path segment picks a behaviour:

    /good/F serves F (honours Range), /404/F, /html/F (an HTML page with status 200),
    /htmlbody/F (HTML bytes labelled application/octet-stream), /trunc/F (announces the full
    length, sends half, ignores Range), /flaky/F (truncates the first request only),
    /wrong/F (serves the bytes of ``wrong[F]``), /slow/F (like good, in paced chunks).
    Every request is recorded as (behaviour, file, Range header).
    """

    def __init__(self, files: dict[str, bytes], wrong: dict[str, bytes] | None = None):
        self.files, self.wrong = files, wrong or {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.flaky_seen: set[str] = set()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                _, mode, name = self.path.split("/", 2)
                rng = self.headers.get("Range")
                mirror.requests.append((mode, name, rng))
                mirror.serve(self, mode, name, rng)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def base(self, mode: str) -> str:
        return f"{self.url}/{mode}/"

    def gets(self, name: str) -> list:
        return [r for r in self.requests if r[1] == name]

    def serve(self, h, mode, name, rng):
        if mode == "404" or name not in self.files:
            h.send_error(404)
            return
        if mode == "html":
            body = b"<!DOCTYPE html><html><body>Moved to our new site</body></html>"
            h.send_response(200)
            h.send_header("Content-Type", "text/html; charset=utf-8")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        data = self.wrong[name] if mode == "wrong" else self.files[name]
        if mode == "htmlbody":
            data = b"<html>" + b" " * 100 + b"</html>"
        truncate = mode == "trunc" or (mode == "flaky" and name not in self.flaky_seen)
        if mode == "flaky":
            self.flaky_seen.add(name)
        start = int(rng.split("=")[1].rstrip("-")) if rng and not truncate else 0
        if start >= len(data):
            h.send_error(416)
            return
        h.send_response(206 if start else 200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        body = data[start:]
        if truncate:
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        if mode == "slow":  # paced, so that a concurrent process surely overlaps
            step = len(body) // 10 + 1
            for i in range(0, len(body), step):
                h.wfile.write(body[i : i + step])
                time.sleep(0.03)
        else:
            h.wfile.write(body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def mnist_bytes(request) -> dict[str, bytes]:
    d = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
    if not (d / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"official MNIST files not found in {d}")
    return {f.name: (d / f.name).read_bytes() for f in SPEC.files}


@pytest.fixture(scope="module")
def wrong_bytes(mnist_bytes) -> dict[str, bytes]:
    """Valid gzip files whose payload differs from the official one in one byte."""
    out = {}
    for name, data in mnist_bytes.items():
        payload = bytearray(gzip.decompress(data))
        payload[len(payload) // 2] ^= 1
        out[name] = gzip.compress(bytes(payload), compresslevel=1)
    return out


@pytest.fixture
def mirror(mnist_bytes, wrong_bytes):
    m = Mirror(mnist_bytes, wrong_bytes)
    yield m
    m.close()


def _check(name):
    f = next(f for f in SPEC.files if f.name == name)
    return lambda p: store.verify_file(p, f, "mnist")


NAME = "t10k-images-idx3-ubyte.gz"  # 1.6 MB: big enough for interrupted transfers


@pytest.mark.parametrize("bad", ["404", "html", "htmlbody", "trunc"])
def test_bad_first_mirror_then_second_serves(mirror, tmp_path, bad):
    dest = tmp_path / NAME
    used = download.Session().fetch(
        NAME, [mirror.base(bad), mirror.base("good")], dest, _check(NAME)
    )
    assert used == mirror.base("good") + NAME
    assert dest.read_bytes() == mirror.files[NAME]
    assert not (tmp_path / (NAME + ".part")).exists()
    assert [r[0] for r in mirror.gets(NAME)][-1] == "good"
    if bad == "trunc":  # the half already fetched was resumed from the good mirror
        assert mirror.gets(NAME)[-1][2] == f"bytes={len(mirror.files[NAME]) // 2}-"


def test_wrong_checksum_is_rejected_and_leaves_nothing(mirror, mnistlab_home):
    with pytest.raises(
        DataError,
        match=r"download failed: could not download "
        r"train-images-idx3-ubyte\.gz: .*/wrong/train-images-idx3-ubyte\.gz: .*"
        r"checksum mismatch",
    ):
        datasets.fetch("mnist", mirrors=[mirror.base("wrong")], quiet=True)
    cache = mnistlab_home / "datasets" / "mnist"
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) in (
        [],
        ["verified.json"],
    )


def test_interrupted_download_resumes_with_range(mirror, tmp_path):
    dest = tmp_path / NAME
    download.Session().fetch(NAME, [mirror.base("flaky")], dest, _check(NAME))
    size = len(mirror.files[NAME])
    assert [r[2] for r in mirror.gets(NAME)] == [None, f"bytes={size // 2}-"]
    assert dest.read_bytes() == mirror.files[NAME]


def test_leftover_part_from_a_killed_process_is_resumed(mirror, tmp_path):
    dest = tmp_path / NAME
    (tmp_path / (NAME + ".part")).write_bytes(mirror.files[NAME][:1000])
    download.Session().fetch(NAME, [mirror.base("good")], dest, _check(NAME))
    assert mirror.gets(NAME) == [("good", NAME, "bytes=1000-")]
    assert dest.read_bytes() == mirror.files[NAME]


def test_corrupt_part_is_discarded_and_downloaded_again(mirror, tmp_path):
    dest = tmp_path / NAME
    (tmp_path / (NAME + ".part")).write_bytes(b"\x1f\x8b" + b"junk" * 100)
    download.Session().fetch(NAME, [mirror.base("good")], dest, _check(NAME))
    assert [r[2] for r in mirror.gets(NAME)] == ["bytes=402-", None]
    assert dest.read_bytes() == mirror.files[NAME]


def test_full_fetch_then_load_from_cache(mirror, mnistlab_home):
    folder = datasets.fetch("mnist", mirrors=[mirror.base("404"), mirror.base("good")], quiet=True)
    assert folder == mnistlab_home / "datasets" / "mnist"
    assert sorted(p.name for p in folder.glob("*.gz")) == sorted(f.name for f in SPEC.files)
    n = len(mirror.requests)
    datasets.fetch("mnist", mirrors=[mirror.base("good")], quiet=True)  # nothing to do
    assert len(mirror.requests) == n
    ds = datasets.load("mnist", download=False)
    assert ds.source.startswith("cache: ") and len(ds.y_train) == 60000


def test_fetch_replaces_a_corrupt_cached_file(mirror, mnistlab_home):
    folder = datasets.fetch("mnist", mirrors=[mirror.base("good")], quiet=True)
    bad = folder / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(mirror.wrong[bad.name])
    with pytest.raises(DataError, match="checksum mismatch"):
        datasets.load("mnist", download=False)
    datasets.fetch("mnist", mirrors=[mirror.base("good")], quiet=True)
    assert bad.read_bytes() == mirror.files[bad.name]


def test_unreachable_hosts_fail_fast_with_where_to_put_files(mnistlab_home):
    t0 = time.monotonic()
    with pytest.raises(DataError) as err:
        datasets.fetch("mnist", mirrors=["http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/"])
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "no network (cannot reach 127.0.0.1:9)" in msg
    assert str(mnistlab_home / "datasets" / "mnist") in msg and "\n" not in msg


def test_mirrors_env_override_and_dataset_placeholder(monkeypatch):
    monkeypatch.setenv("MNISTLAB_MIRRORS", "http://127.0.0.1:1/{dataset}, http://127.0.0.1:2/x/")
    assert download.mirrors("kmnist", ("https://a/",)) == [
        "http://127.0.0.1:1/kmnist/",
        "http://127.0.0.1:2/x/",
    ]
    assert download.mirrors("kmnist", ("https://a/",), ["http://h/"]) == ["http://h/"]
    monkeypatch.delenv("MNISTLAB_MIRRORS")
    assert download.mirrors("mnist", SPEC.urls) == list(SPEC.urls)


def test_a_mirror_that_is_not_an_http_url_is_named(monkeypatch):
    monkeypatch.setenv("MNISTLAB_MIRRORS", "notaurl")  # was "no network (cannot reach )"
    with pytest.raises(DataError, match="mirror 'notaurl': expected an http\\(s\\):// URL"):
        download.mirrors("mnist", SPEC.urls)


def test_two_processes_fetching_at_once_end_with_one_verified_copy(mirror, mnistlab_home):
    code = (
        "import sys; from mnistlab import datasets; "
        "print(datasets.fetch('mnist', mirrors=[sys.argv[1]], quiet=True))"
    )
    env = {**os.environ, "MNISTLAB_HOME": str(mnistlab_home)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, mirror.base("slow")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folder = mnistlab_home / "datasets" / "mnist"
    assert {o[0].strip() for o in outs} == {str(folder)}
    for f in SPEC.files:  # each file went over the wire exactly once
        assert len(mirror.gets(f.name)) == 1, mirror.gets(f.name)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(
        [f.name for f in SPEC.files] + ["verified.json"]
    )
    assert set(datasets.verify("mnist").values()) == {"gz-sha256", "absent"}


def test_blackholed_hosts_are_given_up_together_within_one_timeout(mnistlab_home, monkeypatch):
    # Every connection attempt hangs (as behind a firewall that drops packets): the parallel
    # probe must give up on all hosts after about one timeout, not one per host and file.
    hang = threading.Event()

    def never_connects(*args, **kwargs):
        hang.wait(30)
        raise OSError("released")

    monkeypatch.setattr(download.socket, "create_connection", never_connects)
    monkeypatch.setenv("MNISTLAB_TIMEOUT", "0.5")
    urls = ["http://127.0.0.1:9/a/", "http://127.0.0.2:9/b/", "http://127.0.0.3:9/c/"]
    t0 = time.monotonic()
    try:
        with pytest.raises(
            DataError,
            match=r"download failed: no network \(cannot reach "
            r"127\.0\.0\.1:9, 127\.0\.0\.2:9, 127\.0\.0\.3:9\)",
        ):
            datasets.fetch("mnist", mirrors=urls, quiet=True)
        assert time.monotonic() - t0 < 4
    finally:
        hang.set()


def test_unresolvable_host_counts_as_unreachable(mnistlab_home):
    with pytest.raises(DataError, match=r"no network \(cannot reach mirror\.invalid\)"):
        datasets.fetch("mnist", mirrors=["http://mirror.invalid/"], quiet=True)


def test_part_longer_than_the_file_restarts_from_scratch(mirror, tmp_path):
    data = mirror.files[NAME]
    (tmp_path / (NAME + ".part")).write_bytes(data + b"extra")
    download.Session().fetch(NAME, [mirror.base("good")], tmp_path / NAME, _check(NAME))
    assert [r[2] for r in mirror.gets(NAME)] == [f"bytes={len(data) + 5}-", None]
    assert (tmp_path / NAME).read_bytes() == data


def test_load_downloads_through_mirrors_env_when_nothing_is_local(
    mirror, mnistlab_home, monkeypatch
):
    monkeypatch.setenv("MNISTLAB_MIRRORS", f"{mirror.url}/404/,{mirror.url}/good/")
    ds = datasets.load()  # the default: full MNIST, downloaded, no fallback note
    assert ds.name == "mnist" and ds.note is None and len(ds.y_test) == 10000
    assert ds.source == f"download: {mnistlab_home / 'datasets' / 'mnist'}"
    assert datasets.load().source.startswith("cache: ")


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan", "inf"])
def test_bad_mnistlab_timeout_is_a_one_line_data_error(monkeypatch, value):
    monkeypatch.setenv("MNISTLAB_TIMEOUT", value)  # was a ValueError traceback for "abc"
    with pytest.raises(
        DataError, match=f"MNISTLAB_TIMEOUT: expected a number of seconds > 0, got '{value}'"
    ):
        download.Session()
    monkeypatch.setenv("MNISTLAB_TIMEOUT", " 0.5 ")
    assert download.Session().timeout == 0.5
    monkeypatch.setenv("MNISTLAB_TIMEOUT", "")
    assert download.Session().timeout == download.DEFAULT_TIMEOUT
