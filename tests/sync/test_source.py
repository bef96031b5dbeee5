"""The ``Source`` protocol: DynamoDB's implementation against the emulator over HTTP, and
``DatasetSync`` driving a source that is not DynamoDB (Arrow tables pushed by the test)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sync.accelerators.base import open_accelerator
from sync.bootstrap import apply_load
from sync.changes import OP_COLUMN, ChangeBatch, Checkpoint, Op, ShardPosition
from sync.dynamodb import load as dynamodb_load
from sync.errors import PermanentError, RetentionExceeded, StreamNotConfigured, SyncError
from sync.pipeline import DatasetNotQueryable, DatasetSync
from sync.schema import Column, ColumnType, TableSpec, TypeSupport
from sync.settings import AccelerationSettings, DatasetSettings, SourceSettings
from sync.source import (
    ChangeRound,
    ChangeStream,
    LoadBatch,
    LoadProgress,
    Source,
    SourceHealth,
    SourceTable,
)
from sync.sources import UnknownSource, open_source, source_kinds
from sync.status import State
from tests.dynamo import Emulator, create_table
from tests.harness import settings_for, wait_for

SUPPORT = TypeSupport()


def dynamodb_source(emulator: Emulator, table: str, tmp_path: Path, **kw: Any) -> Source:
    settings = settings_for(emulator.url, table, "duckdb", "memory", tmp_path, **kw)
    return open_source(settings, SUPPORT)


def item(pk: str, n: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "n": {"N": str(n)}, "name": {"S": f"name {pk}"}}


def take_rounds(stream: ChangeStream, spec: TableSpec, records: int) -> list[ChangeRound]:
    """Rounds until they hold ``records`` records (idle rounds included)."""
    taken: list[ChangeRound] = []
    deadline = time.monotonic() + 30
    for round_ in stream.rounds(spec, None):
        taken.append(round_)
        if sum(r.records for r in taken) >= records:
            return taken
        assert time.monotonic() < deadline, f"{records} records never came"
        if not round_.records:
            time.sleep(0.05)
    raise AssertionError("rounds ended")


def ops_and_keys(rounds: list[ChangeRound]) -> list[tuple[int, str]]:
    rows = pa.concat_tables([r.batch.rows for r in rounds if r.records])
    return list(zip(rows[OP_COLUMN].to_pylist(), rows["pk"].to_pylist(), strict=True))


# -- DynamoDB behind the protocol ---------------------------------------------------------------


def test_dynamodb_is_the_registered_source(emulator: Emulator, tmp_path: Path) -> None:
    assert source_kinds() == ("dynamodb",)
    settings = settings_for(emulator.url, "any", "duckdb", "memory", tmp_path)
    with pytest.raises(UnknownSource, match=r"unknown source 'kinesis' \(known: dynamodb\)"):
        open_source(settings, SUPPORT, kind="kinesis")


def test_describe_gives_the_key_columns_item_count_and_stream(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(ddb, table_name, range_key=True)
    for i in range(3):
        ddb.put_item(TableName=table_name, Item={"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}})
    table = dynamodb_source(emulator, table_name, tmp_path).describe()
    assert table.name == table_name
    assert table.key == ("pk", "sk")
    assert table.columns == (Column("pk", ColumnType.VARCHAR), Column("sk", ColumnType.BIGINT))
    assert table.item_count == 3
    assert table.stream == ddb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    assert table.empty_spec("mirror") == TableSpec("mirror", table.columns, ("pk", "sk"))


def test_describe_without_the_right_stream_says_how_to_enable_it(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(ddb, table_name, view_type="KEYS_ONLY")
    with pytest.raises(StreamNotConfigured, match="StreamViewType=NEW_AND_OLD_IMAGES"):
        dynamodb_source(emulator, table_name, tmp_path).describe()


def test_load_is_upsert_batches_with_progress_and_an_inferred_schema(
    emulator: Emulator,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_table(ddb, table_name)
    for i in range(25):
        ddb.put_item(TableName=table_name, Item=item(f"k{i:02d}", i))
    monkeypatch.setattr(dynamodb_load, "BATCH_ITEMS", 10)
    source = dynamodb_source(emulator, table_name, tmp_path, scan_segments=3)
    table = source.describe()
    spec = table.empty_spec("mirror")
    load = list(source.load(table, spec, threading.Event()))

    progress = [p.items for p in load if isinstance(p, LoadProgress)]
    batches = [b for b in load if isinstance(b, LoadBatch)]
    assert progress == sorted(progress) and progress[-1] == 25
    assert sum(b.batch.rows.num_rows for b in batches) == 25
    for b in batches:
        assert b.batch.checkpoint is None
        assert set(b.batch.rows[OP_COLUMN].to_pylist()) == {Op.UPSERT}
    final = batches[-1].spec
    assert final.column("n") == Column("n", ColumnType.BIGINT)
    assert final.column("name") == Column("name", ColumnType.VARCHAR)

    # Applied by the generic loader, the rows are the table's.
    with open_accelerator(AccelerationSettings("duckdb", "memory")) as acc:
        acc.create_table(spec)
        loaded, applied = apply_load(acc, "mirror", spec, iter(load))
        rows = acc.query_handle().execute('SELECT pk, n FROM "mirror" ORDER BY pk').read_all()
    assert loaded == final and applied == 25
    assert rows.to_pylist() == [{"pk": f"k{i:02d}", "n": i} for i in range(25)]


def test_changes_come_in_order_with_checkpoints_and_resume_after_them(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(ddb, table_name)
    ddb.put_item(TableName=table_name, Item=item("before", 0))  # older than the capture
    source = dynamodb_source(emulator, table_name, tmp_path)
    table = source.describe()
    spec = table.empty_spec("mirror")
    stop = threading.Event()
    captured_at = datetime.now(UTC)
    stream = source.changes(table, stop)
    try:
        start = stream.capture(captured_at)
        assert start.stream_arn == table.stream and start.watermark == captured_at
        assert start.shards and all(s.stream_arn == table.stream for s in start.shards)
        ddb.put_item(TableName=table_name, Item=item("a", 1))
        ddb.put_item(TableName=table_name, Item=item("b", 2))
        ddb.update_item(
            TableName=table_name,
            Key={"pk": {"S": "a"}},
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "3"}},
        )
        ddb.delete_item(TableName=table_name, Key={"pk": {"S": "b"}})
        rounds = take_rounds(stream, spec, 4)
    finally:
        stream.close()
    assert ops_and_keys(rounds) == [
        (Op.UPSERT, "a"),
        (Op.UPSERT, "b"),
        (Op.UPSERT, "a"),
        (Op.DELETE, "b"),
    ]
    last = rounds[-1]
    assert last.advances and last.spec.column("n") == Column("n", ColumnType.BIGINT)
    checkpoint = last.batch.checkpoint
    assert checkpoint is not None and checkpoint.stream_arn == table.stream
    assert any(s.sequence_number for s in checkpoint.shards)
    assert last.watermark is not None and checkpoint.watermark is not None
    assert abs(checkpoint.watermark.timestamp() - last.watermark) < 1e-3
    health = source.health()
    assert health.shards_active == 1 and health.errors_transient == 0

    # A new stream resumed from the checkpoint brings what came after it, nothing before.
    ddb.put_item(TableName=table_name, Item=item("c", 4))
    resumed = source.changes(table, stop)
    try:
        resumed.resume(checkpoint)
        after = take_rounds(resumed, last.spec, 1)
    finally:
        resumed.close()
    assert ops_and_keys(after) == [(Op.UPSERT, "c")]


def test_a_checkpoint_of_another_stream_cannot_be_resumed(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(ddb, table_name)
    source = dynamodb_source(emulator, table_name, tmp_path)
    table = source.describe()
    other = "arn:aws:dynamodb:us-east-1:123456789012:table/gone/stream/2020-01-01T00:00:00.000"
    stale = Checkpoint(other, (ShardPosition(other, "shardId-1", None, "42"),))
    stream = source.changes(table, threading.Event())
    try:
        with pytest.raises(RetentionExceeded, match="disabled and re-enabled"):
            stream.resume(stale)
    finally:
        stream.close()


# -- DatasetSync with a source that is not DynamoDB -----------------------------------------------

SPEC = TableSpec(
    "mirror", (Column("pk", ColumnType.VARCHAR), Column("n", ColumnType.BIGINT)), ("pk",)
)
LOG = "list-log"


def rows(*changes: tuple[Op, str, int | None]) -> pa.Table:
    """A ChangeBatch's rows: ``_op``, then the columns of ``SPEC``."""
    schema = pa.schema([pa.field(OP_COLUMN, pa.int8(), nullable=False), *SPEC.arrow_schema()])
    ops, keys, values = zip(*changes, strict=True) if changes else ((), (), ())
    return pa.table([list(map(int, ops)), list(keys), list(values)], schema=schema)


