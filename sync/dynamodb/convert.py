"""DynamoDB typed attribute values (as parsed Arrow structs) to SQL columns, and type inference.

Every attribute arrives as ``struct<S, N, BOOL, B, NULL, M, L, SS, NS, BS>`` (only the tags that
occur), maps as ``struct<key: typed value, …>`` and lists as ``list<typed value>``. Both
inference and conversion walk that Arrow *type* recursively and work on whole columns with
Arrow kernels — numbers and strings are cast, maps become STRUCT columns
(``StructArray.from_arrays`` of converted fields), lists LIST columns (the converted flattened
elements under the original offsets), binary values are base64-decoded in one call per column,
and JSON text, where an engine needs it, is assembled by string kernels. No value goes through
Python on its own, but in two rare fallbacks: numbers with more fractional digits than a
DECIMAL's scale (rounded by ``decimal``) and unpadded base64 (not what DynamoDB sends).
"""

from __future__ import annotations

import binascii
import decimal
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sync.dynamodb.golayout import DATE_REGEX, DEFAULT_TIME_FORMAT, TimeLayout, compile_layout
from sync.dynamodb.golayout import parse_date as _parse_date
from sync.errors import PermanentError
from sync.schema import (
    Column,
    ColumnType,
    DecimalType,
    DeclaredColumn,
    ListType,
    SqlType,
    StructType,
    TypeSupport,
    is_scalar,
)
from sync.settings import DatasetSettings

log = logging.getLogger(__name__)

NumberType = Literal["auto", "decimal"]
NumberOverflow = Literal["widen", "error"]
TtlDeletes = Literal["hard", "soft"]
DELETED_AT = "_deleted_at"  # the soft-delete column of ``ttl_deletes: soft``

_INT64_DIGITS = r"^-?[0-9]{1,18}$"  # always fits BIGINT; 19 digits are compared one by one
_PLAIN_NUMBER = r"^-?0*(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?$"
_INT64_MAX, _INT64_MIN = "9223372036854775807", "9223372036854775808"
_TAGS_PLAIN = {"SS": "S", "NS": "N", "BS": "B"}  # sets: plain strings of one implied tag
# Scalars made once (making the first one also loads what pyarrow loads lazily for it).
_TRUE, _FALSE, _NULL_TEXT, _EMPTY = (
    pa.scalar(t, pa.string()) for t in ("true", "false", "null", "")
)
_NO_TEXT = pa.scalar(None, pa.string())


class NumberOverflowError(PermanentError):
    """A number does not fit its column and ``number_overflow: error`` asks to stop."""


@dataclass(frozen=True)
class TypeOptions:
    """How DynamoDB values become columns of one dataset (see README, "Types").

    ``support`` is the engine's: what it cannot hold as STRUCT / LIST is JSON. The default,
    ``TypeSupport()``, keeps every map, list and set as JSON text, as any engine can.
    """

    support: TypeSupport = field(default_factory=TypeSupport)
    number_type: NumberType = "auto"
    decimal_scale: int = 9
    number_overflow: NumberOverflow = "widen"
    time_format: str = DEFAULT_TIME_FORMAT
    unnest_depth: int = 0
    declared: tuple[DeclaredColumn, ...] = ()
    ttl_deletes: TtlDeletes = "hard"

    @property
    def layout(self) -> TimeLayout:
        return compile_layout(self.time_format)

    @property
    def json_object_column(self) -> str | None:
        """The declared column collecting undeclared attributes, if any."""
        return next((c.name for c in self.declared if c.json_object), None)

    def declared_column(self, name: str) -> DeclaredColumn | None:
        return next((c for c in self.declared if c.name == name), None)

    def declared_type(self, name: str) -> SqlType | None:
        """The type a declared column has in this engine (STRUCT or LIST it lacks: JSON)."""
        column = self.declared_column(name)
        if column is None or (column.type is None and not column.json_object):
            return None
        return ColumnType.JSON if column.json_object else held(column.type, self.support)

    @classmethod
    def for_dataset(cls, settings: DatasetSettings, support: TypeSupport) -> TypeOptions:
        """A dataset's options, for an engine that holds ``support``."""
        return cls(
            support=support,
            number_type=settings.number_type,
            decimal_scale=settings.decimal_scale,
            number_overflow=settings.number_overflow,
            time_format=settings.time_format,
            unnest_depth=settings.unnest_depth,
            declared=settings.columns,
            ttl_deletes=settings.ttl_deletes,
        )


