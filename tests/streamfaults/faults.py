"""Random and forced faults: seeded so a failing run can be replayed, counted so tests can
compare what was injected with what the runtime reports."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, fields, replace

STREAMS = "*"  # rates under this key apply to every DynamoDB Streams operation

# Error kinds in the order the single uniform draw is matched against them.
ERROR_KINDS = (
    "limit_exceeded",
    "throttling",
    "throughput_exceeded",
    "http_500",
    "http_503",
    "reset",
    "empty_page",
)
ERROR_CODES = {
    "limit_exceeded": "LimitExceededException",
    "throttling": "ThrottlingException",
    "throughput_exceeded": "ProvisionedThroughputExceededException",
    "http_500": "InternalServerError",
    "http_503": "ServiceUnavailable",
}


@dataclass(frozen=True)
class FaultRates:
    """Per-request probabilities; the error kinds are exclusive, latency is drawn apart."""

    limit_exceeded: float = 0.0
    throttling: float = 0.0
    throughput_exceeded: float = 0.0
    http_500: float = 0.0
    http_503: float = 0.0
    reset: float = 0.0
    empty_page: float = 0.0  # GetRecords only: an empty page that keeps the position
    latency: float = 0.0
    latency_seconds: float = 0.05


@dataclass(frozen=True)
class Decision:
    """What to do to one request before (or instead of) serving it."""

    delay: float = 0.0
    kind: str | None = None  # one of ERROR_KINDS, or "forced"
    code: str | None = None  # error code for error kinds and forced errors


@dataclass
class _Forced:
    op: str
    code: str
    table: str | None
    remaining: int | None
    message: str


class FaultInjector:
    """Decides, per request, which fault (if any) to inject, and counts them by kind."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rates: dict[str, FaultRates] = {}
        self._forced: list[_Forced] = []
        self.counts: Counter[str] = Counter()
        self.counts_by_op: Counter[tuple[str, str]] = Counter()

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng = random.Random(seed)

    def set_rates(self, op: str = STREAMS, **rates: float) -> None:
        """Update the rates of `op` (an operation name such as "GetRecords" or "Scan", or
        STREAMS for every streams operation without its own entry)."""
        known = {f.name for f in fields(FaultRates)}
        unknown = set(rates) - known
        if unknown:
            raise TypeError(f"unknown fault rates: {sorted(unknown)}")
        with self._lock:
            merged = replace(self._rates.get(op, FaultRates()), **rates)
            errors = sum(getattr(merged, k) for k in ERROR_KINDS)
            if errors > 1.0:
                raise ValueError(f"error rates of {op} add up to {errors} > 1")
            self._rates[op] = merged

    def force_error(
        self,
        op: str,
        code: str,
        table: str | None = None,
        times: int | None = None,
        message: str = "",
    ) -> None:
        """Answer `op` (optionally only for `table`) with `code`, `times` times or until cleared."""
        with self._lock:
            self._forced.append(_Forced(op, code, table, times, message))

    def clear(self) -> None:
        """Drop every rate and forced error (counters are kept; see reset_counts)."""
        with self._lock:
            self._rates.clear()
            self._forced.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.counts_by_op.clear()

    def count(self, op: str, kind: str) -> None:
        with self._lock:
            self._count(op, kind)

    def _count(self, op: str, kind: str) -> None:
        self.counts[kind] += 1
        self.counts_by_op[(op, kind)] += 1

    def decide(self, op: str, table: str | None, streams: bool) -> tuple[Decision, str]:
        """The fault for one request and, for forced errors, the message to send."""
        with self._lock:
            for forced in self._forced:
                if forced.op not in (op, STREAMS if streams else None):
                    continue
                if forced.table is not None and forced.table != table:
                    continue
                if forced.remaining is not None:
                    forced.remaining -= 1
                    if forced.remaining <= 0:
                        self._forced.remove(forced)
                self._count(op, f"forced:{forced.code}")
                return Decision(kind="forced", code=forced.code), forced.message
            rates = self._rates.get(op) or (self._rates.get(STREAMS) if streams else None)
            if rates is None:
                return Decision(), ""
            delay = 0.0
            if rates.latency and self._rng.random() < rates.latency:
                delay = rates.latency_seconds
                self._count(op, "latency")
            draw, edge = self._rng.random(), 0.0
            for kind in ERROR_KINDS:
                rate = getattr(rates, kind)
                if kind == "empty_page" and op != "GetRecords":
                    continue
                edge += rate
                if rate and draw < edge:
                    if kind != "empty_page":  # counted when actually served
                        self._count(op, kind)
                    return Decision(delay, kind, ERROR_CODES.get(kind)), ""
            return Decision(delay), ""
