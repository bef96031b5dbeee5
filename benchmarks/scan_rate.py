"""One-off measurement: how close ``scan_rate_limit`` holds a parallel Scan to its limit.

The Scan pages are replayed in process (``benchmarks.replay``), far faster than any limit
here, so the rate measured is the limiter's alone:

    .venv/bin/python -m benchmarks.scan_rate --items 20000 --limit 4000 --segments 2

Items/s are given overall (one second's burst included) and past the first second.
"""

from __future__ import annotations

import argparse
import threading
import time

from benchmarks.bodies import scan_bodies
from benchmarks.replay import ReplayScan
from sync.dynamodb.client import DynamoDBClients
from sync.dynamodb.ratelimit import ReadRateLimiter
from sync.dynamodb.scan import scan_table


def run(items: int, limit: float | None, segments: int, page_items: int) -> None:
    clients = DynamoDBClients(ReplayScan(scan_bodies(items, page_items)), None)
    limiter = ReadRateLimiter(limit)
    arrivals: list[tuple[float, int]] = []
    started = time.monotonic()
    pages = scan_table(clients, "orders", segments, threading.Event(), print, limiter=limiter)
    for page in pages:
        arrivals.append((time.monotonic() - started, len(page)))
    elapsed = arrivals[-1][0]
    total = sum(n for _, n in arrivals)
    assert total == items, (total, items)
    late = [(t, n) for t, n in arrivals if t >= 1.0]
    steady = sum(n for _, n in late) / (elapsed - 1.0) if late and elapsed > 1.0 else float("nan")
    label = "none" if limit is None else f"{limit:g} items/s"
    print(
        f"limit {label:<16} {total:>8} items {elapsed:6.2f} s {total / elapsed:>10,.0f} items/s "
        f"overall, {steady:>10,.0f} items/s after the first second"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--limit", type=float, default=4_000)
    parser.add_argument("--segments", type=int, default=2)
    parser.add_argument("--page-items", type=int, default=500)
    args = parser.parse_args()
    run(args.items, None, args.segments, args.page_items)
    run(args.items, args.limit, args.segments, args.page_items)


if __name__ == "__main__":
    main()
