"""Typed DynamoDB images (Arrow structs) → rows of a ``ChangeBatch``, evolving the schema."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc

from sync.changes import OP_COLUMN, Op
from sync.dynamodb.convert import infer_type, to_column, unify
from sync.dynamodb.rawparse import RecordsPage
from sync.schema import Column, TableSpec

log = logging.getLogger(__name__)


def evolve_spec(spec: TableSpec, images: pa.StructArray | None) -> TableSpec:
    """``spec`` grown by attributes first seen in ``images`` and widened where values of
    another kind arrive (int with float → DOUBLE, other mixes → VARCHAR)."""
    if images is None:
        return spec
    changes = []
    for field in images.type:
        seen = infer_type(pc.struct_field(images, field.name))
        if seen is None:
            continue
        existing = spec.column(field.name)
        if existing is None:
            changes.append(Column(field.name, seen))
        elif field.name not in spec.key and unify(existing.type, seen) != existing.type:
            widened = unify(existing.type, seen)
            log.warning(
                "table %s: column %r widened from %s to %s (values of type %s arrived)",
                spec.name,
                field.name,
                existing.type,
                widened,
                seen,
            )
            changes.append(Column(field.name, widened))
    return spec.with_columns(changes) if changes else spec


def image_rows(
    spec: TableSpec, images: pa.StructArray | None, keys: pa.StructArray, ops: pa.Array
) -> pa.Table:
    """Rows for ``spec``: key columns from ``keys``, values from ``images`` (null on deletes)."""
    length = len(keys)
    names = set(images.type.names) if images is not None else set()
    key_names = set(keys.type.names)
    arrays = [ops]
    for column in spec.columns:
        if column.name in spec.key:
            source = pc.struct_field(keys, column.name) if column.name in key_names else None
        elif column.name in names:
            source = pc.struct_field(images, column.name)
        else:
            source = None
        arrays.append(to_column(source, column.type, length))
    return pa.Table.from_arrays(arrays, schema=rows_schema(spec))


def rows_schema(spec: TableSpec) -> pa.Schema:
    """The schema of a ``ChangeBatch``'s rows for ``spec``: ``_op``, then the columns."""
    return pa.schema([pa.field(OP_COLUMN, pa.int8(), nullable=False), *spec.arrow_schema()])


def upserts(length: int) -> pa.Array:
    return pa.repeat(pa.scalar(int(Op.UPSERT), pa.int8()), length)


def _fields(struct: pa.StructArray) -> list[str]:
    return [f.name for f in struct.type]


def stream_rows(
    spec: TableSpec, pages: list[RecordsPage]
) -> tuple[pa.Table, TableSpec, float | None]:
    """Rows of one poll round's pages (in order), the evolved spec, and the newest record's
    ApproximateCreationDateTime (epoch seconds)."""
    parts = []
    for page in pages:
        if page.records is None:
            continue
        dynamodb = pc.struct_field(page.records, "dynamodb")
        images = pc.struct_field(dynamodb, "NewImage") if "NewImage" in _fields(dynamodb) else None
        spec = evolve_spec(spec, images)
        parts.append((page.records, dynamodb, images))
    tables = []
    newest: float | None = None
    for records, dynamodb, images in parts:
        removed = pc.equal(pc.struct_field(records, "eventName"), "REMOVE")
        ops = pc.if_else(removed, int(Op.DELETE), int(Op.UPSERT)).cast(pa.int8())
        tables.append(image_rows(spec, images, pc.struct_field(dynamodb, "Keys"), ops))
        if "ApproximateCreationDateTime" in _fields(dynamodb):
            created = pc.max(pc.struct_field(dynamodb, "ApproximateCreationDateTime")).as_py()
            if created is not None:
                newest = created if newest is None else max(newest, created)
    if not tables:
        return rows_schema(spec).empty_table(), spec, None
    return pa.concat_tables(tables), spec, newest