class ListChanges:
    """A change log that is a list of Arrow tables; a position is how many were read."""

    def __init__(self, source: ListSource, stop: threading.Event) -> None:
        self._source = source
        self._stop = stop
        self._position = 0

    def _checkpoint(self, watermark: float | None) -> Checkpoint:
        when = datetime.fromtimestamp(watermark, UTC) if watermark is not None else None
        position = ShardPosition(LOG, "0", None, str(self._position))
        return Checkpoint(LOG, (position,), when)

    def capture(self, watermark: datetime | None, oldest: bool = False) -> Checkpoint:
        self._position = 0 if oldest else len(self._source.log)
        return self._checkpoint(watermark.timestamp() if watermark else None)

    def resume(self, checkpoint: Checkpoint) -> Checkpoint:
        if checkpoint.stream_arn != LOG:
            raise RetentionExceeded(f"the checkpoint is for {checkpoint.stream_arn}")
        self._source.resumed_from.append(checkpoint)
        self._position = int(checkpoint.shards[0].sequence_number or 0)
        return checkpoint

    def log_while_loading(self, captured: Checkpoint) -> bool:
        return False  # the list keeps every change for ever

    def rounds(self, spec: TableSpec, watermark: float | None) -> Iterator[ChangeRound]:
        while not self._stop.is_set():
            if self._source.broken is not None:
                raise self._source.broken
            now = time.time()
            if self._position < len(self._source.log):
                changes = self._source.log[self._position]
                self._position += 1
                batch = ChangeBatch(changes, self._checkpoint(now), changes.num_rows)
                yield ChangeRound(batch, spec, now, caught_up=False, advances=True)
            else:
                batch = ChangeBatch(rows(), self._checkpoint(now), 0)
                yield ChangeRound(batch, spec, now, caught_up=True, advances=False)

    def close(self) -> None:
        pass


