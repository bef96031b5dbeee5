"""``scan_rate_limit`` and throttling during the bootstrap Scan.

The limiter itself is a value type driven by a fake clock. The Scan is run against the moto
server through the fault proxy, which records every Scan it answers (when, how many items,
the read capacity charged) and can charge read capacity as DynamoDB does (one unit per 4 KB
of items) instead of the emulator's flat 1.0 per request.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sync.dynamodb.client import make_clients
from sync.dynamodb.ratelimit import ReadRateLimiter
from sync.dynamodb.scan import scan_table
from sync.settings import DatasetSettings, ScanRateLimit
from sync.status import State
from tests.dynamo import Emulator, iter_batches, random_item
from tests.harness import assert_mirror_equals_source, settings_for, start, wait_for
from tests.streamfaults import StreamFaultProxy
from tests.streamfaults.proxy import ScanAnswer

STREAM = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- the limiter, on a fake clock ----------------------------------------------------------


def test_the_bucket_holds_one_second_and_a_page_past_it_makes_the_next_request_wait() -> None:
    clock = FakeClock()
    limiter = ReadRateLimiter(100, clock=clock)
    assert limiter.delay_s() == 0
    limiter.charge(100)  # the burst: a full bucket
    assert limiter.delay_s() == 0
    limiter.charge(50)  # charged after the page arrived: the bucket goes negative
    assert limiter.delay_s() == pytest.approx(0.5)
    clock.now += 0.25
    assert limiter.delay_s() == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.delay_s() == 0
    clock.now += 60  # idle time refills one second's worth, no more
    limiter.charge(100)
    limiter.charge(100)
    assert limiter.delay_s() == pytest.approx(1.0)


def test_requests_that_wait_their_turn_spend_no_more_than_the_limit() -> None:
    clock = FakeClock()
    limiter = ReadRateLimiter(400, clock=clock)
    spent, start = 0.0, clock.now
    while clock.now - start < 30:
        clock.now += limiter.delay_s()
        limiter.charge(37)  # pages of whatever size
        spent += 37
    elapsed = clock.now - start
    assert spent <= 400 * elapsed + 400 + 37 + 1e-6  # the limit, one burst, one page ahead
    assert spent >= 400 * elapsed - 37


def test_a_throttle_halves_the_rate_once_per_episode_then_it_grows_back_to_the_limit() -> None:
    clock = FakeClock()
    limiter = ReadRateLimiter(1000, clock=clock, recovery_s=10, decrease_gap_s=1)
    limiter.throttled()
    assert limiter.rate_per_s == 500
    limiter.throttled()  # the other segments see the same throttling: no further halving
    assert limiter.rate_per_s == 500
    clock.now += 1.5
    limiter.throttled()  # still throttled a while later: halved again
    assert limiter.rate_per_s == 250
    rates = []
    for _ in range(16):
        clock.now += 1
        limiter.charge(1)
        rates.append(limiter.rate_per_s)
    assert rates[0] == pytest.approx(350)  # +limit/recovery_s per second of answered pages
    assert rates == sorted(rates) and rates[-1] == 1000  # back to the limit, never above
    assert limiter.snapshot().throttles == 3


def test_with_no_limit_a_throttle_halves_the_measured_rate_until_it_is_back() -> None:
    clock = FakeClock()
    limiter = ReadRateLimiter(None, clock=clock, recovery_s=10, decrease_gap_s=1)
    limiter.throttled()  # nothing measured yet: the retry backoff alone slows down
    assert limiter.rate_per_s is None
    for _ in range(20):  # 2,000 items/s
        clock.now += 0.1
        limiter.charge(200)
    assert limiter.delay_s() == 0
    limiter.throttled()
    assert limiter.rate_per_s == pytest.approx(1000)
    limiter.charge(1000)
    assert limiter.delay_s() == pytest.approx(1.0)  # now paced
    clock.now += 4
    limiter.charge(1)
    assert limiter.rate_per_s == pytest.approx(1800)  # +200 items/s per second
    clock.now += 1
    limiter.charge(1)
    assert limiter.rate_per_s is None  # back where the throttle happened: unbounded again
    assert limiter.delay_s() == 0


def test_a_waiting_request_gives_up_when_stopped() -> None:
    limiter = ReadRateLimiter(1)
    limiter.charge(1000)  # 30 s of debt at most
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert limiter.acquire(stop) is False
    assert time.monotonic() - started < 2


# ---- the Scan against the emulator, through the proxy --------------------------------------


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[StreamFaultProxy]:
    with StreamFaultProxy(emulator.url, seed=20261205) as p:
        yield p


def seed(emulator: Emulator, table: str, items: int, read_capacity: int | None = None) -> None:
    """A table (provisioned with ``read_capacity`` units, else on-demand) of ``items`` items
    written with BatchWriteItem from a few threads."""
    capacity: dict[str, Any] = {"BillingMode": "PAY_PER_REQUEST"}
    if read_capacity is not None:
        capacity = {
            "BillingMode": "PROVISIONED",
            "ProvisionedThroughput": {
                "ReadCapacityUnits": read_capacity,
                "WriteCapacityUnits": 1000,
            },
        }
    emulator.client().create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        StreamSpecification=STREAM,
        **capacity,
    )
    rng = random.Random(items)
    all_items = [random_item(rng, f"k{i}", 0) for i in range(items)]

    def write(chunk: list[dict[str, Any]]) -> None:
        client = emulator.client()
        for batch in iter_batches(chunk, 25):
            requests = [{"PutRequest": {"Item": item}} for item in batch]
            while requests:
                answer = client.batch_write_item(RequestItems={table: requests})
                requests = answer.get("UnprocessedItems", {}).get(table, [])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, iter_batches(all_items, 2_000)))


def rate(scans: list[ScanAnswer], start: float, end: float) -> float:
    """Items per second answered between ``start`` and ``end``."""
    return sum(s.items for s in scans if start <= s.at < end) / (end - start)


def limited(
    proxy: StreamFaultProxy, table: str, tmp_path: Path, limit: ScanRateLimit
) -> DatasetSettings:
    return settings_for(
        proxy.url, table, "duckdb", "memory", tmp_path, scan_segments=2, scan_rate_limit=limit
    )


@pytest.mark.slow  # waited out in real time
def test_an_items_per_second_limit_paces_the_scan_across_segments_and_loads_everything(
    emulator: Emulator,
    proxy: StreamFaultProxy,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list,
) -> None:
    # The emulator answers ~2,000 items/s on two cores: the limit sits well below that, so
    # an unlimited Scan (or one bucket per segment) finishes in about half the time.
    items, limit = 8_000, 1_000
    seed(emulator, table_name, items)
    sync = start(limited(proxy, table_name, tmp_path, ScanRateLimit(items_per_s=limit)), running)
    wait_for(lambda: sync.status().state is State.READY, timeout=60, what="Ready")
    scans = list(proxy.scans)
    elapsed = scans[-1].at - scans[0].at  # from the first page answered to the last
    assert sum(s.items for s in scans) == items
    # One second of burst and a page per segment charged after it arrived (pages are capped
    # at half a second of the limit per segment) may go ahead of the limit; nothing more.
    # (Timed from the first answer: less a first page slower than the last, 0.25 s at most.)
    page = limit / 2 / 2
    bound = (items - limit - 2 * page) / limit - 0.25
    assert elapsed >= bound, f"{items / elapsed:.0f} items/s"
    steady = rate(scans, scans[0].at + 1.5, scans[-1].at)
    assert steady <= 1.15 * limit, f"{steady:.0f} items/s past the burst"
    print(f"\n{items} items in {len(scans)} Scans over {elapsed:.2f} s: ")
    print(f"{items / elapsed:.0f} items/s overall, {steady:.0f} items/s past the first 1.5 s, ")
    print(f"limit {limit} items/s")
    assert sync.row_count() == items
    assert_mirror_equals_source(sync, ddb, table_name)


@pytest.mark.slow  # waited out in real time
def test_a_share_of_provisioned_read_capacity_spends_the_consumed_capacity_units(
    emulator: Emulator,
    proxy: StreamFaultProxy,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list,
) -> None:
    items, read_capacity = 4_000, 30
    seed(emulator, table_name, items, read_capacity)
    proxy.charge_capacity_by_size()
    per_s = read_capacity * 0.5
    settings = limited(proxy, table_name, tmp_path, ScanRateLimit(capacity_fraction=0.5))
    sync = start(settings, running)
    wait_for(lambda: sync.status().state is State.READY, timeout=60, what="Ready")
    scans = list(proxy.scans)
    units = [s.capacity_units or 0 for s in scans]
    elapsed = scans[-1].at - scans[0].at
    assert sum(s.items for s in scans) == items and all(units)
    # Charged in consumed units (items would take 100 s): the burst and a page per segment
    # may go ahead of the rate.
    assert sum(units) - per_s - 2 * max(units) <= per_s * elapsed
    assert sum(units) > 2 * per_s  # the table is big enough for the limit to matter
    print(f"\n{sum(units):.0f} read capacity units in {elapsed:.2f} s: ")
    print(f"{sum(units) / elapsed:.1f} units/s, limit {per_s:g} (50% of {read_capacity}), ")
    print(f"{items / elapsed:.0f} items/s")
    assert_mirror_equals_source(sync, ddb, table_name)


def test_a_share_of_read_capacity_on_an_on_demand_table_is_an_error_naming_the_key(
    emulator: Emulator,
    proxy: StreamFaultProxy,
    table_name: str,
    tmp_path: Path,
    running: list,
) -> None:
    seed(emulator, table_name, 10)
    settings = limited(proxy, table_name, tmp_path, ScanRateLimit(capacity_fraction=0.5))
    sync = start(settings, running)
    wait_for(lambda: sync.status().state is State.ERROR, timeout=30, what="error")
    error = sync.status().error or ""
    assert "params.scan_rate_limit: 50% of the provisioned read capacity" in error
    assert "PAY_PER_REQUEST" in error and "scan_rate_limit: 2000" in error
    assert proxy.requests["Scan"] == 0


@pytest.mark.slow  # waited out in real time
def test_throttling_answers_slow_the_scan_down_and_it_still_completes(
    emulator: Emulator, proxy: StreamFaultProxy, table_name: str, tmp_path: Path
) -> None:
    items, limit = 6_000, 1_000
    seed(emulator, table_name, items)
    source = settings_for(proxy.url, table_name, "duckdb", "memory", tmp_path).source
    limiter = ReadRateLimiter(limit)
    stop = threading.Event()
    seen: list[str] = []
    throttled_at = None
    pages = scan_table(make_clients(source), table_name, 2, stop, lambda e: None, limiter=limiter)
    for page in pages:
        seen.extend(v["S"] for v in page.field("pk").to_pylist())
        if throttled_at is None and len(seen) >= 3_500:  # well past the burst
            throttled_at = time.monotonic()
            proxy.force_error("Scan", "ProvisionedThroughputExceededException", times=2)
    assert throttled_at is not None
    assert sorted(seen) == sorted(f"k{i}" for i in range(items))  # every item, once
    assert proxy.fault_counts["forced:ProvisionedThroughputExceededException"] == 2
    scans = list(proxy.scans)
    before = rate(scans, throttled_at - 1.5, throttled_at)
    after = rate(scans, throttled_at, throttled_at + 2.5)
    requests_before = sum(1 for s in scans if throttled_at - 1.5 <= s.at < throttled_at) / 1.5
    requests_after = sum(1 for s in scans if throttled_at <= s.at < throttled_at + 2.5) / 2.5
    print(f"\nbefore the throttles {before:.0f} items/s ({requests_before:.1f} Scans/s), ")
    print(f"2.5 s after {after:.0f} items/s ({requests_after:.1f} Scans/s)")
    # Halved, then back up by a tenth of the limit a second: ~560 items/s on average over
    # those 2.5 s; a retry alone (a backoff of at most 0.2 s) would keep ~900.
    assert after < 0.75 * limit and after < 0.75 * before
    assert requests_after < 0.75 * requests_before
    assert limiter.snapshot().throttles == 2