DEFAULT_OPTIONS = TypeOptions()


def held(type_: SqlType | None, support: TypeSupport) -> SqlType:
    """``type_`` as an engine with ``support`` holds it: what it lacks becomes JSON."""
    assert type_ is not None
    if isinstance(type_, StructType):
        if not support.structs:
            return ColumnType.JSON
        return StructType(tuple((n, held(t, support)) for n, t in type_.fields))
    if isinstance(type_, ListType):
        if support.lists == "none" or (support.lists == "uniform" and not is_scalar(type_.element)):
            return ColumnType.JSON
        return ListType(held(type_.element, support))
    return type_


# -- unification ----------------------------------------------------------------------------


def unify(a: SqlType, b: SqlType, support: TypeSupport | None = None) -> SqlType:
    """The narrowest type holding every value of ``a`` and ``b``.

    Integers with fractions are DOUBLE (DECIMAL where one side is DECIMAL and the other an
    integer it holds); maps merge their fields and lists unify their elements (as the engine's
    ``support`` allows, else JSON); maps, lists and JSON together are JSON; any other mix is
    VARCHAR — values become text, never dropped.
    """
    support = support or TypeSupport()
    if a == b:
        return a
    numeric = _unify_numbers(a, b)
    if numeric is not None:
        return numeric
    if isinstance(a, StructType) and isinstance(b, StructType):
        # The fields of ``a`` keep their place, new ones follow: a struct column only grows.
        names = [n for n, _ in a.fields] + sorted(n for n, _ in b.fields if a.field(n) is None)
        merged = []
        for name in names:
            left, right = a.field(name), b.field(name)
            merged.append(
                (
                    name,
                    unify(left, right, support)
                    if left is not None and right is not None
                    else left or right,
                )
            )
        return StructType(tuple(merged))  # type: ignore[arg-type]
    if isinstance(a, ListType) and isinstance(b, ListType):
        element = unify(a.element, b.element, support)
        if support.lists == "uniform" and not _uniform(a.element, b.element, element):
            return ColumnType.JSON
        return ListType(element)
    if not is_scalar(a) and not is_scalar(b):
        return ColumnType.JSON
    return ColumnType.VARCHAR


def _unify_numbers(a: SqlType, b: SqlType) -> SqlType | None:
    kinds = {a, b}
    if kinds == {ColumnType.BIGINT, ColumnType.DOUBLE}:
        return ColumnType.DOUBLE
    decimals = [t for t in (a, b) if isinstance(t, DecimalType)]
    if not decimals:
        return None
    others = [t for t in (a, b) if not isinstance(t, DecimalType)]
    if not others:
        scale = max(d.scale for d in decimals)
        digits = max(d.integer_digits for d in decimals)
        return DecimalType(scale) if digits + scale <= 38 else ColumnType.DOUBLE
    (exact,), (other,) = decimals, others
    if other is ColumnType.BIGINT:
        return exact if exact.integer_digits >= 19 else ColumnType.DOUBLE
    if other is ColumnType.DOUBLE:
        return ColumnType.DOUBLE
    return None


def _uniform(a: SqlType, b: SqlType, unified: SqlType) -> bool:
    """PostgreSQL arrays: one scalar element type (numbers may widen into each other)."""
    if not (is_scalar(unified) and is_scalar(a) and is_scalar(b)):
        return False
    return unified is not ColumnType.VARCHAR or a == b


