"""Exponential backoff with full jitter and a cap, for transient errors only."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sync.errors import RetriesExhausted, SyncError

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.1
    cap_s: float = 10.0

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return random.uniform(0, min(self.cap_s, self.base_s * (2**attempt)))


@dataclass(frozen=True)
class RetryBound:
    """When one request stops being retried: after ``max_retries`` retries, or once its first
    attempt is ``max_elapsed_s`` old, whichever comes first (None: no such limit).

    ``hint`` ends the error's message: which setting to raise to wait longer.
    """

    max_retries: int | None = None
    max_elapsed_s: float | None = None
    hint: str = ""

    def exceeded(self, retries: int, elapsed_s: float) -> bool:
        return (self.max_retries is not None and retries >= self.max_retries) or (
            self.max_elapsed_s is not None and elapsed_s >= self.max_elapsed_s
        )


UNBOUNDED = RetryBound()


class Stopped(Exception):
    """The stop event was set while waiting to retry."""


def retrying(
    call: Callable[[], T],
    stop: threading.Event,
    on_transient: Callable[[SyncError], None],
    backoff: Backoff = Backoff(),
    bound: RetryBound = UNBOUNDED,
) -> T:
    """Run ``call`` until it succeeds or raises a non-retriable error.

    Every retriable failure is reported to ``on_transient`` (the metrics count it) before the
    wait. Errors that ask for a fresh iterator are raised at once for the caller to handle.

    Raises:
        RetriesExhausted: the call still fails once ``bound`` is reached (a permanent error,
            so the dataset shows it instead of spinning on one request).
    """
    attempt = 0
    first = time.monotonic()
    while True:
        try:
            return call()
        except SyncError as e:
            if not e.retriable or e.refresh_iterator:
                raise
            elapsed = time.monotonic() - first
            if bound.exceeded(attempt, elapsed):
                hint = f"; {bound.hint}" if bound.hint else ""
                raise RetriesExhausted(
                    f"{e} (gave up after {attempt + 1} attempts in {elapsed:.1f} s{hint})"
                ) from e
            on_transient(e)
            if stop.wait(backoff.delay(attempt)):
                raise Stopped from e
            attempt += 1
