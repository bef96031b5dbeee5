"""The sync through the stream fault layer: lineage, expiry, faults, retention, time travel.

Each test drives a real DatasetSync against the emulator through the fault proxy over HTTP
and compares the mirror with the source table item by item.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flightsrv.config import DATASET_METRICS
from flightsrv.metrics import MetricsServer, RuntimeMetrics
from sync.pipeline import STAGING_SUFFIX, DatasetNotQueryable, DatasetSync
from sync.settings import ScanRateLimit
from sync.status import State
from tests.dynamo import Emulator, create_table, random_item
from tests.flightsrv.test_metrics import scrape, stream_samples
from tests.harness import (
    assert_mirror_equals_source,
    caught_up,
    mirror_rows,
    mutate,
    settings_for,
    start,
    wait_for,
)
from tests.streamfaults import StreamFaultProxy

pytestmark = pytest.mark.slow  # stream faults, splits and retention, waited out

FAST = {
    "topology_refresh": timedelta(milliseconds=500),
    "error_retry": timedelta(milliseconds=300),
}


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[StreamFaultProxy]:
    with StreamFaultProxy(emulator.url, seed=20261124) as p:
        yield p


def seed(ddb: Any, table: str, items: int, rng: random.Random) -> None:
    create_table(ddb, table)
    for i in range(items):
        ddb.put_item(TableName=table, Item=random_item(rng, f"k{i}", 0))


class TimeTravelWatch:
    """Polls the mirror and records any key whose version goes backwards.

    Versions only grow in these workloads, so a lower version than one already seen for a key
    (even after a delete) means an older change was applied after a newer one.
    """

    def __init__(self, sync: DatasetSync) -> None:
        self._sync = sync
        self.seen: dict[str, int] = {}
        self.violations: list[tuple[str, int, int]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> TimeTravelWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self._sync.check_queryable()
            except DatasetNotQueryable:
                continue
            for pk, row in mirror_rows(self._sync).items():
                before = self.seen.get(pk, -1)
                if row["version"] < before:
                    self.violations.append((pk, before, row["version"]))
                self.seen[pk] = max(before, row["version"])
            self.polls += 1


def test_three_generations_of_splits_paginated_children_first(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    proxy.configure(max_page_size=2, describe_order="children_first")
    rng = random.Random(3)
    seed(ddb, table_name, 200, rng)
    sync = start(settings_for(proxy.url, table_name, "duckdb", "file", tmp_path, **FAST), running)
    wait_for(lambda: sync.status().state is State.READY, what="Ready")
    version = 0
    with TimeTravelWatch(sync) as watch:
        for _generation in range(3):
            for _ in range(120):
                version += 1
                mutate(ddb, table_name, rng, 260, version)
            proxy.split(table_name, children=2)
        for _ in range(120):
            version += 1
            mutate(ddb, table_name, rng, 260, version)
        wait_for(caught_up(sync, ddb, table_name), what="catch up across 3 generations")
    assert_mirror_equals_source(sync, ddb, table_name)
    assert watch.polls > 0 and watch.violations == []
    wait_for(lambda: sync.status().shards_active == 8, what="8 open shards after 3 splits")
    checkpoint = sync.accelerator.load_checkpoint("mirror")
    assert checkpoint is not None
    assert checkpoint.stream_arn == proxy.stream_arn(table_name)
    open_ids = {
        s["ShardId"]
        for s in proxy.shards(table_name)
        if "EndingSequenceNumber" not in s["SequenceNumberRange"]
    }
    assert open_ids <= {s.shard_id for s in checkpoint.shards}


def test_expired_iterators_resume_after_the_checkpoint(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    proxy.configure(iterator_ttl=0.2)
    rng = random.Random(4)
    seed(ddb, table_name, 100, rng)
    settings = settings_for(
        proxy.url, table_name, "sqlite", "memory", tmp_path, scan_interval=timedelta(seconds=0.3)
    )
    sync = start(settings, running)
    wait_for(lambda: sync.status().state is State.READY, what="Ready")
    for version in range(1, 301):
        mutate(ddb, table_name, rng, 150, version)
        if version % 100 == 0:
            time.sleep(0.4)  # let iterators age past their TTL
    wait_for(caught_up(sync, ddb, table_name), what="catch up with expiring iterators")
    assert_mirror_equals_source(sync, ddb, table_name)
    assert proxy.fault_counts["expired_iterator"] > 0


def test_transient_faults_are_retried_counted_and_keep_ready(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    rng = random.Random(5)
    seed(ddb, table_name, 100, rng)
    sync = start(settings_for(proxy.url, table_name, "duckdb", "memory", tmp_path), running)
    wait_for(lambda: sync.status().state is State.READY, what="Ready")
    states: set[State] = set()
    proxy.faults.reset_counts()
    proxy.set_fault_rates(
        throttling=0.1, limit_exceeded=0.05, http_500=0.03, http_503=0.03, reset=0.02
    )
    for version in range(1, 401):
        mutate(ddb, table_name, rng, 150, version)
        states.add(sync.status().state)
    wait_for(caught_up(sync, ddb, table_name), what="catch up under faults")
    proxy.clear_faults()
    assert_mirror_equals_source(sync, ddb, table_name)
    counts = proxy.fault_counts
    injected = sum(
        counts[k] for k in ("throttling", "limit_exceeded", "http_500", "http_503", "reset")
    )
    assert injected >= 3
    assert sync.status().errors_transient == injected
    assert State.ERROR not in states and states <= {State.READY, State.LAGGING}


def test_permanent_error_goes_to_error_then_recovers(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    rng = random.Random(6)
    seed(ddb, table_name, 50, rng)
    sync = start(settings_for(proxy.url, table_name, "duckdb", "memory", tmp_path, **FAST), running)
    wait_for(lambda: sync.status().state is State.READY, what="Ready")
    proxy.force_error("GetRecords", "AccessDeniedException", message="no streams for you")
    wait_for(lambda: sync.status().state is State.ERROR, what="error state")
    status = sync.status()
    assert "AccessDeniedException" in (status.error or "")
    with pytest.raises(DatasetNotQueryable, match="in error: .*AccessDenied"):
        sync.check_queryable()
    for version in range(1, 51):  # changes while the consumer is dead
        mutate(ddb, table_name, rng, 60, version)
    time.sleep(1.0)  # several slow retries, all refused
    assert sync.status().state is State.ERROR
    proxy.clear_faults()
    wait_for(lambda: sync.status().state is State.READY, what="recovery")
    wait_for(caught_up(sync, ddb, table_name), what="catch up after recovery")
    assert_mirror_equals_source(sync, ddb, table_name)


def _resume_beyond_retention(
    proxy: StreamFaultProxy,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list,
    behavior: str,
) -> DatasetSync:
    """Mirror a table in file mode, stop, let the checkpoint fall out of the stream's retention
    while changes happen, and restart with ``behavior``; returns the restarted sync."""
    rng = random.Random(behavior)
    seed(ddb, table_name, 150, rng)
    settings = settings_for(
        proxy.url,
        table_name,
        "duckdb",
        "file",
        tmp_path,
        retention_behavior=behavior,
        **FAST,
    )
    first = start(settings, running)
    wait_for(lambda: first.status().state is State.READY, what="Ready")
    first.stop()
    first.accelerator.close()
    running.remove(first)
    for version in range(1, 101):
        mutate(ddb, table_name, rng, 200, version)
    time.sleep(2.0)  # the checkpoint is now older than the stream's retention (1.5 s)
    second = start(replace(settings, shard_retention=timedelta(seconds=1.5)), running)
    wait_for(
        lambda: second.status().state is State.ERROR or second.status().reinitializations > 0,
        what="the stale checkpoint to be detected",
    )
    return second


def test_retention_error_behaviour_says_how_to_recover(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    sync = _resume_beyond_retention(proxy, ddb, table_name, tmp_path, running, "error")
    status = sync.status()
    assert status.state is State.ERROR and status.reinitializations == 0
    assert "beyond the stream's retention" in (status.error or "")
    assert "lag_exceeds_shard_retention_behavior" in (status.error or "")
    assert "mirror.duckdb" in (status.error or "")


@pytest.mark.parametrize("behavior", ["ready_after_load", "ready_before_load"])
def test_retention_rebootstrap_behaviours(
    proxy: StreamFaultProxy,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list,
    behavior: str,
) -> None:
    sync = _resume_beyond_retention(proxy, ddb, table_name, tmp_path, running, behavior)
    wait_for(lambda: sync.status().state is State.READY, what="Ready after re-bootstrap")
    wait_for(caught_up(sync, ddb, table_name), what="converge after re-bootstrap")
    assert_mirror_equals_source(sync, ddb, table_name)
    status = sync.status()
    assert status.reinitializations == 1 and status.bootstraps == 1
    metrics = RuntimeMetrics([sync], {"mirror": frozenset(DATASET_METRICS)})
    server = MetricsServer("127.0.0.1", 0, metrics)
    server.start()
    try:
        _, samples = scrape(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.stop()
        metrics.shutdown()
    exported = stream_samples(samples, "mirror")
    assert exported["reinitializations_on_lag_exceeds_shard_retention_total"] == 1
    states = [state for _, state in sync.state_history()]
    assert states[0] is State.STARTING and states[-1] is State.READY
    if behavior == "ready_before_load":
        # Old rows are served from the moment the stale checkpoint is found until the swap.
        assert states[1:] == [State.REBOOTSTRAPPING, State.READY]
    else:
        assert states[1:] == [State.BOOTSTRAPPING, State.CATCHING_UP, State.READY]


def test_stream_reenabled_with_new_arn_is_detected(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    rng = random.Random(8)
    seed(ddb, table_name, 50, rng)
    sync = start(settings_for(proxy.url, table_name, "duckdb", "memory", tmp_path, **FAST), running)
    wait_for(lambda: sync.status().state is State.READY, what="Ready")
    old = proxy.stream_arn(table_name)
    new = proxy.reenable_stream(table_name)
    assert new != old
    wait_for(lambda: sync.status().state is State.ERROR, what="error after re-enable")
    assert "stream changed" in (sync.status().error or "")


def kept_drained(kept: Path) -> bool:
    """Whether a round kept in ``kept`` has a shard drained (read to its end)."""
    for manifest in kept.glob("0*.json"):
        try:
            positions = json.loads(manifest.read_text())["positions"]
        except (OSError, ValueError):
            continue
        if any(p["drained"] for p in positions):
            return True
    return False


def test_a_load_longer_than_the_retention_loses_nothing_even_restarted(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    """The stream keeps records 5 s here; the load takes several times that (a read rate
    limit), is stopped half-way, and resumes. Shards close and
    split while it runs and a writer changes the table throughout: the changes read during
    the load are kept beside the mirror's file, so none is lost when they leave the stream."""
    proxy.configure(retention=5.0)
    rng = random.Random(9)
    seed(ddb, table_name, 400, rng)
    settings = settings_for(
        proxy.url,
        table_name,
        "duckdb",
        "file",
        tmp_path,
        shard_retention=timedelta(seconds=5),
        scan_rate_limit=ScanRateLimit(items_per_s=40),
        scan_segments=2,
        **FAST,
    )
    kept = tmp_path / "mirror.duckdb.changelog"
    stop = threading.Event()
    versions = iter(range(1, 10**6))

    def writer() -> None:
        while not stop.wait(0.02):
            mutate(ddb, table_name, rng, 450, next(versions))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        first = start(settings, running)
        wait_for(lambda: len(list(kept.glob("*.json"))) >= 4, what="rounds kept during the load")
        proxy.split(table_name, children=2)  # the shard being read closes mid-load
        # Stopped once the closed shard is read to its end and kept: a shard closed longer
        # than the retention leaves the stream, so one still unread when the runtime stops
        # would be lost to any reader, log or not.
        wait_for(lambda: kept_drained(kept), what="the closed shard drained into the log")
        wait_for(lambda: first.status().bootstrap is not None, what="load under way")
        first.stop()
        rows_loaded = first.accelerator.row_count(f"mirror{STAGING_SUFFIX}")
        assert 0 < rows_loaded < 400
        first.accelerator.close()
        # Down for less than the retention (nothing can outlive a longer outage): the rest of
        # the load still takes several retentions, so what the first run kept is gone from
        # the stream by the time the load ends.
        time.sleep(0.3)
        second = start(settings, running)
        time.sleep(1.0)
        proxy.split(table_name, children=2)
        wait_for(lambda: second.status().state is State.READY, timeout=60, what="Ready")
        stop.set()
        thread.join()
        wait_for(caught_up(second, ddb, table_name), what="converge")
    finally:
        stop.set()
        thread.join()
    assert_mirror_equals_source(second, ddb, table_name)
    status = second.status()
    assert status.error is None and second.source.health().shards_active >= 2
    assert not kept.exists()  # applied, then removed