# -- inference ------------------------------------------------------------------------------


def _present_tags(attr: pa.StructArray) -> dict[str, pa.Array]:
    """Tag → its values (parent nulls applied), for tags holding at least one value."""
    present: dict[str, pa.Array] = {}
    if not pa.types.is_struct(attr.type):  # the elements of lists that are all empty
        return present
    for f in attr.type:
        if f.name == "NULL":
            continue
        values = pc.struct_field(attr, f.name)
        if values.null_count < len(values):
            present[f.name] = values
    return present


def infer_type(
    attr: pa.StructArray, options: TypeOptions = DEFAULT_OPTIONS, name: str = "?"
) -> SqlType | None:
    """The column type for an attribute's typed values; None when every value is null.

    N is BIGINT when every value is an integer that fits, else DOUBLE (``number_type:
    decimal``: DECIMAL(38, scale)); S is TIMESTAMP when every value parses with
    ``time_format``, DATE when every value is ``YYYY-MM-DD``, else VARCHAR; BOOL BOOLEAN; B BLOB;
    maps STRUCT, lists and sets LIST where the engine has them, else JSON; an attribute seen
    with several kinds of values takes their :func:`unify`.

    Raises:
        NumberOverflowError: a number does not fit and ``number_overflow`` is ``error``.
    """
    found: SqlType | None = None
    for tag, values in _present_tags(attr).items():
        seen = _tag_type(tag, values, options, name)
        if seen is not None:
            found = seen if found is None else unify(found, seen, options.support)
    return found


def tag_types(
    attr: pa.StructArray,
    options: TypeOptions = DEFAULT_OPTIONS,
    name: str = "?",
    declared: SqlType | None = None,
) -> list[tuple[SqlType, int]]:
    """Each kind of value in ``attr`` with how many values are of that kind.

    Numbers for a column ``declared`` DECIMAL are of that kind when they are in its range
    (they are rounded to its scale), as they are with ``number_type: decimal``.
    """
    found = []
    for tag, values in _present_tags(attr).items():
        if tag == "N" and isinstance(declared, DecimalType):
            numbers = values.drop_null()
            seen: SqlType | None = (
                declared
                if _fits_decimal(numbers, declared)
                else _overflow(numbers, declared, ColumnType.DOUBLE, options, name)
            )
        else:
            seen = _tag_type(tag, values, options, name)
        if seen is not None:
            found.append((seen, len(values) - values.null_count))
    return found


def _tag_type(tag: str, values: pa.Array, options: TypeOptions, name: str) -> SqlType | None:
    support = options.support
    if tag in ("S", "N", "B", "BOOL"):
        return _scalar_type(tag, values, options, name)
    if tag == "M":
        if not support.structs:
            return ColumnType.JSON
        fields = []
        for key in sorted(values.type.names):  # as Spice: fields in name order
            child = infer_type(pc.struct_field(values, key), options, f"{name}.{key}")
            if child is not None:
                fields.append((key, child))
        if not fields:
            return None  # only empty maps so far: the struct gets fields when they come
        if len({n.lower() for n, _ in fields}) < len(fields):
            return ColumnType.JSON  # keys differing only in case: not a SQL struct
        return StructType(tuple(fields))
    if support.lists == "none":
        return ColumnType.JSON
    elements = _elements(values)
    if tag == "L":
        kinds = tag_types(elements, options, f"{name}[]") if len(elements) else []
        if not kinds:
            return ListType(ColumnType.VARCHAR)  # only empty lists so far
        element = kinds[0][0]
        for kind, _ in kinds[1:]:
            element = unify(element, kind, support)
        if support.lists == "uniform" and (
            not is_scalar(element) or any(not _uniform(kind, element, element) for kind, _ in kinds)
        ):
            return ColumnType.JSON
        return ListType(element)
    plain_tag = _TAGS_PLAIN[tag]
    if len(elements) == 0:
        return ListType(ColumnType.BIGINT if tag == "NS" else _scalar_default(plain_tag))
    element_type = _scalar_type(plain_tag, elements, options, f"{name}[]", sets=True)
    return ListType(element_type)


