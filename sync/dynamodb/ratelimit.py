"""The read rate of a bootstrap Scan: one token bucket shared by every segment, slowed down
by throttling answers (AIMD).

The bucket is spent in the limit's unit: items, or consumed read capacity units when the
limit is a fraction of the table's provisioned read capacity. A page is charged after it
arrives (its cost is known only then), so the bucket may go negative; the next request of
any segment waits until it is back to zero. A throttling answer halves the current rate
(at most once per ``decrease_gap_s``, since every segment sees the same throttling at
once); each answered page then raises it again, linearly, back to the limit within
``recovery_s``. With no limit the rate is unbounded until a throttle: the rate measured
over the last seconds is halved, and the cap is lifted again once the rate has climbed back
to where the throttle happened.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Unit = Literal["items", "capacity"]

BURST_S = 1.0  # a full bucket holds one second of the rate
RECOVERY_S = 10.0  # from a halved rate back to the limit, with no further throttle
DECREASE_GAP_S = 1.0  # one decrease per throttling episode, whatever the segment count
MEASURE_WINDOW_S = 2.0  # the rate halved on a throttle with no limit
MAX_WAIT_SLICE_S = 0.25  # a waiting request checks the stop event at least this often
MAX_DEBT_S = 30.0  # one huge page never makes the next request wait longer than this
MIN_RATE_PER_S = 1.0
PAGE_S = 0.5  # with a limit, a segment's page is at most this long a share of it


@dataclass(frozen=True)
class RateSnapshot:
    """What the limiter has done so far: totals charged, throttles, the current rate."""

    charged: float
    throttles: int
    rate_per_s: float | None


class ReadRateLimiter:
    """A token bucket with AIMD, shared by the segments of one Scan (thread-safe).

    Args:
        limit_per_s: the ceiling, in ``unit`` per second; None for no ceiling (throttles
            still slow the scan down for a while).
        unit: what :meth:`charge` is given: ``items`` or consumed read ``capacity`` units.
        clock: monotonic seconds (a fake one in unit tests).
    """

    def __init__(
        self,
        limit_per_s: float | None,
        unit: Unit = "items",
        *,
        burst_s: float = BURST_S,
        recovery_s: float = RECOVERY_S,
        decrease_gap_s: float = DECREASE_GAP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit_per_s is not None and limit_per_s <= 0:
            raise ValueError(f"limit_per_s must be above 0, got {limit_per_s}")
        self.limit_per_s = limit_per_s
        self.unit = unit
        self._burst_s = burst_s
        self._recovery_s = recovery_s
        self._decrease_gap_s = decrease_gap_s
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._started = now
        self._rate: float | None = limit_per_s
        self._ceiling: float | None = limit_per_s  # where additive increase stops
        self._tokens = (limit_per_s or 0.0) * burst_s
        self._refilled = now
        self._increased = now
        self._last_decrease = float("-inf")
        self._recent: deque[tuple[float, float]] = deque()
        self._charged = 0.0
        self._throttles = 0

    @property
    def rate_per_s(self) -> float | None:
        """The current rate (None: unbounded)."""
        with self._lock:
            return self._rate

    def snapshot(self) -> RateSnapshot:
        with self._lock:
            return RateSnapshot(self._charged, self._throttles, self._rate)

    def page_items(self, segments: int, items_per_unit: float = 1.0) -> int | None:
        """The most items one segment should ask for in a page: about ``PAGE_S`` of the
        limit shared by the segments (None with no limit). ``items_per_unit`` converts a
        capacity limit (items per consumed unit, as the last pages showed)."""
        if self.limit_per_s is None:
            return None
        return max(1, int(self.limit_per_s * PAGE_S * items_per_unit / max(1, segments)))

    def delay_s(self) -> float:
        """How long the next request must wait for the bucket to be back at zero."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            if self._rate is None or self._tokens >= 0:
                return 0.0
            return -self._tokens / self._rate

    def acquire(self, stop: threading.Event, cancelled: threading.Event | None = None) -> bool:
        """Wait until a request may be sent; False if ``stop`` (or ``cancelled``) was set
        meanwhile. Either is seen within ``MAX_WAIT_SLICE_S``."""
        while True:
            if cancelled is not None and cancelled.is_set():
                return False
            delay = self.delay_s()
            if delay <= 0:
                return not stop.is_set()
            if stop.wait(min(delay, MAX_WAIT_SLICE_S)):
                return False

    def charge(self, amount: float) -> None:
        """Spend what one answered request cost (items, or consumed capacity units); an
        answer is also a success, so the rate grows back towards the ceiling."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._increase(now)
            self._charged += amount
            self._recent.append((now, amount))
            self._trim(now)
            if self._rate is not None:
                self._tokens = max(self._tokens - amount, -self._rate * MAX_DEBT_S)

    def throttled(self) -> None:
        """A throttling answer: halve the current rate (once per ``decrease_gap_s``)."""
        with self._lock:
            now = self._clock()
            self._throttles += 1
            if now - self._last_decrease < self._decrease_gap_s:
                return
            self._refill(now)
            current = self._rate if self._rate is not None else self._measured(now)
            if current is None:
                return  # nothing answered yet to measure: the retry backoff alone slows down
            if self.limit_per_s is None:
                self._ceiling = current  # the cap is lifted once back there
            self._rate = max(MIN_RATE_PER_S, current / 2)
            self._tokens = min(self._tokens, 0.0)
            self._last_decrease = now
            self._increased = now

    def _refill(self, now: float) -> None:
        if self._rate is not None:
            full = self._rate * self._burst_s
            self._tokens = min(full, self._tokens + self._rate * (now - self._refilled))
        self._refilled = now

    def _increase(self, now: float) -> None:
        if self._rate is None or self._ceiling is None:
            self._increased = now
            return
        step = self._ceiling / self._recovery_s * (now - self._increased)
        self._increased = now
        if self._rate + step < self._ceiling:
            self._rate += step
        elif self.limit_per_s is None:
            self._rate = self._ceiling = None  # recovered: unbounded again
        else:
            self._rate = self._ceiling

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - MEASURE_WINDOW_S:
            self._recent.popleft()

    def _measured(self, now: float) -> float | None:
        self._trim(now)
        if not self._recent:
            return None
        span = min(MEASURE_WINDOW_S, max(0.1, now - self._started))
        return sum(amount for _, amount in self._recent) / span
