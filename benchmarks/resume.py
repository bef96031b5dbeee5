"""One-off measurement: a Scan bootstrap killed half-way, then resumed from the positions it
committed with its rows. How much of the table is read twice?

    .venv/bin/python -m benchmarks.resume [--scale 1.0] [--segments 16]

A million items (times ``--scale``) are replayed as Scan bodies (:mod:`benchmarks.replay`)
through the product's load path (``scan_segments`` → ``resumable_scan_batches`` →
``apply_load`` with each batch's positions) into a DuckDB file. Once half the items are read,
the load is abandoned as a ``kill -9`` would leave it: the batch being built, the pages queued
and those in flight are lost; only what was committed survives. The file is reopened, the
staging checkpoint read back, and the load resumed from it to the end. A second run stops
instead (the stop event of a runtime shutting down), which hands over what was read.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.bodies import SCAN_PAGE_ITEMS, scan_bodies
from benchmarks.replay import STREAM_ARN, ReplayScan
from sync.accelerators.base import Accelerator, open_accelerator
from sync.bootstrap import apply_load
from sync.changes import Checkpoint, ShardPosition
from sync.dynamodb.client import DynamoDBClients
from sync.dynamodb.load import ScanPositions, resumable_scan_batches
from sync.dynamodb.scan import scan_segments
from sync.dynamodb.typeoptions import TypeOptions
from sync.errors import SyncError
from sync.retry import Stopped
from sync.schema import Column, ColumnType, TableSpec
from sync.settings import AccelerationSettings

TABLE = "orders"
STAGING = TableSpec("orders__bootstrap", (Column("order_id", ColumnType.VARCHAR),), ("order_id",))
CAPTURED = Checkpoint(STREAM_ARN, (ShardPosition(STREAM_ARN, "shardId-0", None, None),))


class CountingScan(ReplayScan):
    """A replayed Scan that counts the items it answers."""

    def __init__(self, bodies: list[bytes]) -> None:
        super().__init__(bodies)
        self.items = 0
        self._lock = threading.Lock()

    def scan(self, **request: Any) -> dict[str, Any]:
        answer = super().scan(**request)
        count = answer["RawBody"].count(b'"order_id"') - (b"LastEvaluatedKey" in answer["RawBody"])
        with self._lock:
            self.items += count
        return answer


class Killed(Exception):
    """The process died here: nothing more is committed."""


def _no_transient(error: SyncError) -> None:
    raise AssertionError(f"replayed bodies cannot fail: {error}")


def run_load(
    acc: Accelerator,
    scan: ReplayScan,
    spec: TableSpec,
    positions: ScanPositions,
    resumed: bool,
    stop: threading.Event,
    kill_at: int | None = None,
) -> int:
    """Load from ``positions``; return the rows applied. ``kill_at`` items read: die."""
    clients = DynamoDBClients(scan, None)
    pages = scan_segments(
        clients,
        TABLE,
        positions.segments,
        stop,
        _no_transient,
        start=positions.start,
        done=positions.done,
        read_ahead=positions.segments,  # as DynamoDBSource does
    )
    batches = resumable_scan_batches(
        pages, positions, spec, TypeOptions(support=acc.type_support), 10, resumed
    )

    def progress(items: int) -> None:
        if kill_at is not None and items >= kill_at:
            raise Killed

    def at(position: tuple[ShardPosition, ...]) -> Checkpoint:
        return Checkpoint(CAPTURED.stream_arn, CAPTURED.shards + position)

    try:
        _, applied = apply_load(acc, spec.name, spec, batches, progress, at)
    finally:
        pages.close()  # a killed process's scanners stop with it
    return applied


def trial(bodies: list[bytes], segments: int, kill: bool, directory: Path) -> dict[str, float]:
    items = sum(body.count(b'"order_id"') - (b"LastEvaluatedKey" in body) for body in bodies)
    settings = AccelerationSettings("duckdb", "file", directory / f"resume-{kill}.duckdb")
    scan = CountingScan(bodies)
    stop = threading.Event()
    acc = open_accelerator(settings)
    acc.create_table(STAGING)
    half = items // 2
    started = time.perf_counter()
    try:
        if kill:
            run_load(acc, scan, STAGING, ScanPositions(TABLE, segments), False, stop, half)
        else:
            timer = threading.Thread(target=_stop_at, args=(scan, half, stop), daemon=True)
            timer.start()
            run_load(acc, scan, STAGING, ScanPositions(TABLE, segments), False, stop)
        raise AssertionError("the load was meant to be interrupted")
    except (Killed, Stopped):
        pass
    first_s = time.perf_counter() - started
    first = scan.items
    acc.close()

    acc = open_accelerator(settings)
    committed = acc.row_count(STAGING.name)
    stored = acc.load_checkpoint(STAGING.name)
    spec = acc.table_spec(STAGING.name)
    assert spec is not None
    started = time.perf_counter()
    if stored is None:  # killed before a batch was committed (a small table): start over
        positions, resumed = ScanPositions(TABLE, segments), False
    else:
        loaded = tuple(s for s in stored.shards if s.stream_arn != CAPTURED.stream_arn)
        positions, resumed = ScanPositions.parse(TABLE, loaded), True
    run_load(acc, scan, spec, positions, resumed, threading.Event())
    second_s = time.perf_counter() - started
    total = acc.row_count(STAGING.name)
    acc.close()
    assert total == items, (total, items)
    return {
        "items": items,
        "read_first": first,
        "committed_first": committed,
        "read_total": scan.items,
        "again": (scan.items - items) / items,
        "first_s": first_s,
        "second_s": second_s,
    }


def _stop_at(scan: CountingScan, items: int, stop: threading.Event) -> None:
    while scan.items < items:
        time.sleep(0.001)
    stop.set()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="times 1,000,000 items")
    parser.add_argument("--segments", type=int, default=16)
    args = parser.parse_args()
    items = int(1_000_000 * args.scale)
    bodies = scan_bodies(items, SCAN_PAGE_ITEMS)
    print(
        f"{items:,} items in {len(bodies)} Scan pages of {SCAN_PAGE_ITEMS}, {args.segments} "
        "segments, DuckDB file"
    )
    with tempfile.TemporaryDirectory() as directory:
        for kill in (True, False):
            r = trial(bodies, args.segments, kill, Path(directory))
            how = "killed (nothing uncommitted kept)" if kill else "stopped (stop event)"
            print(
                f"{how:36} read before: {r['read_first']:>9,.0f}  committed: "
                f"{r['committed_first']:>9,.0f}  read in all: {r['read_total']:>9,.0f}  "
                f"read again: {r['again']:.1%}  ({r['first_s']:.1f} s + {r['second_s']:.1f} s)"
            )


if __name__ == "__main__":
    main()
