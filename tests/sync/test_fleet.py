"""``DatasetFleet`` over real engines: datasets at one location share one accelerator, a missing
file starts from the newest snapshot, and a dataset that cannot be opened leaves nothing open.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sync.accelerators.base import open_accelerator
from sync.changes import OP_COLUMN, ChangeBatch, Checkpoint, Op, ShardPosition
from sync.fleet import DatasetFleet
from sync.schema import Column, ColumnType, TableSpec
from sync.settings import AccelerationSettings, DatasetSettings, SnapshotPolicy
from sync.snapshots import LocalStore, SnapshotSettings
from sync.status import State
from tests.dynamo import Emulator, create_table
from tests.harness import settings_for, wait_for

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"
NOWHERE = "http://127.0.0.1:9"  # DynamoDB is never called while a fleet is only opened
SPEC = TableSpec(
    "orders", (Column("pk", ColumnType.VARCHAR), Column("n", ColumnType.BIGINT)), ("pk",)
)


def dataset(
    name: str, engine: str, mode: str, file: Path | None = None, **kw: Any
) -> DatasetSettings:
    settings = settings_for(NOWHERE, name, engine, mode, Path("."), **kw)
    return replace(settings, name=name, acceleration=replace(settings.acceleration, file=file))


def held_open(*paths: Path) -> list[str]:
    """Files among ``paths`` (and their ``-wal``/``.wal`` companions) this process holds open."""
    wanted = {str(p.resolve()) for p in paths}
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if any(target.startswith(w) for w in wanted):
            held.append(target)
    return held


def write_orders(file: Path, engine: str, rows: dict[str, int], sequence: str) -> None:
    """A database file holding ``orders`` with ``rows`` and a checkpoint at ``sequence``."""
    with open_accelerator(AccelerationSettings(engine, "file", file)) as accelerator:
        accelerator.create_table(SPEC)
        table = pa.table(
            {
                OP_COLUMN: pa.array([int(Op.UPSERT)] * len(rows), pa.int8()),
                "pk": list(rows),
                "n": pa.array(list(rows.values()), pa.int64()),
            }
        )
        position = ShardPosition(ARN, "shardId-0001", None, sequence)
        accelerator.apply("orders", SPEC, ChangeBatch(table, Checkpoint(ARN, (position,))))


def rows_of(fleet: DatasetFleet, index: int) -> dict[str, int]:
    handle = fleet.datasets[index].accelerator.query_handle()
    result = handle.execute("SELECT pk, n FROM orders", ()).read_all()
    return dict(zip(result["pk"].to_pylist(), result["n"].to_pylist(), strict=True))


def test_datasets_at_one_location_share_one_accelerator(tmp_path: Path) -> None:
    shared = tmp_path / "shared.duckdb"
    settings = [
        dataset("a", "duckdb", "file", shared),
        dataset("b", "sqlite", "file", tmp_path / "own.sqlite"),
        # The same file spelled another way is the same location.
        dataset("c", "duckdb", "file", tmp_path / "sub" / ".." / "shared.duckdb"),
        dataset("d", "duckdb", "memory"),
        dataset("e", "duckdb", "memory"),
        dataset("f", "sqlite", "memory"),
    ]
    (tmp_path / "sub").mkdir()
    with DatasetFleet(settings) as fleet:
        by_name = {d.settings.name: d.accelerator for d in fleet.datasets}
        assert [d.settings.name for d in fleet.datasets] == ["a", "b", "c", "d", "e", "f"]
        assert by_name["a"] is by_name["c"]
        assert by_name["d"] is by_name["e"]
        assert len({id(a) for a in by_name.values()}) == 4
        assert by_name["b"].engine == "sqlite" and by_name["f"].engine == "sqlite"
        # What one dataset writes the other sees in the same database: they can be joined.
        by_name["a"].create_table(SPEC)
        assert by_name["c"].table_spec("orders") is not None
    assert not held_open(shared, tmp_path / "own.sqlite")


def test_datasets_in_one_postgres_database_share_one_accelerator(
    pg_connection: dict[str, str],
) -> None:
    settings = [
        dataset("a", "postgres", "file", connection=pg_connection),
        dataset("b", "postgres", "file", connection=pg_connection),
    ]
    with DatasetFleet(settings) as fleet:
        assert fleet.datasets[0].accelerator is fleet.datasets[1].accelerator


@pytest.mark.parametrize("engine", ["duckdb", "sqlite"])
def test_a_missing_file_starts_from_the_newest_snapshot(tmp_path: Path, engine: str) -> None:
    file = tmp_path / "data" / f"orders.{engine}"
    store_dir = tmp_path / "snapshots"
    store = LocalStore(store_dir)
    write_orders(file, engine, {"k1": 1}, "100")
    store.put(file.name, file)
    file.unlink()
    write_orders(file, engine, {"k1": 2, "k2": 2}, "200")
    store.put(file.name, file)  # the newest
    file.unlink()
    settings = dataset("orders", engine, "file", file, snapshots=SnapshotPolicy("bootstrap_only"))
    with DatasetFleet([settings], SnapshotSettings(str(store_dir))) as fleet:
        assert rows_of(fleet, 0) == {"k1": 2, "k2": 2}
        checkpoint = fleet.datasets[0].accelerator.load_checkpoint("orders")
        assert checkpoint is not None and checkpoint.shards[0].sequence_number == "200"


def test_an_existing_file_or_a_dataset_not_starting_from_snapshots_is_not_restored(
    tmp_path: Path,
) -> None:
    store_dir = tmp_path / "snapshots"
    kept = tmp_path / "kept.duckdb"
    write_orders(kept, "duckdb", {"snapshot": 1}, "1")
    LocalStore(store_dir).put(kept.name, kept)
    kept.unlink()
    write_orders(kept, "duckdb", {"local": 1}, "2")  # newer than its snapshot
    fresh = tmp_path / "fresh.duckdb"
    write_orders(fresh, "duckdb", {"snapshot": 1}, "1")
    LocalStore(store_dir).put(fresh.name, fresh)
    fresh.unlink()
    settings = [
        dataset("kept", "duckdb", "file", kept, snapshots=SnapshotPolicy("enabled")),
        dataset("fresh", "duckdb", "file", fresh, snapshots=SnapshotPolicy("create_only")),
    ]
    with DatasetFleet(settings, SnapshotSettings(str(store_dir))) as fleet:
        assert rows_of(fleet, 0) == {"local": 1}
        assert fleet.datasets[1].accelerator.table_spec("orders") is None


@pytest.mark.parametrize("engine", ["duckdb", "sqlite"])
def test_a_dataset_that_cannot_be_opened_closes_the_accelerators_opened_before(
    tmp_path: Path, engine: str
) -> None:
    first, second = tmp_path / "first.duckdb", tmp_path / "second.sqlite"
    opened = [
        dataset("first", "duckdb", "file", first),
        dataset("second", "sqlite", "file", second),
    ]
    # The probe sees an open fleet's files, so it can tell a leak.
    with DatasetFleet(opened):
        assert held_open(first) and held_open(second)
    assert not held_open(first, second)

    (tmp_path / "plain").write_text("not a folder")
    broken = dataset("broken", engine, "file", tmp_path / "plain" / f"x.{engine}")
    threads = set(threading.enumerate())
    with pytest.raises(FileExistsError):  # the engine cannot make the file's folder
        DatasetFleet([*opened, broken])
    assert not held_open(first, second)
    assert set(threading.enumerate()) <= threads


def test_a_started_fleet_syncs_its_datasets_and_close_stops_them(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(ddb, table_name)
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "k1"}, "n": {"N": "7"}})
    file = tmp_path / "shared.duckdb"
    settings = [
        replace(settings_for(emulator.url, table_name, "duckdb", "file", tmp_path), name=name)
        for name in ("orders_a", "orders_b")
    ]
    settings = [replace(s, acceleration=replace(s.acceleration, file=file)) for s in settings]
    fleet = DatasetFleet(settings)
    try:
        fleet.start()
        wait_for(
            lambda: all(d.status().state is State.READY for d in fleet.datasets),
            what="both datasets ready",
        )
        handle = fleet.datasets[0].accelerator.query_handle()
        joined = handle.execute(
            "SELECT a.pk, b.n FROM orders_a AS a JOIN orders_b AS b ON a.pk = b.pk", ()
        ).read_all()
        assert joined.to_pylist() == [{"pk": "k1", "n": 7}]
    finally:
        fleet.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("sync-")]
    assert not held_open(file)
    fleet.close()  # idempotent
