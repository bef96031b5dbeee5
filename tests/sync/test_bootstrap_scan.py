"""The bootstrap scan against a real emulator over HTTP: a large table with the default
settings, pages slower than the read timeout, a Scan that never succeeds, and progress that
moves with every page (first bootstrap and re-bootstrap alike)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flightsrv.http import status_json
from sync.pipeline import DatasetSync
from sync.settings import DatasetSettings
from sync.status import State
from tests.dynamo import Emulator, create_table, iter_batches, random_item
from tests.harness import assert_mirror_equals_source, settings_for, start, wait_for
from tests.streamfaults import StreamFaultProxy

FAST_ERROR_RETRY = timedelta(milliseconds=300)


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[StreamFaultProxy]:
    with StreamFaultProxy(emulator.url, seed=20261204) as p:
        yield p


def seed_fast(emulator: Emulator, table: str, items: int) -> None:
    """``items`` items written with BatchWriteItem from a few threads at once."""
    create_table(emulator.client(), table)
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
        list(pool.map(write, iter_batches(all_items, 2_500)))


def with_source(settings: DatasetSettings, **source: Any) -> DatasetSettings:
    return replace(settings, source=replace(settings.source, **source))


@contextmanager
def watching(sync: DatasetSync) -> Iterator[list[dict[str, Any]]]:
    """Every 10 ms, ``/v1/status``'s view of the dataset (state and bootstrap progress)."""
    seen: list[dict[str, Any]] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.01):
            seen.append(status_json(sync.status(), None))

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_large_table_with_the_default_settings_reaches_ready(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    items = 50_000
    seed_fast(emulator, table_name, items)
    try:
        # The pod's defaults (read timeout, auto segments = 3, retry bound) but the poll interval.
        settings = settings_for(emulator.url, table_name, "duckdb", "memory", tmp_path)
        sync = start(settings, running)
        with watching(sync) as seen:
            wait_for(lambda: sync.status().state is State.READY, timeout=420, what="Ready")
        assert sync.row_count() == items
        progress = [s["bootstrap"]["items"] for s in seen if s["bootstrap"]]
        assert len(set(progress)) > 10, "progress moves page by page"
    finally:
        ddb.delete_table(TableName=table_name)


def test_pages_slower_than_the_read_timeout_are_retried_smaller(
    emulator: Emulator,
    proxy: StreamFaultProxy,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list,
) -> None:
    seed_fast(emulator, table_name, 400)
    proxy.slow_scans(2.0, above_limit=100)  # only pages of up to 100 items come back in time
    settings = settings_for(proxy.url, table_name, "duckdb", "memory", tmp_path)
    sync = start(with_source(settings, read_timeout_s=0.5), running)
    wait_for(lambda: sync.status().state is State.READY, timeout=60, what="Ready")
    assert_mirror_equals_source(sync, ddb, table_name)
    status = sync.status()
    assert status.errors_transient >= 1  # the first, bigger pages timed out
    assert State.ERROR not in {state for _, state in sync.state_history()}


def test_a_scan_failing_past_the_retry_bound_puts_the_dataset_in_error(
    emulator: Emulator,
    proxy: StreamFaultProxy,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list,
) -> None:
    seed_fast(emulator, table_name, 50)
    proxy.force_error("Scan", "InternalServerError", message="the disk is on fire")
    settings = settings_for(
        proxy.url, table_name, "duckdb", "memory", tmp_path, error_retry=FAST_ERROR_RETRY
    )
    started = time.monotonic()
    sync = start(with_source(settings, max_retries=3), running)
    wait_for(lambda: sync.status().state is State.ERROR, timeout=30, what="error")
    error = sync.status().error or ""
    assert "InternalServerError" in error and "the disk is on fire" in error
    assert "gave up after 4 attempts" in error
    assert time.monotonic() - started < 15
    # Tried again from error every error_retry_interval, each attempt bounded.
    wait_for(lambda: sync.status().bootstraps >= 3, what="retries from error")
    errors = [state for _, state in sync.state_history() if state is State.ERROR]
    assert len(errors) >= 2
    proxy.clear_faults()
    wait_for(lambda: sync.status().state is State.READY, timeout=30, what="recovery")
    assert_mirror_equals_source(sync, ddb, table_name)


def test_a_scan_failing_past_the_time_bound_puts_the_dataset_in_error(
    emulator: Emulator,
    proxy: StreamFaultProxy,
    table_name: str,
    tmp_path: Path,
    running: list,
) -> None:
    seed_fast(emulator, table_name, 50)
    proxy.slow_scans(1.5, above_limit=0)  # every page outlasts the read timeout
    settings = settings_for(
        proxy.url, table_name, "duckdb", "memory", tmp_path, error_retry=timedelta(minutes=5)
    )
    started = time.monotonic()
    sync = start(
        with_source(settings, read_timeout_s=0.5, max_retries=1_000, max_retry_s=2.0), running
    )
    wait_for(lambda: sync.status().state is State.ERROR, timeout=30, what="error")
    assert 2.0 <= time.monotonic() - started < 15
    error = sync.status().error or ""
    assert "Read timeout" in error and "dynamodb_max_retry_duration" in error


def test_progress_moves_with_every_page_on_bootstrap_and_refresh(
    emulator: Emulator,
    proxy: StreamFaultProxy,
    table_name: str,
    tmp_path: Path,
    running: list,
) -> None:
    items = 3_000  # well below the load batch: a batch-counted progress would jump 0 → 3000
    seed_fast(emulator, table_name, items)
    proxy.set_fault_rates("Scan", latency=1.0, latency_seconds=0.2)
    sync = start(settings_for(proxy.url, table_name, "duckdb", "memory", tmp_path), running)
    with watching(sync) as seen:
        wait_for(lambda: sync.status().state is State.READY, timeout=60, what="Ready")
        sync.request_refresh()
        wait_for(lambda: sync.status().bootstraps == 2, what="a second bootstrap")
        wait_for(lambda: sync.status().state is State.READY, timeout=60, what="Ready again")
    for state in ("bootstrapping", "rebootstrapping"):
        progress = [s["bootstrap"] for s in seen if s["state"] == state and s["bootstrap"]]
        counts = sorted({p["items"] for p in progress})
        assert any(0 < n < items for n in counts), (state, counts)
        middle = next(p for p in progress if 0 < p["items"] < items)
        assert middle["expected"] == items and 0 < middle["percent"] < 100
        assert middle["rate_per_s"] > 0 and middle["eta_s"] is not None