def _scalar_default(tag: str) -> SqlType:
    return ColumnType.BLOB if tag == "B" else ColumnType.VARCHAR


def _scalar_type(
    tag: str, values: pa.Array, options: TypeOptions, name: str, sets: bool = False
) -> SqlType:
    if tag == "N":
        return number_type(values, options, name)
    if tag == "S":
        return ColumnType.VARCHAR if sets else string_type(values, options)
    return ColumnType.BOOLEAN if tag == "BOOL" else ColumnType.BLOB


def string_type(strings: pa.Array, options: TypeOptions = DEFAULT_OPTIONS) -> SqlType:
    """TIMESTAMP when every string parses with the layout, DATE when every one is a real
    ``YYYY-MM-DD`` date, else VARCHAR."""
    strings = strings.drop_null()
    if len(strings) == 0:
        return ColumnType.VARCHAR
    layout = options.layout
    if pc.all(pc.match_substring_regex(strings, layout.regex)).as_py():
        if layout.parse(strings).null_count == 0:
            return ColumnType.TIMESTAMP
    if pc.all(pc.match_substring_regex(strings, DATE_REGEX)).as_py():
        if _parse_date(strings).null_count == 0:
            return ColumnType.DATE
    return ColumnType.VARCHAR


def number_type(
    numbers: pa.Array, options: TypeOptions = DEFAULT_OPTIONS, name: str = "?"
) -> SqlType:
    """The type of N values: BIGINT / DOUBLE (``auto``) or DECIMAL(38, scale) (``decimal``).

    Values beyond the type's range widen it (BIGINT → DECIMAL(38,0) for integers of up to 38
    digits, DECIMAL → DOUBLE) or, with ``number_overflow: error``, raise.
    """
    numbers = numbers.drop_null()
    if len(numbers) == 0:
        return ColumnType.BIGINT
    if options.number_type == "decimal":
        exact = DecimalType(options.decimal_scale)
        if _fits_decimal(numbers, exact):
            return exact
        return _overflow(numbers, exact, ColumnType.DOUBLE, options, name)
    if pc.all(pc.match_substring_regex(numbers, _INT64_DIGITS)).as_py():
        return ColumnType.BIGINT
    if not pc.all(pc.match_substring_regex(numbers, r"^-?[0-9]+$")).as_py():
        return ColumnType.DOUBLE
    if _fits_int64(numbers):
        return ColumnType.BIGINT
    wide = DecimalType(0)
    return _overflow(
        numbers,
        ColumnType.BIGINT,
        wide if _fits_decimal(numbers, wide) else ColumnType.DOUBLE,
        options,
        name,
    )


def _overflow(
    numbers: pa.Array, chosen: SqlType, widened: SqlType, options: TypeOptions, name: str
) -> SqlType:
    if options.number_overflow == "error":
        example = _largest(numbers)
        raise NumberOverflowError(
            f"attribute {name!r}: the number {example} does not fit {chosen} "
            "(number_overflow: error). Set number_overflow: widen, or number_type: decimal "
            "with a decimal_scale that leaves room for it"
        )
    return widened


def _largest(numbers: pa.Array) -> str:
    index = pc.index(pc.utf8_length(numbers), pc.max(pc.utf8_length(numbers))).as_py()
    return str(numbers[index].as_py())


def _fits_int64(numbers: pa.Array) -> bool:
    """Every integral string within BIGINT's range (19 digits compared as text)."""
    digits = pc.utf8_ltrim(pc.utf8_ltrim(numbers, "-"), "0")
    length = pc.utf8_length(digits)
    if pc.max(length).as_py() < 19:
        return True
    if pc.max(length).as_py() > 19:
        return False
    limit = pc.if_else(pc.starts_with(numbers, "-"), _INT64_MIN, _INT64_MAX)
    too_big = pc.and_(pc.equal(length, 19), pc.greater(digits, limit))
    return not pc.any(too_big).as_py()


