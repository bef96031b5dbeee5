"""Typed DynamoDB images (Arrow structs) → rows of a ``ChangeBatch``, evolving the schema."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc

from sync.changes import OP_COLUMN, Op
from sync.dynamodb.convert import to_column
from sync.dynamodb.infer import infer_type, tag_types
from sync.dynamodb.jsontext import json_object
from sync.dynamodb.rawparse import RecordsPage
from sync.dynamodb.typedvalues import unnest
from sync.dynamodb.typeoptions import DEFAULT_OPTIONS, DELETED_AT, TypeOptions
from sync.schema import Column, ColumnType, ListType, SqlType, StructType, TableSpec
from sync.widening import unify

log = logging.getLogger(__name__)

TTL_PRINCIPAL = "dynamodb.amazonaws.com"  # userIdentity of the REMOVE records TTL makes


def evolve_spec(
    spec: TableSpec, images: pa.StructArray | None, options: TypeOptions = DEFAULT_OPTIONS
) -> TableSpec:
    """``spec`` grown by attributes first seen in ``images`` (in name order) and widened where
    values of another kind arrive (int with float → DOUBLE, other mixes → VARCHAR, see
    ``sync.widening.unify``). Declared columns keep their declared type until a value it
    cannot hold comes.

    Each widening is logged with the number of values that caused it; STRUCT columns gaining
    fields are logged too.

    Raises:
        NumberOverflowError: with ``number_overflow: error``, a number its column cannot hold.
        DuplicateColumnError: ``unnest_depth`` made two attributes into one column.
    """
    changes = []
    json_column = options.json_object_column
    if json_column and spec.column(json_column) is None:
        changes.append(Column(json_column, ColumnType.JSON))
    if options.settings.ttl_deletes == "soft" and spec.column(DELETED_AT) is None:
        changes.append(Column(DELETED_AT, ColumnType.TIMESTAMP))
    for wanted in options.settings.columns:  # typed ones exist from the start
        declared_type = options.declared_type(wanted.name)
        if declared_type is not None and spec.column(wanted.name) is None:
            changes.append(Column(wanted.name, declared_type))
    images = unnest(images, options.settings.unnest_depth)
    for name in sorted(images.type.names) if images is not None else ():
        existing = spec.column(name) or next((c for c in changes if c.name == name), None)
        if existing is not None and (name in spec.key or existing.type is ColumnType.VARCHAR):
            continue  # key types are fixed; VARCHAR holds every value
        if existing is None and json_column and options.declared_column(name) is None:
            continue  # collected in the json_object column
        assert images is not None
        attr = pc.struct_field(images, name)
        if existing is not None and _holds(existing.type, attr):
            continue
        if existing is None:
            seen = infer_type(attr, options, name)
            if seen is not None:
                changes.append(Column(name, seen))
            continue
        widened = existing.type
        conflicts = []
        declared = options.declared_type(name)
        for kind, count in tag_types(attr, options, name, declared):
            merged = unify(widened, kind, options.support)
            if merged != widened and not _grows(widened, merged):
                conflicts.append(f"{count} of type {kind}")
            widened = merged
        if widened == existing.type:
            continue
        if conflicts:
            log.warning(
                "table %s: column %r widened from %s to %s: the batch brought value(s) it "
                "could not hold (%s); stored values are kept, converted",
                spec.name,
                name,
                existing.type,
                widened,
                ", ".join(conflicts),
            )
        else:
            log.info("table %s: column %r is now %s", spec.name, name, widened)
        changes.append(Column(name, widened))
    return spec.with_columns(changes) if changes else spec


_HELD_TAGS: dict[SqlType, set[str]] = {
    ColumnType.DOUBLE: {"N"},
    ColumnType.BOOLEAN: {"BOOL"},
    ColumnType.BLOB: {"B"},
    ColumnType.JSON: {"M", "L", "SS", "NS", "BS"},
}


def _holds(column_type: SqlType, attr: pa.StructArray) -> bool:
    """Whether the column certainly holds every value of ``attr`` (no inference needed)."""
    held = _HELD_TAGS.get(column_type)
    if held is None:
        return False
    return all(
        f.name in held or f.name == "NULL" or pc.struct_field(attr, f.name).null_count == len(attr)
        for f in attr.type
    )


def _grows(before: SqlType, after: SqlType) -> bool:
    """A struct gaining fields (or a list of structs) is growth, not a conflict."""
    while isinstance(before, ListType) and isinstance(after, ListType):
        before, after = before.element, after.element
    if not (isinstance(before, StructType) and isinstance(after, StructType)):
        return False
    return all(after.field(name) == type_ for name, type_ in before.fields)


def image_rows(
    spec: TableSpec,
    images: pa.StructArray | None,
    keys: pa.StructArray,
    ops: pa.Array,
    options: TypeOptions = DEFAULT_OPTIONS,
) -> pa.Table:
    """Rows for ``spec``: key columns from ``keys``, values from ``images`` (null on deletes)."""
    length = len(keys)
    images = unnest(images, options.settings.unnest_depth)
    names = set(images.type.names) if images is not None else set()
    key_names = set(keys.type.names)
    json_column = options.json_object_column
    arrays = [ops]
    for column in spec.columns:
        if column.name in spec.key:
            source = pc.struct_field(keys, column.name) if column.name in key_names else None
        elif column.name == json_column and images is not None:
            extra = [
                n
                for n in images.type.names
                if n not in spec.key and options.declared_column(n) is None
            ]
            arrays.append(json_object(images, extra))
            continue
        elif column.name in names:
            assert images is not None
            source = pc.struct_field(images, column.name)
        else:
            source = None
        arrays.append(to_column(source, column.type, length, options, column.name))
    return pa.Table.from_arrays(arrays, schema=rows_schema(spec))


def rows_schema(spec: TableSpec) -> pa.Schema:
    """The schema of a ``ChangeBatch``'s rows for ``spec``: ``_op``, then the columns."""
    return pa.schema([pa.field(OP_COLUMN, pa.int8(), nullable=False), *spec.arrow_schema()])


