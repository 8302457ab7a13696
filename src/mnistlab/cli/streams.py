"""Standard output that may go away while a command runs.

``mnistlab train | head -1`` closes the pipe after one line; ``mnistlab train > /dev/full``
fails every write. What a command prints is a report on work whose result is on disk (a run
folder, a leaderboard, a page), so losing the report must not lose the work: the first failed
write sends fd 1 to /dev/null (the text still buffered with it), says so in one line on stderr,
and the command goes on to its end. A reader that went away (EPIPE) chose to stop reading, so
the exit status stays the command's own; any other failure (a full disk, an I/O error) lost
output that was asked for, so the command ends with status 2 (``failed``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator


class GuardedStdout(io.TextIOBase):
    """``sys.stdout`` whose write failures are caught once and reported, never raised."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.lost: OSError | None = None

    @property
    def encoding(self):  # click and rich write to a stream with the inner stream's encoding
        return self._inner.encoding

    @property
    def errors(self):
        return self._inner.errors

    def fileno(self) -> int:
        return self._inner.fileno()

    def isatty(self) -> bool:
        return self.lost is None and self._inner.isatty()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.lost is None:
            try:
                return self._inner.write(text)
            except OSError as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self._inner.flush()
            except OSError as exc:
                self._lose(exc)

    def failed(self) -> bool:
        """Output was lost by a failure other than the reader going away."""
        return self.lost is not None and self.lost.errno != errno.EPIPE

    def _lose(self, exc: OSError) -> None:
        self.lost = exc
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._inner.fileno())
            os.close(devnull)
            self._inner.flush()  # what was buffered for the lost stream goes to /dev/null
        if exc.errno == errno.EPIPE:
            text = "warning: standard output was closed by its reader; going on without printing"
        else:
            text = (
                f"error: cannot write to standard output ({exc.strerror or exc}); going on "
                "without printing, the exit status will be 2"
            )
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


@contextlib.contextmanager
def guarded_stdout() -> Iterator[GuardedStdout]:
    """``sys.stdout`` is a GuardedStdout for the block (flushed at its end), then itself again."""
    inner = sys.stdout
    guard = GuardedStdout(inner)
    sys.stdout = guard
    try:
        yield guard
    finally:
        guard.flush()  # what is still buffered must fail (or not) before the status is chosen
        sys.stdout = inner