class ListSource:
    """A table given as Arrow rows, loaded two rows a batch; its changes are tables appended to
    ``log`` by the test."""

    def __init__(self, initial: pa.Table, log: list[pa.Table] | None = None) -> None:
        self.initial = initial
        self.log: list[pa.Table] = [] if log is None else log
        self.loads = 0
        self.resumed_from: list[Checkpoint] = []
        self.broken: SyncError | None = None

    def describe(self) -> SourceTable:
        key = SPEC.columns[:1]
        return SourceTable("items", SPEC.key, key, self.initial.num_rows, LOG)

    def load(
        self,
        table: SourceTable,
        spec: TableSpec,
        stop: threading.Event,
        resume: tuple[ShardPosition, ...] | None = None,
    ) -> Iterator[LoadBatch | LoadProgress]:
        self.loads += 1
        full = replace(SPEC, name=spec.name)
        read = 0
        for batch in self.initial.to_batches(max_chunksize=2):
            part = pa.Table.from_batches([batch])
            read += part.num_rows
            yield LoadProgress(read)
            yield LoadBatch(full, ChangeBatch(part, None, part.num_rows))

    def changes(
        self, table: SourceTable, stop: threading.Event, log_dir: Path | None = None
    ) -> ListChanges:
        return ListChanges(self, stop)

    def health(self) -> SourceHealth:
        return SourceHealth(shards_active=1, errors_transient=2)


def list_settings(tmp_path: Path) -> DatasetSettings:
    return DatasetSettings(
        name="mirror",
        source=SourceSettings(table="items"),
        acceleration=AccelerationSettings("duckdb", "file", tmp_path / "mirror.duckdb"),
        scan_interval=timedelta(milliseconds=20),
    )


