"""Acceleration snapshots: written on their trigger, to a directory or S3 (the emulator's S3
over HTTP), and used to bootstrap a dataset that starts without its file."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import pytest
import yaml

from sync.snapshots import LocalStore, SnapshotRestoreError, restore_newest
from tests.dynamo import Emulator, create_table, normalise, random_item, scan_all
from tests.harness import mutate, wait_for
from tests.runtime_process import RuntimeProcess, dataset_entry

pytestmark = pytest.mark.slow  # runtimes writing and restoring snapshots


def with_snapshots(runtime: RuntimeProcess, block: dict[str, Any]) -> RuntimeProcess:
    doc = yaml.safe_load(runtime.config.read_text())
    runtime.config.write_text(yaml.safe_dump({**doc, "snapshots": block}))
    return runtime


def snapshot_dataset(
    table: str, endpoint: str, engine: str = "duckdb", **params: Any
) -> dict[str, Any]:
    dataset = dataset_entry("orders", table, endpoint, engine, **params)
    dataset["acceleration"].update(
        snapshots="enabled", snapshots_trigger="stream_batches", snapshots_trigger_threshold=2
    )
    return dataset


def versions(uri: str) -> dict[str, Any]:
    with flightsql.connect(uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT pk, version FROM orders")
        return dict(cur.fetchall())


def source_versions(ddb: Any, table: str) -> dict[str, Any]:
    return {i["pk"]: normalise(i["version"]) for i in scan_all(ddb, table)}


def run_snapshot_cycle(
    emulator: Emulator,
    ddb: Any,
    table: str,
    tmp_path: Path,
    runtimes: list[RuntimeProcess],
    block: dict[str, Any],
    snapshot_count: Any,
    engine: str = "duckdb",
) -> RuntimeProcess:
    """Mirror with snapshots, stop, delete the local file, change the table, start again:
    the second runtime must start from the snapshot, not from a scan."""
    rng = random.Random(table)
    create_table(ddb, table)
    for i in range(100):
        ddb.put_item(TableName=table, Item=random_item(rng, f"k{i}", 0))
    dataset = snapshot_dataset(table, emulator.url, engine)
    first = with_snapshots(RuntimeProcess(tmp_path, [dataset]), block)
    runtimes.append(first.start())
    first.wait_ready()
    for version in range(1, 61):
        mutate(ddb, table, rng, 120, version)
        if version % 10 == 0:
            time.sleep(0.2)  # several stream batches
    wait_for(lambda: snapshot_count() >= 2, what="snapshots after bootstrap and batches")
    assert first.terminate() == 0
    local = tmp_path / "data" / f"orders.{engine}"
    if local.is_dir():  # cayenne: a directory of files and its metastore
        shutil.rmtree(local)
    else:
        local.unlink()
    for version in range(61, 101):
        mutate(ddb, table, rng, 120, version)
    second = with_snapshots(RuntimeProcess(tmp_path, [dataset]), block)
    runtimes.append(second.start())
    second.wait_ready()
    wait_for(
        lambda: versions(second.flight_uri) == source_versions(ddb, table),
        what="catch-up from the snapshot's checkpoint",
    )
    text = second.log.read_text()  # both runs: the log file is appended to
    assert "from snapshot" in text and "resuming from its checkpoint" in text
    return second


def test_snapshots_to_a_directory_then_bootstrap_from_the_newest(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path, runtimes: list[RuntimeProcess]
) -> None:
    folder = tmp_path / "snapshots"
    store = LocalStore(folder)
    second = run_snapshot_cycle(
        emulator,
        ddb,
        table_name,
        tmp_path,
        runtimes,
        {"enabled": True, "location": str(folder)},
        lambda: len(store.names("orders.duckdb")),
    )
    text = second.log.read_text()
    assert text.count("bootstrapping from table") == 1, "the restart must not scan the table"
    status = second.datasets()[0]
    assert status["status"] == "ready"


def test_cayenne_snapshots_to_a_directory_then_bootstrap_from_the_newest(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path, runtimes: list[RuntimeProcess]
) -> None:
    folder = tmp_path / "snapshots"
    store = LocalStore(folder)
    second = run_snapshot_cycle(
        emulator,
        ddb,
        table_name,
        tmp_path,
        runtimes,
        {"enabled": True, "location": str(folder)},
        lambda: len(store.names("orders.cayenne")),
        engine="cayenne",
    )
    assert second.log.read_text().count("bootstrapping from table") == 1


def test_snapshots_to_s3_then_bootstrap_from_the_newest(
    emulator: Emulator,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    runtimes: list[RuntimeProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    s3 = emulator.client("s3")
    bucket = table_name.lower().replace("_", "-")[:60]
    s3.create_bucket(Bucket=bucket)

    def count() -> int:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="mirrors/orders.duckdb/")
        return sum(1 for o in listed.get("Contents", []) if o["Key"].endswith(".duckdb"))

    block = {
        "enabled": True,
        "location": f"s3://{bucket}/mirrors",
        "bootstrap_on_failure_behavior": "warn",
        "params": {"s3_region": "us-east-1", "s3_endpoint": emulator.url},
    }
    second = run_snapshot_cycle(emulator, ddb, table_name, tmp_path, runtimes, block, count)
    assert second.log.read_text().count("bootstrapping from table") == 1
    manifest = s3.get_object(Bucket=bucket, Key="mirrors/orders.duckdb/manifest.json")
    assert b"snapshots" in manifest["Body"].read()


def test_stale_snapshot_follows_the_retention_behaviour(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path, runtimes: list[RuntimeProcess]
) -> None:
    rng = random.Random(3)
    create_table(ddb, table_name)
    for i in range(20):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))
    folder = tmp_path / "snapshots"
    block = {"enabled": True, "location": str(folder)}
    dataset = snapshot_dataset(table_name, emulator.url, shard_retention="3s")
    first = with_snapshots(RuntimeProcess(tmp_path, [dataset]), block)
    runtimes.append(first.start())
    first.wait_ready()
    wait_for(lambda: len(LocalStore(folder).names("orders.duckdb")) >= 1, what="a snapshot")
    first.kill()
    (tmp_path / "data" / "orders.duckdb").unlink()
    time.sleep(3.5)  # the snapshot's checkpoint is now older than the retention
    second = with_snapshots(RuntimeProcess(tmp_path, [dataset]), block)
    runtimes.append(second.start())
    wait_for(lambda: second.datasets()[0]["status"] == "error", what="error, never Ready")
    status = second.datasets()[0]
    assert "older than the stream's retention" in status["error"]
    assert second.get("/v1/ready")[0] == 503


def test_restore_failure_behaviours(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "snaps")
    good = tmp_path / "good.duckdb"
    good.write_bytes(b"older snapshot")
    store.put("db.duckdb", good)
    time.sleep(0.01)
    good.write_bytes(b"newest snapshot")
    newest = store.put("db.duckdb", good)
    (tmp_path / "snaps" / "db.duckdb" / newest).unlink()
    (tmp_path / "snaps" / "db.duckdb" / newest).mkdir()  # the newest can no longer be read

    target = tmp_path / "data" / "db.duckdb"
    assert restore_newest(store, target, "warn") is None and not target.exists()
    with pytest.raises(SnapshotRestoreError, match="could not be restored after 5 attempts"):
        restore_newest(store, target, "retry")
    assert restore_newest(store, target, "fallback") is not None
    assert target.read_bytes() == b"older snapshot"
