"""Parallel Scan (Segment / TotalSegments) of a table, pages parsed in bulk to Arrow."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from sync.dynamodb.client import DynamoDBClients
from sync.dynamodb.errors import classify
from sync.dynamodb.rawparse import ScanPage, parse_scan
from sync.errors import SyncError
from sync.retry import Stopped, retrying

ITEMS_PER_AUTO_SEGMENT = 20_000
MAX_AUTO_SEGMENTS = 16


def auto_segments(item_count: int) -> int:
    """One segment per 20,000 items, 1 to 16: enough to overlap request latency on a small
    machine without flooding a table's read capacity."""
    return max(1, min(MAX_AUTO_SEGMENTS, math.ceil(item_count / ITEMS_PER_AUTO_SEGMENT)))


_DONE = object()


def scan_table(
    clients: DynamoDBClients,
    table: str,
    segments: int,
    stop: threading.Event,
    on_transient: Callable[[SyncError], None],
) -> Iterator[pa.StructArray]:
    """Yield the table's items, a page at a time, from ``segments`` parallel scanners.

    Reads are strongly consistent so that every write made before the stream position was
    captured is seen. A bounded queue keeps memory flat whatever the table size.
    """
    pages: queue.Queue[Any] = queue.Queue(maxsize=2 * segments)
    cancelled = threading.Event()

    def put(item: object) -> bool:
        while not (stop.is_set() or cancelled.is_set()):
            try:
                pages.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def scan_segment(segment: int) -> None:
        start_key: dict[str, Any] | None = None
        try:
            while True:
                page = retrying(
                    lambda key=start_key: _scan_page(clients, table, segment, segments, key),
                    stop,
                    on_transient,
                )
                if page.items is not None and not put(page.items):
                    return
                start_key = page.last_evaluated_key
                if not start_key:
                    break
        except (SyncError, Stopped) as e:
            put(e)
            return
        put(_DONE)

    workers = [
        threading.Thread(target=scan_segment, args=(s,), name=f"scan-{table}-{s}", daemon=True)
        for s in range(segments)
    ]
    for worker in workers:
        worker.start()
    finished = 0
    try:
        while finished < segments:
            try:
                item = pages.get(timeout=0.2)
            except queue.Empty:
                if stop.is_set():
                    raise Stopped from None
                continue
            if item is _DONE:
                finished += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        cancelled.set()
        for worker in workers:
            worker.join(timeout=5)


def _scan_page(
    clients: DynamoDBClients,
    table: str,
    segment: int,
    segments: int,
    start_key: dict[str, Any] | None,
) -> ScanPage:
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    if segments > 1:
        kwargs.update(Segment=segment, TotalSegments=segments)
    if start_key:
        kwargs["ExclusiveStartKey"] = start_key
    try:
        body = clients.dynamodb.scan(**kwargs)["RawBody"]
    except Exception as e:  # noqa: BLE001 - every boto error is classified at this boundary
        raise classify(e, f"Scan {table} segment {segment}/{segments}") from e
    return parse_scan(body)