def start_list(source: ListSource, tmp_path: Path, running: list[DatasetSync]) -> DatasetSync:
    settings = list_settings(tmp_path)
    sync = DatasetSync(settings, open_accelerator(settings.acceleration), source=source)
    running.append(sync)
    sync.start()
    return sync


def mirror(sync: DatasetSync) -> dict[str, int]:
    table = sync.accelerator.query_handle().execute('SELECT pk, n FROM "mirror"').read_all()
    return {r["pk"]: r["n"] for r in table.to_pylist()}


def test_dataset_sync_mirrors_a_source_that_is_not_dynamodb(
    tmp_path: Path, running: list[DatasetSync]
) -> None:
    initial = rows((Op.UPSERT, "a", 1), (Op.UPSERT, "b", 2), (Op.UPSERT, "c", 3))
    source = ListSource(initial)
    sync = start_list(source, tmp_path, running)
    wait_for(lambda: sync.status().state is State.READY, what="Ready")
    assert mirror(sync) == {"a": 1, "b": 2, "c": 3}
    status = sync.status()
    assert status.bootstraps == 1 and source.loads == 1 and not source.resumed_from
    assert status.shards_active == 1 and status.errors_transient == 2  # the source's health

    source.log.append(rows((Op.UPSERT, "d", 4), (Op.UPSERT, "a", 10), (Op.DELETE, "b", None)))
    source.log.append(rows((Op.UPSERT, "d", 5), (Op.DELETE, "c", None), (Op.UPSERT, "c", 6)))
    wait_for(lambda: mirror(sync) == {"a": 10, "c": 6, "d": 5}, what="changes applied")
    wait_for(lambda: sync.status().records_consumed == 6, what="records counted")
    checkpoint = sync.accelerator.load_checkpoint("mirror")
    assert checkpoint is not None and checkpoint.stream_arn == LOG
    assert checkpoint.shards[0].sequence_number == "2"  # stored with the data it covers
    sync.stop()
    sync.accelerator.close()

    # A restart resumes from the stored position: no second load, no replay of read changes.
    source.log.append(
        rows(
            (Op.UPSERT, "e", 7),
        )
    )
    restarted = ListSource(initial, source.log)
    again = start_list(restarted, tmp_path, running)
    wait_for(lambda: again.status().state is State.READY, what="Ready after restart")
    wait_for(lambda: mirror(again) == {"a": 10, "c": 6, "d": 5, "e": 7}, what="the new change")
    wait_for(lambda: again.status().records_consumed == 1, what="the one new record counted")
    assert restarted.loads == 0 and again.status().bootstraps == 0
    assert [c.shards[0].sequence_number for c in restarted.resumed_from] == ["2"]


def test_a_source_error_puts_the_dataset_in_error_with_its_message(
    tmp_path: Path, running: list[DatasetSync]
) -> None:
    source = ListSource(
        rows(
            (Op.UPSERT, "a", 1),
        )
    )
    sync = start_list(source, tmp_path, running)
    wait_for(lambda: sync.status().state is State.READY, what="Ready")
    source.broken = PermanentError("the change log is gone")
    wait_for(lambda: sync.status().state is State.ERROR, what="error")
    assert sync.status().error == "the change log is gone"
    with pytest.raises(DatasetNotQueryable, match="the change log is gone"):
        sync.check_queryable()


def test_a_declared_primary_key_other_than_the_table_key_is_an_error_naming_both(
    tmp_path: Path, running: list[DatasetSync]
) -> None:
    settings = replace(list_settings(tmp_path), primary_key=("id",))
    source = ListSource(rows((Op.UPSERT, "a", 1)))
    sync = DatasetSync(settings, open_accelerator(settings.acceleration), source=source)
    running.append(sync)
    sync.start()
    wait_for(lambda: sync.status().state is State.ERROR, what="error")
    assert sync.status().error == (
        "acceleration.primary_key (id) is not the key of table items (pk): a mirror is keyed "
        "as its table is; write primary_key: (pk) or remove it"
    )
    assert source.loads == 0  # refused before anything is read
