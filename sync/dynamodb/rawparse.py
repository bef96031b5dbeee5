"""Bulk parsing of raw DynamoDB JSON response bodies (Scan, GetRecords) into Arrow.

botocore's own response parser handles about 8,000 stream records/s per core; parsing the raw
body with pyarrow's JSON reader is ~50x faster and yields columns directly. Attribute values
stay in DynamoDB's typed form (``struct<S, N, M, …>`` per attribute) until :mod:`.convert`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj


def _parse_object(body: bytes) -> pa.Table:
    # The JSON reader is line-oriented; raw newlines can only be insignificant whitespace in
    # JSON (string newlines are escaped), so flattening them is safe.
    if b"\n" in body:
        body = body.replace(b"\n", b" ")
    options = pj.ReadOptions(block_size=max(len(body) + 1024, 1 << 20), use_threads=False)
    return pj.read_json(io.BytesIO(body), read_options=options)


def _scalar(table: pa.Table, name: str) -> Any:
    if name not in table.column_names:
        return None
    return table.column(name)[0].as_py()


def _list_items(table: pa.Table, name: str) -> pa.StructArray | None:
    if name not in table.column_names:
        return None
    values = pc.list_flatten(table.column(name)).combine_chunks()
    if len(values) == 0 or not pa.types.is_struct(values.type):
        return None
    return values


@dataclass(frozen=True)
class RecordsPage:
    """One GetRecords response: ``records`` is the ``Records`` array as Arrow structs."""

    records: pa.StructArray | None
    next_shard_iterator: str | None

    @property
    def count(self) -> int:
        return 0 if self.records is None else len(self.records)


@dataclass(frozen=True)
class ScanPage:
    """One Scan response: ``items`` in DynamoDB's typed form, and where the next page starts."""

    items: pa.StructArray | None
    last_evaluated_key: dict[str, Any] | None
    scanned_count: int

    @property
    def count(self) -> int:
        return 0 if self.items is None else len(self.items)


def parse_get_records(body: bytes) -> RecordsPage:
    table = _parse_object(body)
    return RecordsPage(_list_items(table, "Records"), _scalar(table, "NextShardIterator"))


def parse_scan(body: bytes) -> ScanPage:
    table = _parse_object(body)
    return ScanPage(
        _list_items(table, "Items"),
        _scalar(table, "LastEvaluatedKey"),
        _scalar(table, "ScannedCount") or 0,
    )
