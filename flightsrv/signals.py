"""Ctrl-C and SIGTERM for ``flightsrv run``, seen whatever the process is busy with.

The signals are read from Python's wakeup file descriptor, which its C-level handler writes to
at once, whichever thread the signal lands on. (pyarrow's ``FlightServerBase.serve()`` must not
run: it replaces these handlers with its own, which shut the gRPC server down and re-raise the
signal only once every call in flight ended — never, while a query computes for hours.)
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import time
from types import TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Catches SIGINT and SIGTERM while in use; :meth:`wait` returns the next one's number."""

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._previous: dict[int, object] = {}
        self._previous_fd = -1

    def __enter__(self) -> StopSignals:
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            # A Python-level handler must be set for the C handler to catch the signal; what
            # counts is the byte it writes to the wakeup fd.
            self._previous[sig] = signal.signal(sig, lambda *_: None)
        return self

    def wait(self, timeout: float | None = None) -> int | None:
        """The next stop signal's number, or None after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([self._read], [], [], left)
            if not readable:
                return None
            with contextlib.suppress(BlockingIOError):
                for number in self._read.recv(64):
                    if number in STOP_SIGNALS:
                        return number

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._previous_fd)
        self._read.close()
        self._write.close()
