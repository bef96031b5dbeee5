"""DynamoDB typed attribute values (as parsed Arrow structs) to SQL columns, and type inference.

Every attribute arrives as ``struct<S, N, BOOL, B, NULL, M, L, SS, NS, BS>`` (only the tags that
occur). Scalars convert with vectorised Arrow kernels; only maps, lists and sets, stored as JSON
text, go through Python per value.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sync.schema import Column, ColumnType

log = logging.getLogger(__name__)

_NESTED_TAGS = ("M", "L", "SS", "NS", "BS")
# Integral N strings of up to 18 digits always fit BIGINT; longer ones are treated as DOUBLE.
_INTEGRAL = r"^-?[0-9]{1,18}$"
_SCALAR_TYPE = {"S": ColumnType.VARCHAR, "BOOL": ColumnType.BOOLEAN, "B": ColumnType.BLOB}


def _present_tags(attr: pa.StructArray) -> dict[str, pa.Array]:
    """Tag → its values (parent nulls applied), for tags holding at least one value."""
    present = {}
    for field in attr.type:
        if field.name == "NULL":
            continue
        values = pc.struct_field(attr, field.name)
        if values.null_count < len(values):
            present[field.name] = values
    return present


def _number_type(numbers: pa.Array) -> ColumnType:
    integral = pc.all(pc.match_substring_regex(numbers, _INTEGRAL)).as_py()
    return ColumnType.BIGINT if integral in (True, None) else ColumnType.DOUBLE


def infer_type(attr: pa.StructArray) -> ColumnType | None:
    """The column type for an attribute's sampled values; None when every value is null.

    N is BIGINT when every value is integral, else DOUBLE; S VARCHAR; BOOL BOOLEAN; B BLOB;
    maps, lists and sets JSON; an attribute seen with several kinds of values is VARCHAR.
    """
    tags = _present_tags(attr)
    if not tags:
        return None
    kinds = {
        _number_type(values) if tag == "N" else _SCALAR_TYPE.get(tag, ColumnType.JSON)
        for tag, values in tags.items()
    }
    return kinds.pop() if len(kinds) == 1 else unify(*kinds)


def unify(*types: ColumnType) -> ColumnType:
    """The narrowest type holding every value of ``types``: int with float is DOUBLE, any
    other mix is VARCHAR (values become text, never dropped)."""
    distinct = set(types)
    if len(distinct) == 1:
        return distinct.pop()
    if distinct <= {ColumnType.BIGINT, ColumnType.DOUBLE}:
        return ColumnType.DOUBLE
    return ColumnType.VARCHAR


def infer_columns(images: pa.StructArray, names: Iterable[str] | None = None) -> list[Column]:
    """Columns for every attribute of ``images`` (typed items), in first-seen order."""
    wanted = None if names is None else set(names)
    columns = []
    for field in images.type:
        if wanted is not None and field.name not in wanted:
            continue
        ctype = infer_type(pc.struct_field(images, field.name))
        if ctype is not None:
            columns.append(Column(field.name, ctype))
    return columns


def plain_value(value: dict[str, Any] | None) -> Any:
    """A typed attribute value (as Arrow's to_pylist gives it) as plain JSON-able Python."""
    if value is None:
        return None
    for tag, inner in value.items():
        if inner is None:
            continue
        if tag == "M":
            return {k: plain_value(v) for k, v in inner.items() if v is not None}
        if tag == "L":
            return [plain_value(v) for v in inner]
        if tag == "N":
            return _number(inner)
        if tag == "NS":
            return [_number(v) for v in inner]
        if tag == "NULL":
            return None
        return inner  # S, BOOL, B (base64 text), SS, BS
    return None


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _json_texts(attr: pa.StructArray) -> pa.Array:
    texts = [
        None if v is None or v.get("NULL") else json.dumps(plain_value(v), separators=(",", ":"))
        for v in attr.to_pylist()
    ]
    return pa.array(texts, pa.string())


def _coalesce(arrays: list[pa.Array], length: int, type_: pa.DataType) -> pa.Array:
    if not arrays:
        return pa.nulls(length, type_)
    return arrays[0] if len(arrays) == 1 else pc.coalesce(*arrays)


def to_column(attr: pa.StructArray | None, ctype: ColumnType, length: int) -> pa.Array:
    """Convert one attribute's typed values to a column of ``ctype``.

    The column type must already hold every value (see :func:`unify`); values of other kinds
    are rendered as text when the column is VARCHAR.
    """
    if attr is None:
        return pa.nulls(length, ctype.arrow)
    tags = _present_tags(attr)
    if ctype is ColumnType.BIGINT or ctype is ColumnType.DOUBLE:
        numbers = tags.get("N")
        if numbers is None:
            return pa.nulls(length, ctype.arrow)
        return pc.cast(numbers, ctype.arrow)
    if ctype is ColumnType.BOOLEAN:
        return tags.get("BOOL", pa.nulls(length, pa.bool_()))
    if ctype is ColumnType.BLOB:
        if "B" not in tags:
            return pa.nulls(length, pa.binary())
        raw = [None if b is None else base64.b64decode(b) for b in tags["B"].to_pylist()]
        return pa.array(raw, pa.binary())
    if ctype is ColumnType.JSON:
        return _json_texts(attr)
    # VARCHAR: strings as they are, every other kind rendered as text.
    parts = []
    for tag, values in tags.items():
        if tag in ("S", "N", "B"):
            parts.append(values)
        elif tag == "BOOL":
            parts.append(pc.if_else(values, "true", "false"))
    if any(tag in tags for tag in _NESTED_TAGS):
        parts.append(_json_texts(attr))
    return _coalesce(parts, length, pa.string())
