"""Parallel Scan (Segment / TotalSegments) of a table, pages parsed in bulk to Arrow."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Set
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa

from sync.dynamodb.client import DynamoDBClients
from sync.dynamodb.errors import classify
from sync.dynamodb.fanin import FanIn
from sync.dynamodb.ratelimit import ReadRateLimiter
from sync.dynamodb.rawparse import ScanPage, parse_scan
from sync.errors import SyncError
from sync.retry import UNBOUNDED, Backoff, RetryBound, Stopped, retrying

ITEMS_PER_AUTO_SEGMENT = 20_000
MAX_AUTO_SEGMENTS = 16
# Scan ``Limit`` (items per page). AWS caps a page at 1 MB anyway; an explicit limit keeps
# one page from outlasting the read timeout on a slow server (moto takes ~1 ms per item).
START_PAGE_LIMIT = 1_000
MIN_PAGE_LIMIT = 16
MAX_PAGE_LIMIT = 10_000
FAST_PAGES_TO_GROW = 4
# A strongly consistent read costs one read capacity unit per 4 KB: the estimate of a page's
# cost when the answer does not say (ConsumedCapacity missing).
CAPACITY_UNIT_BYTES = 4096


def auto_segments(item_count: int) -> int:
    """One segment per 20,000 items, 1 to 16: enough to overlap request latency on a small
    machine without flooding a table's read capacity."""
    return max(1, min(MAX_AUTO_SEGMENTS, math.ceil(item_count / ITEMS_PER_AUTO_SEGMENT)))


class PageLimit:
    """One segment's Scan ``Limit``: halved (down to a floor) when a page times out, doubled
    (up to a cap) after a few pages answered in under ``fast_s`` in a row."""

    def __init__(self, fast_s: float) -> None:
        self.value = START_PAGE_LIMIT
        self._fast_s = fast_s
        self._fast = 0

    def shrink(self) -> None:
        self.value = max(MIN_PAGE_LIMIT, self.value // 2)
        self._fast = 0

    def answered(self, elapsed_s: float) -> None:
        self._fast = self._fast + 1 if elapsed_s < self._fast_s else 0
        if self._fast >= FAST_PAGES_TO_GROW:
            self.value = min(MAX_PAGE_LIMIT, self.value * 2)
            self._fast = 0


@dataclass(frozen=True)
class SegmentPage:
    """One Scan page of one segment: its ``items`` (None if the page had none) and the key the
    segment goes on after (``next_key``, the page's LastEvaluatedKey; None: the segment is
    finished)."""

    segment: int
    segments: int
    items: pa.StructArray | None
    next_key: dict[str, Any] | None


def scan_table(
    clients: DynamoDBClients,
    table: str,
    segments: int,
    stop: threading.Event,
    on_transient: Callable[[SyncError], None],
    fast_page_s: float = 5.0,
    bound: RetryBound = UNBOUNDED,
    limiter: ReadRateLimiter | None = None,
) -> Iterator[pa.StructArray]:
    """Yield the table's items, a page at a time, from ``segments`` parallel scanners (see
    :func:`scan_segments`, whose pages say where each segment stands)."""
    scanned = scan_segments(
        clients, table, segments, stop, on_transient, fast_page_s, bound, limiter
    )
    for page in scanned:
        if page.items is not None:
            yield page.items


def scan_segments(
    clients: DynamoDBClients,
    table: str,
    segments: int,
    stop: threading.Event,
    on_transient: Callable[[SyncError], None],
    fast_page_s: float = 5.0,
    bound: RetryBound = UNBOUNDED,
    limiter: ReadRateLimiter | None = None,
    start: Mapping[int, dict[str, Any] | None] | None = None,
    done: Set[int] = frozenset(),
    read_ahead: int | None = None,
) -> Iterator[SegmentPage]:
    """Yield the table's pages from ``segments`` parallel scanners, each with its segment and
    where that segment goes on.

    Reads are strongly consistent so that every write made before the stream position was
    captured is seen. A bounded queue keeps memory flat whatever the table size. Each segment
    sizes its pages with a :class:`PageLimit` (answers within ``fast_page_s`` let pages grow);
    a page still failing at ``bound`` raises :class:`~sync.errors.RetriesExhausted`.

    Every segment spends the one ``limiter`` (a fresh unlimited one if None): each request
    waits for it, each answered page is charged to it (its items, or the read capacity units
    it consumed), and each throttling answer slows it down.

    To resume an interrupted scan, ``start`` gives the key each segment goes on after (its
    last LastEvaluatedKey) and ``done`` the segments already finished (not read again). One
    segment's pages come in its order; the last page of a segment has ``next_key`` None.
    ``read_ahead`` bounds the pages read and not yet taken (default two per segment).
    """
    limiter = limiter or ReadRateLimiter(None)
    starts: Mapping[int, dict[str, Any] | None] = start or {}
    fan_in = FanIn(stop, read_ahead or 2 * segments, keep_late=True)
    cancelled = fan_in.cancelled

    def scan_segment(segment: int) -> None:
        start_key: dict[str, Any] | None = starts.get(segment)
        limit = PageLimit(fast_page_s)

        items_per_unit = 1.0  # of a capacity limit, as the last page showed

        def call(key: dict[str, Any] | None) -> ScanPage:
            nonlocal items_per_unit
            if not limiter.acquire(stop, cancelled):
                raise Stopped
            cap = limiter.page_items(segments, items_per_unit)
            page_limit = limit.value if cap is None else max(MIN_PAGE_LIMIT, min(limit.value, cap))
            started = time.monotonic()
            page = _scan_page(clients, table, segment, segments, key, page_limit)
            limit.answered(time.monotonic() - started)
            scanned = max(page.count, page.scanned_count)
            if limiter.unit == "capacity":
                units = page.consumed_capacity
                if units is None:
                    units = page.nbytes / CAPACITY_UNIT_BYTES
                if units > 0 and scanned:
                    items_per_unit = scanned / units
                limiter.charge(units)
            else:
                limiter.charge(scanned)
            return page

        def failed(error: SyncError) -> None:
            if error.shrink_page:
                limit.shrink()
            if error.throttled:
                limiter.throttled()
            on_transient(error)

        while True:
            page = retrying(partial(call, start_key), stop, failed, Backoff(), bound)
            start_key = page.last_evaluated_key or None
            if not fan_in.put(SegmentPage(segment, segments, page.items, start_key)):
                return
            if not start_key:
                return

    readers = [
        (f"scan-{table}-{s}", partial(scan_segment, s)) for s in range(segments) if s not in done
    ]
    return fan_in.pages(readers)


def _scan_page(
    clients: DynamoDBClients,
    table: str,
    segment: int,
    segments: int,
    start_key: dict[str, Any] | None,
    limit: int,
) -> ScanPage:
    kwargs: dict[str, Any] = {
        "TableName": table,
        "ConsistentRead": True,
        "Limit": limit,
        "ReturnConsumedCapacity": "TOTAL",
    }
    if segments > 1:
        kwargs.update(Segment=segment, TotalSegments=segments)
    if start_key:
        kwargs["ExclusiveStartKey"] = start_key
    try:
        body = clients.dynamodb.scan(**kwargs)["RawBody"]
    except Exception as e:  # noqa: BLE001 - every boto error is classified at this boundary
        raise classify(e, f"Scan {table} segment {segment}/{segments} (Limit {limit})") from e
    return parse_scan(body)
