"""The HTTP/1.1 connection handling of ``mnistlab serve``: uvicorn's h11 protocol with a deadline
on every request head and the API's JSON error for requests that cannot be parsed.

uvicorn closes an idle keep-alive connection, but a client that sends a request head a byte at
a time (or opens a connection and says nothing) holds it forever: a few hundred such clients
take every file descriptor. Here each request head must be complete within ``HEAD_TIMEOUT``
seconds of the connection opening (or of the previous response), else the connection gets a
408 and is closed. A request line, header or Content-Length that does not parse gets uvicorn's
400 as ``{"error": "..."}``, the shape of every other error of the API.

uvicorn loads the class by name: ``uvicorn.run(app, http="mnistlab.web.protocol:GuardedH11")``.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from mnistlab.web.http import json_bytes

HEAD_TIMEOUT = 10.0  # seconds for a request's line and headers to arrive
_REASONS = {400: b"Bad Request", 408: b"Request Timeout"}


class GuardedH11(H11Protocol):
    head_timeout = HEAD_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._wait_for_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is in: the request runs
            self._stop_waiting()
        elif self._head_timer is None and not self.transport.is_closing():
            self._wait_for_head()  # a new request began after a body read to its end

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_head()  # the next request on this connection, if any

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._refuse(
            400,
            "malformed HTTP request: its request line, a header or the "
            "Content-Length cannot be parsed",
        )

    def _wait_for_head(self) -> None:
        self._stop_waiting()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._refuse(
                408, f"the request line and headers did not arrive within {self.head_timeout:g} s"
            )

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with the API's JSON error and close the connection."""
        body = json_bytes({"error": message})
        head = (
            f"HTTP/1.1 {status} ".encode() + _REASONS[status] + b"\r\n"
            b"content-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n".encode()
            + b"connection: close\r\n\r\n"
        )
        self._stop_waiting()
        self._unset_keepalive_if_required()
        self.transport.write(head + body)
        self.transport.close()
