"""DynamoDB typed values to SQL columns, on whole columns with Arrow kernels.

Numbers and strings are cast, maps become STRUCT columns (``StructArray.from_arrays`` of
converted fields), lists LIST columns (the converted flattened elements under the original
offsets), binary values are base64-decoded in one call per column, and JSON text, where a
column needs it, is assembled by string kernels (``jsontext``). No value goes through Python
on its own, but in two rare fallbacks: numbers with more fractional digits than a DECIMAL's
scale (rounded by ``decimal``) and unpadded base64 (not what DynamoDB sends).
"""

from __future__ import annotations

import binascii
import decimal
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sync.dynamodb.golayout import parse_date as _parse_date
from sync.dynamodb.jsontext import json_scalar, json_text
from sync.dynamodb.typedvalues import (
    EMPTY_TEXT,
    NESTED_TAGS,
    SCALAR_TAGS,
    TAGS_PLAIN,
    bool_text,
    present_tags,
    relist,
)
from sync.dynamodb.typeoptions import DEFAULT_OPTIONS, TypeOptions
from sync.schema import ColumnType, DecimalType, ListType, SqlType, StructType

log = logging.getLogger(__name__)


def to_column(
    attr: pa.StructArray | None,
    ctype: SqlType,
    length: int,
    options: TypeOptions = DEFAULT_OPTIONS,
    name: str = "?",
) -> pa.Array:
    """Convert one attribute's typed values to a column of ``ctype``.

    The column type must already hold every value (see :func:`sync.widening.unify`); values
    of other kinds are rendered as text when the column is VARCHAR, as JSON when it is JSON.
    """
    arrow = ctype.arrow
    if attr is None:
        return pa.nulls(length, arrow)
    if ctype is ColumnType.JSON:
        return json_text(attr)
    if ctype is ColumnType.VARCHAR:
        return _varchar(attr)
    parts = []
    for tag, values in present_tags(attr).items():
        converted = _convert_tag(tag, values, ctype, options)
        if converted is None:
            # Only key columns, which never widen, can get here: the engine refuses the null
            # key loudly.
            log.warning(
                "column %r: %d value(s) of DynamoDB type %s cannot be held by %s",
                name,
                len(values) - values.null_count,
                tag,
                ctype,
            )
            continue
        parts.append(converted)
    if not parts:
        return pa.nulls(length, arrow)
    result = parts[0] if len(parts) == 1 else pc.coalesce(*parts)
    return result if result.type == arrow else result.cast(arrow)


def _convert_tag(
    tag: str, values: pa.Array, ctype: SqlType, options: TypeOptions
) -> pa.Array | None:
    if tag in SCALAR_TAGS:
        return convert_plain(tag, values, ctype, options)
    if tag == "M" and isinstance(ctype, StructType):
        return _struct(values, ctype, options)
    if isinstance(ctype, ListType):
        element = ctype.element
        if tag == "L":
            return relist(values, lambda items: to_column(items, element, len(items), options))
        plain = TAGS_PLAIN.get(tag)
        if plain is not None:
            return relist(values, lambda items: convert_plain(plain, items, element, options))
    return None


def convert_plain(
    tag: str, values: pa.Array, ctype: SqlType, options: TypeOptions = DEFAULT_OPTIONS
) -> pa.Array | None:
    """Plain values of one DynamoDB scalar ``tag`` (S / N / B strings, BOOL booleans) as
    ``ctype``; None when ``ctype`` cannot hold them."""
    if ctype is ColumnType.VARCHAR:
        return bool_text(values) if tag == "BOOL" else values
    if ctype is ColumnType.JSON:
        return json_scalar(tag, values)
    if tag == "N":
        if ctype is ColumnType.BIGINT or ctype is ColumnType.DOUBLE:
            return pc.cast(values, ctype.arrow)
        if isinstance(ctype, DecimalType):
            return to_decimal(values, ctype)
    elif tag == "S":
        if ctype is ColumnType.TIMESTAMP:
            return options.layout.parse(values)
        if ctype is ColumnType.DATE:
            return _parse_date(values)
    elif tag == "BOOL":
        if ctype is ColumnType.BOOLEAN:
            return values
    elif ctype is ColumnType.BLOB:
        return b64decode(values)
    return None