def _fits_decimal(numbers: pa.Array, exact: DecimalType) -> bool:
    """Every value has at most ``precision - scale`` digits before the point."""
    parts = pc.extract_regex(numbers, _PLAIN_NUMBER)
    plain = pc.is_valid(parts)
    integer_digits = pc.utf8_length(pc.struct_field(parts, "int"))
    if pc.all(plain).as_py():
        return pc.max(integer_digits).as_py() <= exact.integer_digits
    # Exponent notation (1E+30): its magnitude says how many digits it has.
    magnitude = pc.abs(pc.cast(numbers, pa.float64()))
    limit = 10.0**exact.integer_digits
    fits = pc.if_else(
        plain, pc.less_equal(integer_digits, exact.integer_digits), pc.less(magnitude, limit)
    )
    return bool(pc.all(fits).as_py())


def infer_columns(
    images: pa.StructArray,
    names: list[str] | None = None,
    options: TypeOptions = DEFAULT_OPTIONS,
    key: tuple[str, ...] = (),
) -> list[Column]:
    """The initial columns of a table from sampled items: the spicepod's declared columns with
    their types, then every other attribute (unnested, unless it goes to the ``json_object``
    column) with its inferred type, in name order; ``_deleted_at`` with ``ttl_deletes:
    soft``. A ``key`` attribute keeps its text (never a TIMESTAMP or DATE: a key is kept
    exactly as it is)."""
    images = unnest(images, options.unnest_depth)
    wanted = None if names is None else set(names)
    columns = [
        Column(c.name, declared)
        for c in options.declared
        if (declared := options.declared_type(c.name)) is not None
    ]
    fixed = {c.name for c in columns}
    for name in sorted(images.type.names):  # as Spice: name order, whatever order items had
        if name in fixed or (wanted is not None and name not in wanted):
            continue
        if options.json_object_column and options.declared_column(name) is None:
            continue  # collected in the json_object column
        ctype = infer_type(pc.struct_field(images, name), options, name)
        if name in key and ctype in (ColumnType.TIMESTAMP, ColumnType.DATE):
            ctype = ColumnType.VARCHAR
        if ctype is not None:
            columns.append(Column(name, ctype))
    if options.ttl_deletes == "soft":
        columns.append(Column(DELETED_AT, ColumnType.TIMESTAMP))
    return columns


class DuplicateColumnError(PermanentError):
    """``unnest_depth`` made two attributes into one column name."""


def unnest(images: pa.StructArray | None, depth: int) -> pa.StructArray | None:
    """Maps flattened into dotted attributes (``address.city``) down to ``depth`` levels.

    An attribute that is a map in some items and another kind of value in others keeps those
    other values under its own name.

    Raises:
        DuplicateColumnError: a flattened name is also an attribute (or another flattened
            name) of the batch.
    """
    if (
        images is None
        or depth <= 0
        or not any(pa.types.is_struct(f.type) and "M" in f.type.names for f in images.type)
    ):
        return images
    names: list[str] = []
    seen: set[str] = set()
    arrays: list[pa.Array] = []

    def add(name: str, typed: pa.Array) -> None:
        if name in seen:
            raise DuplicateColumnError(
                f"unnest_depth {depth}: the column name {name!r} comes from two attributes "
                "(an attribute with a dot in its name, and a map key); lower unnest_depth or "
                "rename the attribute"
            )
        names.append(name)
        seen.add(name)
        arrays.append(typed)

    def visit(name: str, typed: pa.StructArray, level: int) -> None:
        if level and typed.null_count == len(typed):
            return  # a key no map of the batch has
        tags = typed.type.names
        if level >= depth or "M" not in tags:
            add(name, typed)
            return
        maps = pc.struct_field(typed, "M")
        others = [t for t in tags if t not in ("M", "NULL")]
        if any(pc.struct_field(typed, t).null_count < len(typed) for t in others):
            rest = [pc.struct_field(typed, t) for t in others]
            add(name, pa.StructArray.from_arrays(rest, names=others))
        for key in maps.type.names:
            visit(f"{name}.{key}", pc.struct_field(maps, key), level + 1)

    for f in images.type:
        visit(f.name, pc.struct_field(images, f.name), 0)
    mask = pc.is_null(images) if images.null_count else None
    return pa.StructArray.from_arrays(arrays, names=names, mask=mask)