def test_a_load_whose_changes_cannot_be_kept_is_an_error_saying_where(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    seed(ddb, table_name, 30, random.Random(9))
    kept = tmp_path / "mirror.duckdb.changelog"
    kept.write_text("not a directory")
    sync = start(settings_for(proxy.url, table_name, "duckdb", "file", tmp_path, **FAST), running)
    wait_for(lambda: sync.status().state is State.ERROR, what="error")
    error = sync.status().error or ""
    assert f"cannot keep the stream's changes during the load in {kept}" in error
    assert "make that path a writable directory" in error
    kept.unlink()
    wait_for(lambda: sync.status().state is State.READY, what="Ready once it can")
    assert_mirror_equals_source(sync, ddb, table_name)


def test_changes_during_scan_applied_before_first_ready_despite_empty_pages(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    proxy.configure(empty_pages=2)
    rng = random.Random(10)
    seed(ddb, table_name, 600, rng)
    stop = threading.Event()
    versions = iter(range(1, 10**6))

    def writer() -> None:
        while not stop.is_set():
            mutate(ddb, table_name, rng, 650, next(versions))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        sync = start(settings_for(proxy.url, table_name, "duckdb", "memory", tmp_path), running)
        with TimeTravelWatch(sync) as watch:
            wait_for(lambda: sync.status().state is State.READY, what="Ready")
            time.sleep(1.5)
            stop.set()
            thread.join()
            wait_for(caught_up(sync, ddb, table_name), what="converge")
        assert watch.polls > 0
        assert watch.violations == [], "a row went back in time after Ready"
        assert_mirror_equals_source(sync, ddb, table_name)
    finally:
        stop.set()
        thread.join()


def test_drained_shards_gone_from_the_stream_are_forgotten(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    rng = random.Random(11)
    seed(ddb, table_name, 50, rng)
    sync = start(settings_for(proxy.url, table_name, "sqlite", "file", tmp_path, **FAST), running)
    wait_for(lambda: sync.status().state is State.READY, what="Ready")
    first = {s.shard_id for s in sync.accelerator.load_checkpoint("mirror").shards}
    proxy.split(table_name, children=1)
    for version in range(1, 21):
        mutate(ddb, table_name, rng, 60, version)
    wait_for(caught_up(sync, ddb, table_name), what="catch up in the child shard")
    # The parent is drained; once its records age out of retention it leaves the stream.
    proxy.configure(retention=0.3)
    time.sleep(0.6)

    def parent_forgotten() -> bool:
        checkpoint = sync.accelerator.load_checkpoint("mirror")
        return checkpoint is not None and not first & {s.shard_id for s in checkpoint.shards}

    wait_for(parent_forgotten, what="the drained parent to leave the checkpoint")
    assert sync.status().state is State.READY


def test_two_tables_in_one_database_keep_their_own_positions(
    proxy: StreamFaultProxy, ddb: Any, tmp_path: Path, running: list
) -> None:
    rng = random.Random(12)
    names = [f"pos{i}-{int(time.time() * 1000)}" for i in range(2)]
    syncs = []
    for name in names:
        seed(ddb, name, 20, rng)
    for index, name in enumerate(names):
        settings = settings_for(proxy.url, name, "duckdb", "file", tmp_path, **FAST)
        settings = replace(settings, name=f"mirror{index}")
        syncs.append(start(settings, running))
    for sync in syncs:
        wait_for(lambda s=sync: s.status().state is State.READY, what="Ready")
    arns = set()
    for index, sync in enumerate(syncs):
        checkpoint = sync.accelerator.load_checkpoint(f"mirror{index}")
        assert checkpoint is not None
        arns.add(checkpoint.stream_arn)
        assert checkpoint.stream_arn == proxy.stream_arn(names[index])
    assert len(arns) == 2
