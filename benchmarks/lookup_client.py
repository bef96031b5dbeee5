"""One point-lookup client (a process of its own, or a thread). Kept apart from
:mod:`benchmarks.lookups` so that a spawned client process imports little."""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable
from typing import Any

QUERY = "SELECT * FROM orders WHERE order_id = ?"
WARMUP_LOOKUPS = 30


def lookups(
    uri: str,
    rows: int,
    rounds: int,
    seconds: float,
    seed: int,
    wait: Callable[[], object],
    report: Callable[[int, list[float]], None],
) -> None:
    """One client: connect, prepare, warm up, then ``rounds`` timed rounds of ``seconds``,
    each started together with the other clients (``wait``), each reported (``report``)."""
    import adbc_driver_flightsql.dbapi as flightsql

    rng = random.Random(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cannot disable autocommit": a read-only server
        conn = flightsql.connect(uri)
    try:
        with conn.cursor() as cur:

            def lookup() -> float:
                key = f"o-{rng.randrange(rows):08d}"
                began = time.perf_counter()
                cur.execute(QUERY, (key,))
                found = cur.fetch_arrow_table()
                elapsed = time.perf_counter() - began
                if found.num_rows != 1:
                    raise AssertionError(f"{key}: {found.num_rows} rows")
                return elapsed

            for _ in range(WARMUP_LOOKUPS):
                lookup()
            for r in range(rounds):
                wait()
                end = time.perf_counter() + seconds
                latencies = []
                while time.perf_counter() < end:
                    latencies.append(lookup())
                report(r, latencies)
    finally:
        conn.close()


def process_client(
    uri: str, rows: int, rounds: int, seconds: float, seed: int, barrier: Any, results: Any
) -> None:
    lookups(
        uri,
        rows,
        rounds,
        seconds,
        seed,
        barrier.wait,
        lambda r, latencies: results.put((r, latencies)),
    )