# -- conversion -----------------------------------------------------------------------------


def to_column(
    attr: pa.StructArray | None,
    ctype: SqlType,
    length: int,
    options: TypeOptions = DEFAULT_OPTIONS,
    name: str = "?",
) -> pa.Array:
    """Convert one attribute's typed values to a column of ``ctype``.

    The column type must already hold every value (see :func:`unify`); values of other kinds
    are rendered as text when the column is VARCHAR, as JSON when it is JSON.
    """
    arrow = ctype.arrow
    if attr is None:
        return pa.nulls(length, arrow)
    if ctype is ColumnType.JSON:
        return json_text(attr)
    if ctype is ColumnType.VARCHAR:
        return _varchar(attr)
    parts = []
    for tag, values in _present_tags(attr).items():
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
    if tag in ("S", "N", "B", "BOOL"):
        return convert_plain(tag, values, ctype, options)
    if tag == "M" and isinstance(ctype, StructType):
        return _struct(values, ctype, options)
    if isinstance(ctype, ListType):
        element = ctype.element
        if tag == "L":
            return _relist(values, lambda items: to_column(items, element, len(items), options))
        plain = _TAGS_PLAIN.get(tag)
        if plain is not None:
            return _relist(values, lambda items: convert_plain(plain, items, element, options))
    return None


def convert_plain(
    tag: str, values: pa.Array, ctype: SqlType, options: TypeOptions = DEFAULT_OPTIONS
) -> pa.Array | None:
    """Plain values of one DynamoDB scalar ``tag`` (S / N / B strings, BOOL booleans) as
    ``ctype``; None when ``ctype`` cannot hold them."""
    if ctype is ColumnType.VARCHAR:
        return pc.if_else(values, _TRUE, _FALSE) if tag == "BOOL" else values
    if ctype is ColumnType.JSON:
        return _json_scalar(tag, values)
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
    for tag, values in _present_tags(attr).items():
        if tag in ("S", "N", "B"):
            parts.append(values)
        elif tag == "BOOL":
            parts.append(pc.if_else(values, _TRUE, _FALSE))
        else:
            nested = True
    if nested:
        parts.append(json_text(attr, _NESTED_TAGS))
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


def _elements(lists: pa.Array) -> pa.Array:
    """The values of every list of ``lists`` in order (null lists hold none)."""
    return pc.list_flatten(lists)


