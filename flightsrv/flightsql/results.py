"""Result batches on their way to the wire: bounded in size, true to the announced schema."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

# Clients cap gRPC messages (the ADBC Flight SQL driver at 16 MiB by default); a batch is one
# IPC message, so batches are kept well under that even when row sizes vary within a batch.
MAX_BATCH_BYTES = 4 * 1024 * 1024
# Bytes a column's buffers may take beyond its values (padding), in a batch's size.
_COLUMN_SLACK_BYTES = 64


class SchemaChanged(Exception):
    """The engine returned columns that cannot be made to fit the schema announced earlier."""


def rechunk(batches: Iterable[pa.RecordBatch], max_bytes: int) -> Iterator[pa.RecordBatch]:
    """Split batches larger than ``max_bytes`` into zero-copy slices; drop empty batches."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        yield from _split(batch, max_bytes)


def _split(batch: pa.RecordBatch, max_bytes: int) -> Iterator[pa.RecordBatch]:
    size = batch.nbytes
    if size <= max_bytes or batch.num_rows == 1:
        yield batch
        return
    rows = max(1, batch.num_rows * max_bytes // size)
    if rows >= batch.num_rows:
        rows = batch.num_rows // 2
    for start in range(0, batch.num_rows, rows):
        piece = batch.slice(start, rows)
        if piece.nbytes > max_bytes and piece.num_rows > 1:
            yield from _split(piece, max_bytes)  # rows there are wider than the average
        else:
            yield piece


def rows_within(schema: pa.Schema, max_bytes: int) -> int | None:
    """The most rows a batch of ``schema`` can hold and stay within ``max_bytes``, or None when
    a column's values vary in size (strings, lists…): only their batches tell."""
    bits = 0
    for field in schema:
        width = _bits_per_row(field.type)
        if width is None:
            return None
        bits += width
    budget = max_bytes - _COLUMN_SLACK_BYTES * len(schema)
    return max(1, budget * 8 // max(bits, 1))


def _bits_per_row(type_: pa.DataType) -> int | None:
    """Bits one row takes in a column of ``type_``, its validity bit included."""
    if pa.types.is_null(type_):
        return 0
    if pa.types.is_struct(type_):
        total = 1
        for i in range(type_.num_fields):
            child = _bits_per_row(type_.field(i).type)
            if child is None:
                return None
            total += child
        return total
    if pa.types.is_fixed_size_list(type_):
        child = _bits_per_row(type_.value_type)
        return None if child is None else 1 + type_.list_size * child
    if pa.types.is_dictionary(type_):
        return None
    try:
        return 1 + type_.bit_width
    except ValueError:  # not of a fixed width
        return None


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` under ``schema``: same columns by position, renamed and cast if need be.

    GetFlightInfo announces a schema before DoGet runs the query again; clients (the Go
    driver) reject a stream whose schema differs, and an engine that infers types from values
    (SQLite) may type a column differently on the second run.
    """
    if batch.schema.equals(schema, check_metadata=True):
        return batch
    if batch.num_columns != len(schema):
        raise SchemaChanged(
            f"the result has {batch.num_columns} columns, {len(schema)} were announced; "
            "run the query again"
        )
    arrays = []
    for column, field in zip(batch.columns, schema, strict=True):
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise SchemaChanged(
                    f"column {field.name!r} changed type from {field.type} to {column.type} "
                    f"since the query was planned; run it again ({e})"
                ) from None
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
