"""Type inference: the column type DynamoDB typed values need, worked out on whole columns.

N is BIGINT, DOUBLE or DECIMAL, S TIMESTAMP / DATE when every value parses as one, maps STRUCT
and lists LIST where the engine has them (else JSON); values of several kinds take the type
that holds them all (``sync.widening``). Every test is an Arrow kernel over the column (regular
expressions, casts, lengths); no value goes through Python on its own.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from sync.dynamodb.golayout import DATE_REGEX
from sync.dynamodb.golayout import parse_date as _parse_date
from sync.dynamodb.typedvalues import SCALAR_TAGS, TAGS_PLAIN, elements, present_tags, unnest
from sync.dynamodb.typeoptions import DEFAULT_OPTIONS, DELETED_AT, TypeOptions
from sync.errors import PermanentError
from sync.schema import Column, ColumnType, DecimalType, ListType, SqlType, StructType, is_scalar
from sync.widening import uniform, unify

_INT64_DIGITS = r"^-?[0-9]{1,18}$"  # always fits BIGINT; 19 digits are compared one by one
_PLAIN_NUMBER = r"^-?0*(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?$"
_INT64_MAX, _INT64_MIN = "9223372036854775807", "9223372036854775808"


class NumberOverflowError(PermanentError):
    """A number does not fit its column and ``number_overflow: error`` asks to stop."""


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
    for tag, values in present_tags(attr).items():
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
    for tag, values in present_tags(attr).items():
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
    if tag in SCALAR_TAGS:
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
    items = elements(values)
    if tag == "L":
        kinds = tag_types(items, options, f"{name}[]") if len(items) else []
        if not kinds:
            return ListType(ColumnType.VARCHAR)  # only empty lists so far
        element = kinds[0][0]
        for kind, _ in kinds[1:]:
            element = unify(element, kind, support)
        if support.lists == "uniform" and (
            not is_scalar(element) or any(not uniform(kind, element, element) for kind, _ in kinds)
        ):
            return ColumnType.JSON
        return ListType(element)
    plain_tag = TAGS_PLAIN[tag]
    if len(items) == 0:
        return ListType(ColumnType.BIGINT if tag == "NS" else _scalar_default(plain_tag))
    element_type = _scalar_type(plain_tag, items, options, f"{name}[]", sets=True)
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
    if options.settings.number_type == "decimal":
        exact = DecimalType(options.settings.decimal_scale)
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
    if options.settings.number_overflow == "error":
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
    images = unnest(images, options.settings.unnest_depth)
    wanted = None if names is None else set(names)
    columns = [
        Column(c.name, declared)
        for c in options.settings.columns
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
    if options.settings.ttl_deletes == "soft":
        columns.append(Column(DELETED_AT, ColumnType.TIMESTAMP))
    return columns
