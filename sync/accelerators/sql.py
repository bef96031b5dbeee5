"""SQL shared by the embedded engines: quoting, DDL and the checkpoint table's rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sync.accelerators.base import CHECKPOINT_TABLE
from sync.changes import Checkpoint, ShardPosition
from sync.schema import ColumnType, SqlType, TableSpec, parse_type

CHECKPOINT_DDL = (
    f"CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} ("
    "dataset VARCHAR NOT NULL, stream_arn VARCHAR NOT NULL, shard_id VARCHAR NOT NULL, "
    "parent_shard_id VARCHAR, sequence_number VARCHAR, drained BOOLEAN NOT NULL, "
    "watermark DOUBLE, updated_at VARCHAR NOT NULL, "
    "PRIMARY KEY (dataset, stream_arn, shard_id))"
)
CHECKPOINT_DELETE = f"DELETE FROM {CHECKPOINT_TABLE} WHERE dataset = ?"
CHECKPOINT_INSERT = f"INSERT INTO {CHECKPOINT_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
CHECKPOINT_SELECT = (
    "SELECT stream_arn, shard_id, parent_shard_id, sequence_number, drained, watermark "
    f"FROM {CHECKPOINT_TABLE} WHERE dataset = ? ORDER BY shard_id"
)


def quote(name: str) -> str:
    """A double-quoted SQL identifier (DynamoDB attribute names may hold any character)."""
    return '"' + name.replace('"', '""') + '"'


def create_table_sql(spec: TableSpec, type_name: Callable[[SqlType], str]) -> str:
    columns = [
        f"{quote(c.name)} {type_name(c.type)}{' NOT NULL' if c.name in spec.key else ''}"
        for c in spec.columns
    ]
    key = ", ".join(quote(k) for k in spec.key)
    return f"CREATE TABLE {quote(spec.name)} ({', '.join(columns)}, PRIMARY KEY ({key}))"


def checkpoint_rows(dataset: str, checkpoint: Checkpoint) -> list[tuple[object, ...]]:
    now = datetime.now(UTC).isoformat()
    watermark = checkpoint.watermark.timestamp() if checkpoint.watermark else None
    return [
        (
            dataset,
            s.stream_arn,
            s.shard_id,
            s.parent_shard_id,
            s.sequence_number,
            s.drained,
            watermark,
            now,
        )
        for s in checkpoint.shards
    ]


def checkpoint_from_rows(rows: Sequence[Sequence[object]]) -> Checkpoint | None:
    if not rows:
        return None
    shards = tuple(
        ShardPosition(str(arn), str(shard), _opt(parent), _opt(seq), bool(drained))
        for arn, shard, parent, seq, drained, _ in rows
    )
    watermark: Any = rows[0][5]
    when = datetime.fromtimestamp(float(watermark), UTC) if watermark is not None else None
    return Checkpoint(shards[0].stream_arn, shards, when)


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def type_from_name(name: str) -> SqlType:
    """The column type an engine's declared type name stands for (VARCHAR if unknown)."""
    try:
        return parse_type(name)
    except ValueError:
        return ColumnType.VARCHAR


def key_match(key: Iterable[str], left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in key)
