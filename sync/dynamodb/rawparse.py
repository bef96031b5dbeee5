"""Bulk parsing of raw DynamoDB JSON bodies (Scan, GetRecords, S3 export files) into Arrow.

botocore's own response parser handles about 8,000 stream records/s per core; parsing the raw
body with pyarrow's JSON reader is ~50x faster and yields columns directly. Attribute values
stay in DynamoDB's typed form (``struct<S, N, M, …>`` per attribute, see :mod:`.typedvalues`)
until :mod:`.infer` types them and :mod:`.convert` makes them columns.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

# Arrow's JSON reader turns strings that all look like ISO 8601 times ("2024-03-15",
# "2024-03-15T14:30:00+02:00") into timestamp[s], losing their text (its zone, its date-only
# form). The paths of S values (and SS sets) it did that to are remembered and read as strings
# from then on, through a partial explicit schema (other fields are still inferred); a body
# that shows a new such path is read again. A table's paths are few and stable, so in the
# steady state every body is read once.
MAX_STRING_HINTS = 4096
Path = tuple[str, ...]  # field names from the top, "[]" for a list's elements


class _StringHints:
    """The explicit schema forcing every S / SS path seen as a timestamp back to strings."""

    def __init__(self) -> None:
        self._paths: set[Path] = set()
        self._schema: pa.Schema | None = None
        self._lock = threading.Lock()

    def read(self, body: bytes) -> pa.Table:
        table = _read(body, self._schema)
        found = set(_timestamp_paths(table.schema))
        if not found:
            return table
        with self._lock:
            if len(self._paths | found) > MAX_STRING_HINTS:
                self._paths = set()  # dynamic map keys holding dates: start over
            self._paths |= found
            self._schema = _hint_schema(self._paths)
            schema = self._schema
        return _read(body, schema)


def _read(body: bytes, schema: pa.Schema | None) -> pa.Table:
    options = pj.ReadOptions(block_size=max(len(body) + 1024, 1 << 20), use_threads=False)
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    return pj.read_json(io.BytesIO(body), read_options=options, parse_options=parse)


def _timestamp_paths(schema: pa.Schema) -> Iterator[Path]:
    def walk(kind: pa.DataType, path: Path) -> Iterator[Path]:
        if pa.types.is_struct(kind):
            for f in kind:
                if f.name == "S" and pa.types.is_timestamp(f.type):
                    yield (*path, "S")
                elif f.name == "SS" and pa.types.is_list(f.type):
                    if pa.types.is_timestamp(f.type.value_type):
                        yield (*path, "SS")
                else:
                    yield from walk(f.type, (*path, f.name))
        elif pa.types.is_list(kind):
            yield from walk(kind.value_type, (*path, "[]"))

    for f in schema:
        yield from walk(f.type, (f.name,))


def _hint_schema(paths: set[Path]) -> pa.Schema:
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = None  # a leaf: S or SS

    def build(name: str, node: dict[str, Any] | None) -> pa.DataType:
        if node is None:
            return pa.string() if name == "S" else pa.list_(pa.string())
        if list(node) == ["[]"]:
            return pa.list_(build("[]", node["[]"]))
        return pa.struct([pa.field(k, build(k, v)) for k, v in sorted(node.items())])

    return pa.schema([pa.field(k, build(k, v)) for k, v in sorted(tree.items())])


_SCAN_HINTS = _StringHints()
_RECORDS_HINTS = _StringHints()
_EXPORT_HINTS = _StringHints()


def _parse_object(body: bytes, hints: _StringHints) -> pa.Table:
    # The JSON reader is line-oriented; raw newlines can only be insignificant whitespace in
    # JSON (string newlines are escaped), so flattening them is safe.
    if b"\n" in body:
        body = body.replace(b"\n", b" ")
    return hints.read(body)


def _scalar(table: pa.Table, name: str) -> Any:
    if name not in table.column_names:
        return None
    return table.column(name)[0].as_py()


def _without_nulls(value: Any) -> Any:
    """A struct read back as a dict holds None for its fields absent from this body (string
    hints, other keys): the key DynamoDB sent has none."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _list_items(table: pa.Table, name: str) -> pa.StructArray | None:
    if name not in table.column_names:
        return None
    values = pc.list_flatten(table.column(name)).combine_chunks()
    if len(values) == 0 or not pa.types.is_struct(values.type):
        return None
    return values


@dataclass(frozen=True)
class RecordsPage:
    """One GetRecords response: ``records`` is the ``Records`` array as Arrow structs;
    ``nbytes`` the body's size (a page near GetRecords' 1 MB limit means more is waiting)."""

    records: pa.StructArray | None
    next_shard_iterator: str | None
    nbytes: int = 0

    @property
    def count(self) -> int:
        return 0 if self.records is None else len(self.records)


@dataclass(frozen=True)
class ScanPage:
    """One Scan response: ``items`` in DynamoDB's typed form, and where the next page starts.

    ``consumed_capacity`` is the read capacity units the page cost (``ConsumedCapacity``, when
    asked for with ``ReturnConsumedCapacity``); ``nbytes`` the body's size.
    """

    items: pa.StructArray | None
    last_evaluated_key: dict[str, Any] | None
    scanned_count: int
    consumed_capacity: float | None = None
    nbytes: int = 0

    @property
    def count(self) -> int:
        return 0 if self.items is None else len(self.items)


def parse_get_records(body: bytes) -> RecordsPage:
    table = _parse_object(body, _RECORDS_HINTS)
    return RecordsPage(
        _list_items(table, "Records"), _scalar(table, "NextShardIterator"), len(body)
    )


def parse_scan(body: bytes) -> ScanPage:
    table = _parse_object(body, _SCAN_HINTS)
    return ScanPage(
        _list_items(table, "Items"),
        _without_nulls(_scalar(table, "LastEvaluatedKey")),
        _scalar(table, "ScannedCount") or 0,
        _capacity_units(table),
        len(body),
    )


def _capacity_units(table: pa.Table) -> float | None:
    """``ConsumedCapacity.CapacityUnits`` (a single struct field: no Python dict built)."""
    if "ConsumedCapacity" not in table.column_names:
        return None
    consumed = table.column("ConsumedCapacity")
    if not pa.types.is_struct(consumed.type) or consumed.type.get_field_index("CapacityUnits") < 0:
        return None
    units = pc.struct_field(consumed, "CapacityUnits")[0].as_py()
    return None if units is None else float(units)


def parse_export_lines(body: bytes) -> pa.StructArray | None:
    """Items of an S3 export's DYNAMODB_JSON data: whole lines of ``{"Item": {...}}``.

    The items come in the typed form :func:`parse_scan` gives, with the same handling of
    strings that look like times, so an export loads through the Scan's path unchanged.
    """
    table = _EXPORT_HINTS.read(body)
    if table.num_rows == 0 or "Item" not in table.column_names:
        return None
    items = table.column("Item").combine_chunks()
    return items if pa.types.is_struct(items.type) else None