def _relist(lists: pa.Array, convert: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``lists`` with their elements replaced by ``convert(elements)``, offsets kept."""
    offsets = lists.offsets
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    values = lists.values.slice(start, end - start)
    if start:
        offsets = pc.subtract(offsets, start)
    converted = convert(values)
    mask = pc.is_null(lists) if lists.null_count else None
    return pa.ListArray.from_arrays(offsets, converted, mask=mask)


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
    filled = pc.fill_null(strings, _EMPTY)
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


# -- JSON text ------------------------------------------------------------------------------
#
# What is rendered: strings as JSON strings, numbers as DynamoDB wrote them, booleans, NULL as
# null, binary as its base64 text, maps as objects with only the keys present in the item
# (no null for an absent key), lists and sets as arrays. Compact (no spaces); object keys in
# the order the batch first saw them.


_NESTED_TAGS = frozenset(("M", "L", "SS", "NS", "BS"))


def json_text(attr: pa.StructArray, tags: frozenset[str] | None = None) -> pa.Array:
    """Each typed value as JSON text (only values of ``tags`` if given); null where the
    attribute is absent."""
    parts = []
    if not pa.types.is_struct(attr.type):  # the elements of lists that are all empty
        return pa.nulls(len(attr), pa.string())
    for f in attr.type:
        if tags is not None and f.name not in tags:
            continue
        values = pc.struct_field(attr, f.name)
        if values.null_count == len(values):
            continue
        tag = f.name
        if tag == "NULL":
            parts.append(pc.if_else(values, _NULL_TEXT, _NO_TEXT))
        elif tag == "M":
            parts.append(json_object(values))
        elif tag == "L":
            parts.append(_json_array(values, lambda items: pc.fill_null(json_text(items), "null")))
        elif tag in _TAGS_PLAIN:
            plain = _TAGS_PLAIN[tag]
            parts.append(_json_array(values, lambda items, t=plain: _json_scalar(t, items)))
        else:
            parts.append(_json_scalar(tag, values))
    if not parts:
        return pa.nulls(len(attr), pa.string())
    return parts[0] if len(parts) == 1 else pc.coalesce(*parts)


def json_object(maps: pa.StructArray, names: list[str] | None = None) -> pa.Array:
    """A struct of typed values (a map, or an item) as a JSON object; null where ``maps`` is."""
    pieces = []
    for name in sorted(maps.type.names if names is None else names):  # the same text whatever
        child = json_text(pc.struct_field(maps, name))  # order the body listed the keys in
        if child.null_count == len(child):
            continue  # absent from every item of the batch
        key = json.dumps(name, ensure_ascii=False) + ":"
        # '"key":value,' where present, '' where absent (binary_join_element_wise's own
        # null_handling="skip" drops rows in which every piece is null).
        pieces.append(pc.fill_null(pc.binary_join_element_wise(key, child, ",", ""), _EMPTY))
    n = len(maps)
    if not pieces:
        body: pa.Array = pa.repeat(pa.scalar("{}"), n)
    else:
        joined = pieces[0] if len(pieces) == 1 else pc.binary_join_element_wise(*pieces, "")
        members = pc.utf8_slice_codeunits(joined, 0, -1)  # the last piece's comma
        body = pc.binary_join_element_wise("{", members, "}", "")
    if maps.null_count:
        body = pc.if_else(pc.is_valid(maps), body, _NO_TEXT)
    return body


def _json_array(lists: pa.Array, render: Callable[[pa.Array], pa.Array]) -> pa.Array:
    rendered = _relist(lists, render)
    body = pc.binary_join_element_wise("[", pc.binary_join(rendered, ","), "]", "")
    return body


def _json_scalar(tag: str, values: pa.Array) -> pa.Array:
    if tag == "N":
        return values.cast(pa.string())
    if tag == "BOOL":
        return pc.if_else(values, _TRUE, _FALSE)
    if tag == "B":
        return pc.binary_join_element_wise('"', values, '"', "")
    return json_string(values)


_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def json_string(strings: pa.Array) -> pa.Array:
    """Strings as JSON string literals (quoted, escaped)."""
    strings = strings.cast(pa.string())
    if pc.any(pc.match_substring_regex(strings, r'["\\\x00-\x1f]')).as_py():
        strings = pc.replace_substring(strings, "\\", "\\\\")
        strings = pc.replace_substring(strings, '"', '\\"')
        if pc.any(pc.match_substring_regex(strings, r"[\x00-\x1f]")).as_py():
            for code in range(0x20):
                char = chr(code)
                strings = pc.replace_substring(strings, char, _ESCAPES.get(char, f"\\u{code:04x}"))
    return pc.binary_join_element_wise('"', strings, '"', "")
