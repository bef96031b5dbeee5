"""Exponential backoff with full jitter and a cap, for transient errors only."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sync.errors import SyncError

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.1
    cap_s: float = 10.0

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return random.uniform(0, min(self.cap_s, self.base_s * (2**attempt)))


class Stopped(Exception):
    """The stop event was set while waiting to retry."""


def retrying(
    call: Callable[[], T],
    stop: threading.Event,
    on_transient: Callable[[SyncError], None],
    backoff: Backoff = Backoff(),
) -> T:
    """Run ``call`` until it succeeds or raises a non-retriable error.

    Every retriable failure is reported to ``on_transient`` (the metrics count it) before the
    wait. Errors that ask for a fresh iterator are raised at once for the caller to handle.
    """
    attempt = 0
    while True:
        try:
            return call()
        except SyncError as e:
            if not e.retriable or e.refresh_iterator:
                raise
            on_transient(e)
            if stop.wait(backoff.delay(attempt)):
                raise Stopped from e
            attempt += 1
