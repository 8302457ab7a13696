"""Fetch one file from a list of mirrors: resumable, verified, atomic, quick to give up offline.

A mirror fails (and the next is tried) when it answers an HTTP error, an HTML page instead of a
gzip file, a truncated body that cannot be resumed, or bytes that fail the caller's checksum.
Bytes arrive in ``<dest>.part``; an interrupted transfer is resumed with an HTTP Range request,
and only a verified file is renamed onto ``dest``. A host that cannot be reached at all is not
tried again in the same :class:`Session`, so a machine without network fails within seconds.

Base URLs come from the caller, the ``MNISTLAB_MIRRORS`` environment variable (comma-separated,
``{dataset}`` is replaced by the dataset name) or the registry; ``MNISTLAB_OFFLINE=1`` disables
downloads; ``MNISTLAB_TIMEOUT`` (seconds, default 3) bounds connecting and each read.

>>> s = Session(timeout=1.0)
>>> s.dead_hosts
set()
"""

from __future__ import annotations

import http.client
import math
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mnistlab._version import __version__
from mnistlab.errors import DataError, FileSystemError
from mnistlab.fsio import fs_error

DEFAULT_TIMEOUT = 3.0
_CHUNK = 1 << 16
_RETRIES = 3  # resumptions of an interrupted transfer on the same mirror
# A transfer may take DEADLINE_GRACE + size / MIN_RATE seconds in all (a mirror trickling a
# byte a second never times out a read); a mirror sending more than the file's known size (or
# MAX_UNKNOWN_SIZE when the registry does not know it) is stopped at one byte past it.
MIN_RATE = 32 * 1024  # bytes per second: a 256 kbit/s line
DEADLINE_GRACE = 30.0  # seconds: connecting, a slow start
MAX_UNKNOWN_SIZE = 64 * 2**20


class DownloadError(DataError):
    """No mirror delivered a verified copy; ``unreachable`` is True when no host answered at all."""

    def __init__(self, message: str, unreachable: bool = False, reason: str | None = None):
        super().__init__(message)
        self.unreachable = unreachable
        self.reason = reason or message


class _Unreachable(Exception):
    pass


class _BadMirror(Exception):
    pass


class _Interrupted(Exception):
    pass


