"""How a dataset is first loaded: from an S3 export (``dynamodb_initial_load: export | auto``),
at every start or not at all (``dynamodb_replication_initial_snapshot: always | disabled``).
Each test drives a real DatasetSync against the moto server (DynamoDB and S3) through the
fault proxy, which counts every request by operation."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.settings import DatasetSettings, ExportSettings
from sync.status import State
from tests.dynamo import Emulator, create_table, random_item
from tests.harness import (
    assert_mirror_equals_source,
    caught_up,
    mutate,
    settings_for,
    start,
    wait_for,
)
from tests.streamfaults import StreamFaultProxy

pytestmark = pytest.mark.slow  # loads and replays waited out in real time

ITEMS = 2_000


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[StreamFaultProxy]:
    with StreamFaultProxy(emulator.url, seed=20261205) as p:
        yield p


def seed(ddb: Any, table: str, rng: random.Random, pitr: bool = True) -> None:
    create_table(ddb, table)
    for i in range(ITEMS):
        ddb.put_item(TableName=table, Item=random_item(rng, f"k{i}", 0))
    if pitr:
        ddb.update_continuous_backups(
            TableName=table,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )


def export_settings(
    emulator: Emulator, proxy: StreamFaultProxy, table: str, tmp_path: Path, initial_load: str
) -> DatasetSettings:
    bucket = f"exports-{uuid.uuid4().hex[:12]}"
    emulator.client("s3").create_bucket(Bucket=bucket)
    export = ExportSettings(
        bucket,
        "mirror",
        endpoint_url=emulator.url,  # S3 straight to the emulator; DynamoDB through the proxy
        poll_interval=timedelta(milliseconds=100),
        timeout=timedelta(seconds=60),
    )
    return settings_for(
        proxy.url, table, "duckdb", "file", tmp_path, initial_load=initial_load, export=export
    )


def test_an_export_bootstrap_converges_with_changes_made_during_it_and_never_scans(
    emulator: Emulator,
    proxy: StreamFaultProxy,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list,
) -> None:
    rng = random.Random(15)
    seed(ddb, table_name, rng)
    proxy.hold_exports()  # the export stays IN_PROGRESS while the table keeps changing
    settings = export_settings(emulator, proxy, table_name, tmp_path, "export")
    sync = start(settings, running)
    wait_for(lambda: proxy.requests["DescribeExport"] >= 2, what="the export being polled")
    for version in range(1, 301):
        mutate(ddb, table_name, rng, ITEMS + 200, version)
    assert sync.status().state is not State.READY
    proxy.hold_exports(False)
    wait_for(lambda: sync.status().state is State.READY, timeout=60, what="Ready")
    wait_for(caught_up(sync, ddb, table_name), timeout=60, what="changes made during the export")
    assert_mirror_equals_source(sync, ddb, table_name)
    assert proxy.requests["ExportTableToPointInTime"] == 1
    assert proxy.requests["Scan"] == 0


def test_auto_falls_back_to_a_scan_when_the_table_has_no_point_in_time_recovery(
    emulator: Emulator,
    proxy: StreamFaultProxy,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list,
) -> None:
    seed(ddb, table_name, random.Random(16), pitr=False)
    sync = start(export_settings(emulator, proxy, table_name, tmp_path, "auto"), running)
    wait_for(lambda: sync.status().state is State.READY, timeout=60, what="Ready")
    assert_mirror_equals_source(sync, ddb, table_name)
    assert proxy.requests["ExportTableToPointInTime"] == 1
    assert proxy.requests["Scan"] > 0


def test_export_without_point_in_time_recovery_is_an_error_with_the_command(
    emulator: Emulator,
    proxy: StreamFaultProxy,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list,
) -> None:
    seed(ddb, table_name, random.Random(17), pitr=False)
    sync = start(export_settings(emulator, proxy, table_name, tmp_path, "export"), running)
    wait_for(lambda: sync.status().state is State.ERROR, timeout=60, what="error")
    error = sync.status().error or ""
    assert "update-continuous-backups" in error and table_name in error
    assert proxy.requests["Scan"] == 0


def test_initial_snapshot_disabled_replays_the_stream_from_its_oldest_record_without_a_scan(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path, running: list
) -> None:
    rng = random.Random(18)
    seed(ddb, table_name, rng, pitr=False)  # every item is also in the stream (24 h)
    for version in range(1, 101):
        mutate(ddb, table_name, rng, ITEMS, version)
    settings = settings_for(
        proxy.url, table_name, "sqlite", "file", tmp_path, initial_snapshot="disabled"
    )
    sync = start(settings, running)
    wait_for(lambda: sync.status().state is State.READY, timeout=60, what="Ready")
    wait_for(caught_up(sync, ddb, table_name), timeout=60, what="the stream replayed")
    assert_mirror_equals_source(sync, ddb, table_name)
    assert proxy.requests["Scan"] == 0


@pytest.mark.parametrize("initial_snapshot", ["auto", "always"])
def test_a_restart_loads_again_only_with_initial_snapshot_always(
    proxy: StreamFaultProxy,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list,
    initial_snapshot: str,
) -> None:
    rng = random.Random(19)
    seed(ddb, table_name, rng, pitr=False)
    settings = settings_for(
        proxy.url, table_name, "duckdb", "file", tmp_path, initial_snapshot=initial_snapshot
    )
    first = start(settings, running)
    wait_for(lambda: first.status().state is State.READY, timeout=60, what="Ready")
    first.stop()
    first.accelerator.close()
    scans = proxy.requests["Scan"]
    assert scans > 0
    for version in range(1, 51):
        mutate(ddb, table_name, rng, ITEMS, version)
    second = start(replace(settings), running)
    wait_for(lambda: second.status().state is State.READY, timeout=60, what="Ready again")
    wait_for(caught_up(second, ddb, table_name), timeout=60, what="caught up")
    assert_mirror_equals_source(second, ddb, table_name)
    if initial_snapshot == "always":
        assert proxy.requests["Scan"] > scans
    else:
        assert proxy.requests["Scan"] == scans