def upserts(length: int) -> pa.Array:
    return pa.repeat(pa.scalar(int(Op.UPSERT), pa.int8()), length)


def _fields(struct: pa.StructArray) -> list[str]:
    return [f.name for f in struct.type]


def ttl_removals(records: pa.StructArray) -> pa.Array | None:
    """REMOVE records made by DynamoDB's Time to Live: ``userIdentity`` is the service
    principal ``dynamodb.amazonaws.com`` (None when the page has none)."""
    if "userIdentity" not in _fields(records):
        return None
    identity = pc.struct_field(records, "userIdentity")
    if not {"type", "principalId"} <= set(_fields(identity)):
        return None
    ttl = pc.and_(
        pc.and_(
            pc.equal(pc.struct_field(records, "eventName"), "REMOVE"),
            pc.equal(pc.struct_field(identity, "type"), "Service"),
        ),
        pc.equal(pc.struct_field(identity, "principalId"), TTL_PRINCIPAL),
    )
    ttl = pc.fill_null(ttl, False)
    return ttl if pc.any(ttl).as_py() else None


def newest_created(records: pa.StructArray) -> float | None:
    """The newest ApproximateCreationDateTime (epoch seconds) of a page's records, if any."""
    dynamodb = pc.struct_field(records, "dynamodb")
    if "ApproximateCreationDateTime" not in _fields(dynamodb):
        return None
    created = pc.max(pc.struct_field(dynamodb, "ApproximateCreationDateTime")).as_py()
    return None if created is None else float(created)


def stream_rows(
    spec: TableSpec, pages: list[RecordsPage], options: TypeOptions = DEFAULT_OPTIONS
) -> tuple[pa.Table, TableSpec, float | None]:
    """Rows of one poll round's pages (in order), the evolved spec, and the newest record's
    ApproximateCreationDateTime (epoch seconds).

    With ``ttl_deletes: soft``, a REMOVE made by TTL becomes an upsert of the item's last image
    (its OldImage) with ``_deleted_at`` set to the record's time, instead of a delete.
    """
    parts = []
    for page in pages:
        if page.records is None:
            continue
        dynamodb = pc.struct_field(page.records, "dynamodb")
        images = pc.struct_field(dynamodb, "NewImage") if "NewImage" in _fields(dynamodb) else None
        spec = evolve_spec(spec, images, options)
        ttl = ttl_removals(page.records) if options.settings.ttl_deletes == "soft" else None
        old = None
        if ttl is not None and "OldImage" in _fields(dynamodb):
            old = pc.struct_field(dynamodb, "OldImage")
            spec = evolve_spec(spec, old.filter(ttl), options)
        parts.append((page.records, dynamodb, images, ttl, old))
    tables = []
    newest: float | None = None
    for records, dynamodb, images, ttl, old in parts:
        removed = pc.equal(pc.struct_field(records, "eventName"), "REMOVE")
        if ttl is not None:
            removed = pc.and_(removed, pc.invert(ttl))
        ops = pc.if_else(removed, int(Op.DELETE), int(Op.UPSERT)).cast(pa.int8())
        keys = pc.struct_field(dynamodb, "Keys")
        rows = image_rows(spec, images, keys, ops, options)
        if ttl is not None:
            rows = _soft_deletes(spec, rows, old, keys, ops, ttl, dynamodb, options)
        tables.append(rows)
        created = newest_created(records)
        if created is not None:
            newest = created if newest is None else max(newest, created)
    if not tables:
        return rows_schema(spec).empty_table(), spec, None
    return pa.concat_tables(tables), spec, newest


def _soft_deletes(
    spec: TableSpec,
    rows: pa.Table,
    old: pa.StructArray | None,
    keys: pa.StructArray,
    ops: pa.Array,
    ttl: pa.Array,
    dynamodb: pa.StructArray,
    options: TypeOptions,
) -> pa.Table:
    """``rows`` with TTL removals replaced by their old image and ``_deleted_at`` set."""
    old_rows = image_rows(spec, old, keys, ops, options)
    deleted_at = pa.nulls(len(ttl), ColumnType.TIMESTAMP.arrow)
    if "ApproximateCreationDateTime" in _fields(dynamodb):
        seconds = pc.cast(pc.struct_field(dynamodb, "ApproximateCreationDateTime"), pa.float64())
        micros = pc.cast(pc.round(pc.multiply(seconds, 1e6)), pa.int64())
        deleted_at = pc.cast(micros, ColumnType.TIMESTAMP.arrow)
    columns = []
    for name in rows.column_names:
        if name == OP_COLUMN:
            columns.append(rows.column(name))
        elif name == DELETED_AT:
            columns.append(pc.if_else(ttl, deleted_at, rows.column(name)))
        else:
            columns.append(pc.if_else(ttl, old_rows.column(name), rows.column(name)))
    return pa.Table.from_arrays(columns, schema=rows.schema)