def offline() -> bool:
    return os.environ.get("MNISTLAB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def mirrors(dataset: str, default: tuple[str, ...], override: list[str] | None = None) -> list[str]:
    """Base URLs to try in order: ``override``, else $MNISTLAB_MIRRORS, else ``default``."""
    if override is None and os.environ.get("MNISTLAB_MIRRORS"):
        override = [u.strip() for u in os.environ["MNISTLAB_MIRRORS"].split(",") if u.strip()]
    urls = list(override) if override is not None else list(default)
    for u in urls:  # "notaurl" would otherwise fail as "no network (cannot reach )"
        if urlsplit(u).scheme not in ("http", "https") or not urlsplit(u).netloc:
            raise DataError(f"mirror {u!r}: expected an http(s):// URL (check MNISTLAB_MIRRORS)")
    return [u.replace("{dataset}", dataset).rstrip("/") + "/" for u in urls]


def env_timeout() -> float:
    """``$MNISTLAB_TIMEOUT`` in seconds (default 3); not a positive number -> DataError."""
    text = os.environ.get("MNISTLAB_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):  # -1 or "abc" must not mean "wait forever"
        raise DataError(f"MNISTLAB_TIMEOUT: expected a number of seconds > 0, got {text!r}")
    return value


@dataclass
class Session:
    """State shared by the downloads of one fetch: timeouts, hosts known dead, progress hook."""

    timeout: float = field(default_factory=lambda: env_timeout())
    dead_hosts: set[str] = field(default_factory=set)
    why_dead: dict[str, str] = field(default_factory=dict)
    probed: bool = False
    # on_progress(file_name, bytes_done, bytes_total_or_None)
    on_progress: Callable[[str, int, int | None], None] | None = None

    def probe(self, urls: list[str]) -> None:
        """Try to connect to every host at once; mark the ones that fail dead.

        In parallel, so that a machine whose packets go nowhere (slow DNS, firewalled) gives up
        after about one timeout, not one per host and file. Skipped behind a proxy, where the
        proxy, not the host, is what gets connected to.
        """
        if self.probed or urllib.request.getproxies():
            return
        self.probed = True
        hosts = {urlsplit(u).netloc: urlsplit(u) for u in urls}
        results: dict[str, str | None] = {}

        def attempt(netloc: str) -> None:
            parts = hosts[netloc]
            port = parts.port or (443 if parts.scheme == "https" else 80)
            try:
                socket.create_connection((parts.hostname, port), timeout=self.timeout).close()
                results[netloc] = None
            except OSError as exc:
                results[netloc] = f"cannot connect ({exc})"

        threads = [threading.Thread(target=attempt, args=(h,), daemon=True) for h in hosts]
        for t in threads:
            t.start()
        deadline = time.monotonic() + self.timeout + 1.0  # DNS may ignore socket timeouts
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for netloc in hosts:
            reason = results.get(netloc, f"cannot connect (no answer within {self.timeout:g} s)")
            if reason is not None:
                self.dead_hosts.add(netloc)
                self.why_dead[netloc] = reason

    def fetch(
        self,
        name: str,
        urls: list[str],
        dest: Path,
        check: Callable[[Path], None],
        size: int | None = None,
        limit: int | None = None,
    ) -> str:
        """Download ``name`` from the first good base URL into ``dest``; return the URL used.

        ``check(path)`` raises DataError when the bytes are wrong (checksum); then the mirror
        counts as failed and nothing is left behind. ``limit``: the most bytes an acceptable
        file can have (default ``size``, else ``MAX_UNKNOWN_SIZE``); ``size``: the bytes
        expected, which with ``MIN_RATE`` set how long the transfer may take.
        """
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        limit = limit or size or MAX_UNKNOWN_SIZE
        failures: list[str] = []
        for base in urls:
            url = base + name
            host = urlsplit(url).netloc
            if host in self.dead_hosts:
                failures.append(f"{url}: {self.why_dead.get(host, 'host unreachable')}")
                continue
            from_scratch_retry = True
            attempt = 0
            deadline = time.monotonic() + DEADLINE_GRACE + (size or limit) / MIN_RATE
            while attempt < _RETRIES:
                attempt += 1
                resumed = part.exists() and part.stat().st_size > 0
                try:
                    self._get(url, part, name, limit, deadline)
                except FileSystemError:  # a full disk: no other mirror helps; keep no part
                    part.unlink(missing_ok=True)
                    raise
                except _Unreachable as exc:
                    self.dead_hosts.add(host)
                    self.why_dead[host] = str(exc)
                    failures.append(f"{url}: {exc}")
                    break
                except _BadMirror as exc:
                    part.unlink(missing_ok=True)
                    failures.append(f"{url}: {exc}")
                    break
                except _Interrupted as exc:  # keep the .part: the next try resumes it
                    failures.append(f"{url}: {exc}")
                    continue
                try:
                    check(part)
                except DataError as exc:
                    part.unlink(missing_ok=True)
                    if resumed and from_scratch_retry:  # the kept prefix may be the bad part
                        from_scratch_retry = False
                        attempt -= 1
                        continue
                    failures.append(f"{url}: {exc}")
                    break
                with open(part, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(part, dest)
                return url
        unreachable = bool(urls) and all(urlsplit(u).netloc in self.dead_hosts for u in urls)
        if not urls:
            failures.append("no download URLs")
        why = "; ".join(_one_line(f) for f in failures)
        raise DownloadError(f"could not download {name}: {why}", unreachable)

    def _get(self, url: str, part: Path, name: str, limit: int, deadline: float) -> None:
        start = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": f"mnistlab/{__version__}", "Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        req = urllib.request.Request(url, headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)  # noqa: S310 (http/https only)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start:  # our .part is as long as theirs, or longer: redo
                part.unlink(missing_ok=True)
                raise _Interrupted(f"HTTP 416 for a resume at byte {start}; restarting") from None
            raise _BadMirror(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise _Unreachable(f"cannot connect ({exc.reason})") from None
        except TimeoutError as exc:
            raise _Unreachable(
                f"cannot connect (timed out after {self.timeout:g} s: {exc})"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Unreachable(f"cannot connect ({exc})") from None
        with resp:
            ctype = resp.headers.get("Content-Type", "")
            if "html" in ctype.lower():
                raise _BadMirror(f"served an HTML page ({ctype}), not the file")
            length = resp.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            if resp.status == 206:
                crange = resp.headers.get("Content-Range", "")
                if not crange.startswith(f"bytes {start}-"):
                    part.unlink(missing_ok=True)
                    raise _Interrupted(f"bad Content-Range {crange!r} for a resume at {start}")
                mode = "ab"
            else:
                start, mode = 0, "wb"
            total = start + length if length is not None else None
            if total is not None and total > limit:
                raise _BadMirror(f"announces {total:,} bytes; {name} has {limit:,}")
            done = self._receive(resp, part, mode, name, (start, total, limit), deadline)
            if total is not None and done < total:
                raise _Interrupted(f"truncated body: {done:,} of {total:,} bytes")

    def _receive(self, resp, part: Path, mode: str, name: str, sizes, deadline: float) -> int:
        """Append the body to ``part`` until it ends, passes ``limit`` or the deadline; return
        the bytes now in ``part``. A failed write (full disk) is the FileSystemError."""
        start, total, limit = sizes
        done, began = start, time.monotonic()
        try:
            out = open(part, mode)
        except OSError as exc:
            raise fs_error(exc, part) from None
        with out:
            try:
                # read1: what one recv gives, so a trickling mirror meets the deadline check
                while chunk := resp.read1(min(_CHUNK, limit + 1 - done)):
                    if done == 0 and not chunk.startswith(b"\x1f\x8b"):
                        kind = "an HTML page" if chunk.lstrip()[:1] == b"<" else "not gzip data"
                        raise _BadMirror(f"served {kind}, not a .gz file")
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise fs_error(exc, part) from None
                    done += len(chunk)
                    if done > limit:
                        raise _BadMirror(f"sent more than the {limit:,} bytes of {name}")
                    if time.monotonic() > deadline:
                        raise _BadMirror(
                            f"too slow: {done - start:,} bytes in {time.monotonic() - began:.0f} "
                            f"s (the deadline allows {MIN_RATE // 1024} KiB/s)"
                        )
                    if self.on_progress:
                        self.on_progress(name, done, total)
            except (TimeoutError, ConnectionError, http.client.IncompleteRead) as exc:
                raise _Interrupted(f"transfer interrupted after {done:,} bytes ({exc})") from None
        return done


def _one_line(text: str) -> str:
    r"""Messages from urllib may span lines (a redirect loop's does); errors here are one line.

    >>> _one_line("HTTP 308 ... an infinite loop.\nThe last 30x error message was:\nFound")
    'HTTP 308 ... an infinite loop. The last 30x error message was: Found'
    """
    return " ".join(str(text).split())