def _varchar(attr: pa.StructArray) -> pa.Array:
    """Strings as they are, numbers as DynamoDB wrote them, booleans true / false, binary as
    its base64 text, maps, lists and sets as JSON text."""
    parts = []
    nested = False
    for tag, values in present_tags(attr).items():
        if tag in ("S", "N", "B"):
            parts.append(values)
        elif tag == "BOOL":
            parts.append(bool_text(values))
        else:
            nested = True
    if nested:
        parts.append(json_text(attr, NESTED_TAGS))
    if not parts:
        return pa.nulls(len(attr), pa.string())
    return parts[0] if len(parts) == 1 else pc.coalesce(*parts)


def _struct(maps: pa.StructArray, ctype: StructType, options: TypeOptions) -> pa.Array:
    present = set(maps.type.names)
    children = [
        to_column(
            pc.struct_field(maps, name) if name in present else None, ftype, len(maps), options
        )
        for name, ftype in ctype.fields
    ]
    return pa.StructArray.from_arrays(
        children, fields=list(ctype.arrow), mask=pc.is_null(maps) if maps.null_count else None
    )


def to_decimal(numbers: pa.Array, ctype: DecimalType) -> pa.Array:
    """N strings as DECIMAL(p, s): digits beyond the scale are rounded half to even."""
    try:
        return pc.cast(numbers, ctype.arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # Some values have more fractional digits than the scale: round them, value by value
    # (a rare path: DynamoDB numbers seldom carry more digits than the chosen scale).
    quantum = decimal.Decimal(1).scaleb(-ctype.scale)
    context = decimal.Context(prec=80, rounding=decimal.ROUND_HALF_EVEN)
    exact = [
        None if v is None else decimal.Decimal(v).quantize(quantum, context=context)
        for v in numbers.to_pylist()
    ]
    return pa.array(exact, ctype.arrow)


def _numpy(values: pa.Array, dtype: type) -> np.ndarray:
    """A fixed-width Arrow array without nulls as a numpy view (``to_numpy`` imports pandas)."""
    return np.frombuffer(values.buffers()[1], dtype=dtype)[
        values.offset : values.offset + len(values)
    ]


def b64decode(strings: pa.Array) -> pa.Array:
    """Base64 strings as binary, decoded in one call for the whole column.

    Every value (padding ``=`` made ``A``) is a whole number of 4-character groups, so the
    concatenation decodes at once; the bytes that padding stood for are then cut out with
    numpy and the offsets rebuilt.
    """
    strings = strings.cast(pa.string())
    n = len(strings)
    if n == 0 or strings.null_count == n:
        return pa.nulls(n, pa.binary())
    filled = pc.fill_null(strings, EMPTY_TEXT)
    lengths = _numpy(pc.cast(pc.utf8_length(filled), pa.int64()), np.int64)
    if np.any(lengths % 4):  # unpadded base64 (not DynamoDB's): decode value by value
        return pa.array(
            [
                None if v is None else binascii.a2b_base64(v + "=" * (-len(v) % 4))
                for v in strings.to_pylist()
            ],
            pa.binary(),
        )
    pads = _numpy(
        pc.add(
            pc.cast(pc.ends_with(filled, "="), pa.int64()),
            pc.cast(pc.ends_with(filled, "=="), pa.int64()),
        ),
        np.int64,
    )
    unpadded = pc.replace_substring(filled, "=", "A")
    offsets = np.frombuffer(unpadded.buffers()[1], dtype=np.int32)[
        unpadded.offset : unpadded.offset + n + 1
    ]
    raw = memoryview(unpadded.buffers()[2])[offsets[0] : offsets[-1]]
    decoded = np.frombuffer(binascii.a2b_base64(raw), dtype=np.uint8)
    ends = np.cumsum(lengths // 4 * 3)
    if np.any(pads):
        keep = np.ones(len(decoded), dtype=bool)
        keep[ends[pads >= 1] - 1] = False
        keep[ends[pads == 2] - 2] = False
        decoded = decoded[keep]
    new_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths // 4 * 3 - pads, out=new_offsets[1:])
    validity = strings.buffers()[0] if strings.offset == 0 else None
    result = pa.Array.from_buffers(
        pa.binary(),
        n,
        [validity, pa.py_buffer(new_offsets), pa.py_buffer(decoded.tobytes())],
        null_count=strings.null_count if validity is not None else 0,
    )
    if strings.null_count and validity is None:
        result = pc.if_else(pc.is_valid(strings), result, pa.scalar(None, pa.binary()))
    return result
