"""serve's connections: a request head that never completes is closed with a 408, and requests
uvicorn cannot parse get the API's JSON error, not text/plain (raw sockets against a live
server)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest


@pytest.fixture
def server(tmp_path, fake_run, monkeypatch):
    """A live server on a loopback port, with request heads due within 0.5 s."""
    import uvicorn

    from mnistlab.web import protocol
    from mnistlab.web.app import create_app
    from mnistlab.web.server import PROTOCOL, free_port

    monkeypatch.setattr(protocol.GuardedH11, "head_timeout", 0.5)
    port = free_port()
    config = uvicorn.Config(
        create_app(fake_run(tmp_path / "r")), port=port, http=PROTOCOL, log_level="error"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    yield port
    srv.should_exit = True
    thread.join(10)


def _answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one response read to the connection's end."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_slow_request_heads_are_closed_with_a_408(server):
    socks = []
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", server), timeout=10)
        if i % 2:  # half send part of a head and stall, half send nothing at all
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Ty")
        socks.append(s)
    t0 = time.monotonic()
    for s in socks:
        status, headers, body = _answer(s)
        assert status == 408 and headers["content-type"] == "application/json"
        assert "did not arrive within 0.5 s" in json.loads(body)["error"]
        s.close()
    assert time.monotonic() - t0 < 8


def test_a_request_after_a_response_on_the_same_connection_still_has_its_deadline(server):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        s.sendall(b"GET /health HTTP/1.1\r\nHo")  # the next head, stalled
        status, _, body = _answer(s)
    assert status == 408 and json.loads(body)["error"]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ],
    ids=["request-line", "content-length", "header"],
)
def test_unparsable_requests_get_the_json_error(server, request_bytes):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
        s.sendall(request_bytes)
        status, headers, body = _answer(s)
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"].startswith("malformed HTTP request")
