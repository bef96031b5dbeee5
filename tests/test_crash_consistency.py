"""kill -9 at random instants, restart, and the file-mode mirror still equals the source.

Data and checkpoint commit in one transaction, so this holds by construction; these tests
prove it over many kill points (during the scan, between scan and stream, mid-batch, during
shard splits), with faults injected by the stream fault layer. The seed is printed.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import duckdb
import pytest

from sync.dynamodb.load import BATCH_ITEMS
from sync.pipeline import STAGING_SUFFIX
from tests.dynamo import Emulator, create_table, fill_table, normalise, random_item, scan_all
from tests.harness import mutate, wait_for
from tests.runtime_process import RuntimeProcess, dataset_entry
from tests.streamfaults import StreamFaultProxy

pytestmark = pytest.mark.slow  # kill -9 and restart loops

FAST_PARAMS = {"shard_discovery_interval": "500ms", "error_retry_interval": "500ms"}


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[StreamFaultProxy]:
    with StreamFaultProxy(emulator.url, seed=7) as p:
        yield p


class Writer:
    """Changes the table continuously on its own thread; versions only grow."""

    def __init__(
        self, ddb: Any, table: str, rng: random.Random, keys: int, pause_every: int = 0
    ) -> None:
        self.changes = 0
        self._args = (ddb, table, rng, keys)
        self._pause_every = pause_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        ddb, table, rng, keys = self._args
        while not self._stop.is_set():
            self.changes += 1
            mutate(ddb, table, rng, keys, self.changes)
            if self._pause_every and self.changes % self._pause_every == 0:
                self._stop.wait(0.6)  # idle shards: their iterators age and expire

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def served_rows(uri: str) -> dict[str, dict[str, Any]]:
    with flightsql.connect(uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM orders")
        return {row["pk"]: row for row in cur.fetch_arrow_table().to_pylist()}


def assert_served_equals_source(uri: str, ddb: Any, table: str) -> None:
    source = {item["pk"]: item for item in scan_all(ddb, table)}
    mirror = served_rows(uri)
    assert sorted(mirror) == sorted(source)
    for pk, item in source.items():
        for name, value in mirror[pk].items():
            assert normalise(value) == normalise(item.get(name)), (pk, name)


def converged(uri: str, ddb: Any, table: str) -> bool:
    source = {i["pk"]: normalise(i["version"]) for i in scan_all(ddb, table)}
    try:
        return {pk: r["version"] for pk, r in served_rows(uri).items()} == source
    except flightsql.Error:
        return False


def test_kill_9_at_random_instants_then_restart_converges(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("KILL_SEED", time.time_ns() % 10**6))
    print(f"kill-point seed: {seed} (rerun with KILL_SEED={seed})")
    rng = random.Random(seed)
    create_table(ddb, table_name)
    for i in range(1200):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))
    dataset = dataset_entry("orders", table_name, proxy.url, "duckdb", **FAST_PARAMS)
    kills: list[str] = []
    with Writer(ddb, table_name, random.Random(seed + 1), 1400) as writer:
        for point in range(8):
            runtime = RuntimeProcess(tmp_path, [dataset]).start()
            try:
                # Half the kills land early (scan, scan → stream), half later (streaming).
                time.sleep(rng.uniform(0.0, 0.6) if point % 2 else rng.uniform(0.6, 2.5))
                if rng.random() < 0.4:
                    proxy.split(table_name, children=rng.choice([1, 2]))
                    time.sleep(rng.uniform(0.0, 0.3))
                state = runtime.datasets()[0]["status"]
            finally:
                runtime.kill()
            kills.append(state)
            print(f"kill {point}: dataset was {state}, {writer.changes} changes so far")
        changes = writer.changes
    final = RuntimeProcess(tmp_path, [dataset]).start()
    try:
        final.wait_ready(timeout=90)
        wait_for(lambda: converged(final.flight_uri, ddb, table_name), 90, "convergence")
        assert_served_equals_source(final.flight_uri, ddb, table_name)
    finally:
        final.kill()
    print(f"{len(kills)} kill points ({', '.join(kills)}), {changes} changes, final diff = 0")
    assert changes > 300
    assert {"bootstrapping", "ready"} & set(kills), "kill points must hit live phases"


def test_kill_9_mid_scan_bootstrap_resumes_each_segment(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path
) -> None:
    items = 30_000
    create_table(ddb, table_name)
    fill_table(ddb, table_name, items)
    # Pages of 1,000 items that never count as fast (so they do not grow): a slow bootstrap.
    proxy.slow_scans(1.5, 0)
    params = {**FAST_PARAMS, "scan_segments": 2, "dynamodb_read_timeout": "5s"}
    dataset = dataset_entry("orders", table_name, proxy.url, "duckdb", **params)
    runtime = RuntimeProcess(tmp_path, [dataset]).start()
    try:
        # Past the first batch (BATCH_ITEMS), so the kill lands after a commit of the load.
        wait_for(lambda: scanned(runtime) >= BATCH_ITEMS + 3_000, 120, "the scan past a batch")
    finally:
        runtime.kill()
    first = proxy.scanned_items
    with duckdb.connect(str(tmp_path / "data" / "orders.duckdb"), read_only=True) as con:
        row = con.execute(f'SELECT count(*) FROM "orders{STAGING_SUFFIX}"').fetchone()
    committed = row[0] if row else 0
    assert committed >= BATCH_ITEMS, "a batch of the load was committed before the kill"
    with Writer(ddb, table_name, random.Random(9), items + 100) as writer:
        proxy.clear_faults()
        final = RuntimeProcess(tmp_path, [dataset]).start()
        try:
            final.wait_ready(timeout=120)
        except BaseException:
            final.kill()
            raise
    try:
        wait_for(lambda: converged(final.flight_uri, ddb, table_name), 90, "convergence")
        assert_served_equals_source(final.flight_uri, ddb, table_name)
    finally:
        final.kill()
    assert writer.changes > 0
    second = proxy.scanned_items - first
    # The restart reads what the first run had not committed, not the whole table again.
    assert second <= items + writer.changes - committed + 0.1 * items, (first, committed, second)
    assert proxy.scanned_items - items <= 0.1 * items + BATCH_ITEMS + 2_000 * 2


def scanned(runtime: RuntimeProcess) -> int:
    progress = runtime.datasets()[0].get("bootstrap") or {}
    return int(progress.get("items", 0))


def test_long_mixed_run_splits_faults_expiry_and_restarts(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path
) -> None:
    """3 generations of splits, 10 % throttling, 2 % 5xx, iterators expiring after 0.15 s (an
    idle shard is polled every 0.2-0.5 s, so iterators expire whenever the writer pauses),
    3 kill -9 restarts, >= 5,000 changes with deletes and re-inserts of the same keys."""
    rng = random.Random(2026)
    create_table(ddb, table_name)
    for i in range(500):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))
    proxy.configure(iterator_ttl=0.15, max_page_size=3)
    proxy.set_fault_rates(throttling=0.10, http_500=0.01, http_503=0.01)
    dataset = dataset_entry("orders", table_name, proxy.url, "sqlite", **FAST_PARAMS)
    dataset["params"]["scan_interval"] = "500ms"
    runtime = RuntimeProcess(tmp_path, [dataset]).start()
    restarts = 0
    with Writer(ddb, table_name, random.Random(1), 700, pause_every=400) as writer:
        for generation in range(3):
            wait_for(lambda g=generation: writer.changes >= (g + 1) * 1500, 120, "writes")
            proxy.split(table_name, children=2)
            runtime.kill()
            restarts += 1
            runtime = RuntimeProcess(tmp_path, [dataset]).start()
        wait_for(lambda: writer.changes >= 5200, 120, "5,200 changes")
    changes = writer.changes
    try:
        runtime.wait_ready(timeout=120)
        wait_for(lambda: converged(runtime.flight_uri, ddb, table_name), 120, "convergence")
        assert_served_equals_source(runtime.flight_uri, ddb, table_name)
        status = runtime.datasets()[0]
    finally:
        runtime.kill()
    faults = proxy.fault_counts
    print(
        f"mixed run: {changes} changes, {restarts} kill -9 restarts, 3 split generations, "
        f"faults injected {dict(faults)}, final diff = 0"
    )
    assert changes >= 5000 and restarts == 3
    assert faults["throttling"] > 0 and faults["expired_iterator"] > 0
    assert status["shards_active"] == 8


def test_kill_9_during_the_export_wait_and_the_file_load_converges(
    emulator: Emulator, proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path
) -> None:
    """An export load killed while the export runs (held IN_PROGRESS by the proxy), then
    killed again soon after the export finished (reading its files, or just after), with the
    table changing throughout: the last start converges exactly."""
    rng = random.Random(2027)
    create_table(ddb, table_name)
    for i in range(3000):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))
    ddb.update_continuous_backups(
        TableName=table_name,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )
    bucket = f"exports-{table_name[-12:].lower().replace('_', '-')}"
    emulator.client("s3").create_bucket(Bucket=bucket)
    params = {
        **FAST_PARAMS,
        "dynamodb_initial_load": "export",
        "dynamodb_export_s3_bucket": bucket,
        "dynamodb_export_s3_endpoint": emulator.url,
        "dynamodb_export_poll_interval": "100ms",
    }
    dataset = dataset_entry("orders", table_name, proxy.url, "duckdb", **params)
    states = []
    with Writer(ddb, table_name, random.Random(5), 3200) as writer:
        proxy.hold_exports()
        runtime = RuntimeProcess(tmp_path, [dataset]).start()
        try:
            wait_for(lambda: proxy.requests["DescribeExport"] >= 3, 60, "the export wait")
            states.append(runtime.datasets()[0]["status"])
        finally:
            runtime.kill()
        proxy.hold_exports(False)
        runtime = RuntimeProcess(tmp_path, [dataset]).start()
        try:
            exports = proxy.requests["ExportTableToPointInTime"]
            wait_for(lambda: proxy.requests["ExportTableToPointInTime"] > exports, 60, "export")
            time.sleep(rng.uniform(0.1, 0.6))
            states.append(runtime.datasets()[0]["status"])
        finally:
            runtime.kill()
        final = RuntimeProcess(tmp_path, [dataset]).start()
    try:
        final.wait_ready(timeout=120)
        wait_for(lambda: converged(final.flight_uri, ddb, table_name), 90, "convergence")
        assert_served_equals_source(final.flight_uri, ddb, table_name)
    finally:
        final.kill()
    print(f"killed while {states}; {writer.changes} changes")
    assert states[0] == "bootstrapping" and writer.changes > 100
    assert proxy.requests["Scan"] == 0  # every load read the export, never the table
