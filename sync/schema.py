"""Column types of a mirrored table and their Arrow form, shared by source and accelerators.

A column's type is a :data:`SqlType`: one of the scalar :class:`ColumnType` members, or a
:class:`DecimalType`, :class:`ListType` or :class:`StructType`. Which of them a table uses
depends on its engine's :class:`TypeSupport` (an engine without STRUCT keeps maps as JSON).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

import pyarrow as pa


class ColumnType(StrEnum):
    """Scalar SQL column types a DynamoDB attribute maps to (names as DuckDB spells them)."""

    BIGINT = "BIGINT"
    DOUBLE = "DOUBLE"
    VARCHAR = "VARCHAR"
    BOOLEAN = "BOOLEAN"
    BLOB = "BLOB"
    JSON = "JSON"  # maps, lists and sets as JSON text, where the engine has no STRUCT / LIST
    TIMESTAMP = "TIMESTAMP"  # an instant: UTC, microseconds
    DATE = "DATE"

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW[self]


_ARROW: dict[ColumnType, pa.DataType] = {
    ColumnType.BIGINT: pa.int64(),
    ColumnType.DOUBLE: pa.float64(),
    ColumnType.VARCHAR: pa.string(),
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.BLOB: pa.binary(),
    ColumnType.JSON: pa.string(),
    ColumnType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    ColumnType.DATE: pa.date32(),
}

MAX_DECIMAL_PRECISION = 38


@dataclass(frozen=True)
class DecimalType:
    """``DECIMAL(precision, scale)``: exact numbers, ``scale`` digits after the point."""

    scale: int = 9
    precision: int = MAX_DECIMAL_PRECISION

    @property
    def arrow(self) -> pa.DataType:
        return pa.decimal128(self.precision, self.scale)

    @property
    def integer_digits(self) -> int:
        return self.precision - self.scale

    def __str__(self) -> str:
        return f"DECIMAL({self.precision},{self.scale})"


@dataclass(frozen=True)
class ListType:
    """A list whose elements all have one type."""

    element: SqlType

    @property
    def arrow(self) -> pa.DataType:
        return pa.list_(self.element.arrow)

    def __str__(self) -> str:
        return f"{self.element}[]"


@dataclass(frozen=True)
class StructType:
    """A struct with named, typed fields (every field nullable)."""

    fields: tuple[tuple[str, SqlType], ...]

    @property
    def arrow(self) -> pa.DataType:
        return pa.struct([pa.field(name, type_.arrow) for name, type_ in self.fields])

    def field(self, name: str) -> SqlType | None:
        for field_name, type_ in self.fields:
            if field_name == name:
                return type_
        return None

    def __str__(self) -> str:
        inner = ", ".join(f"{quote_name(name)} {type_}" for name, type_ in self.fields)
        return f"STRUCT({inner})"


SqlType = ColumnType | DecimalType | ListType | StructType
SCALAR_TYPES = (ColumnType.BIGINT, ColumnType.DOUBLE, ColumnType.VARCHAR, ColumnType.BOOLEAN)


def is_nested(type_: SqlType) -> bool:
    """Maps, lists and sets, whether held as STRUCT / LIST or as JSON."""
    return isinstance(type_, ListType | StructType) or type_ is ColumnType.JSON


def is_scalar(type_: SqlType) -> bool:
    return not is_nested(type_)


@dataclass(frozen=True)
class TypeSupport:
    """The nested types an engine can hold; what it cannot hold is stored as JSON.

    ``lists``: ``any`` — lists of any element type (DuckDB); ``uniform`` — arrays of one scalar
    type only (PostgreSQL); ``none`` — no lists at all (SQLite).
    """

    structs: bool = False
    lists: Literal["none", "uniform", "any"] = "none"


@dataclass(frozen=True)
class DeclaredColumn:
    """A column listed in the spicepod's ``columns:``; ``type`` None means inferred.

    ``json_object`` marks the column collecting every undeclared attribute as one JSON
    document (Spice's ``metadata: {json_object: "*"}``).
    """

    name: str
    type: SqlType | None = None
    description: str | None = None
    json_object: bool = False


@dataclass(frozen=True)
class Column:
    name: str
    type: SqlType


@dataclass(frozen=True)
class Index:
    """A secondary index a dataset declares (``acceleration.indexes``): its columns, in order,
    and whether it is unique."""

    columns: tuple[str, ...]
    unique: bool = False


@dataclass(frozen=True)
class TableSpec:
    """A mirrored table: its SQL name, columns (key columns first) and DynamoDB key."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    _index: dict[str, Column] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    # Built once: every query plans against its tables' Arrow schemas.
    _arrow: pa.Schema = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        self._index.update((c.name, c) for c in self.columns)
        fields = [pa.field(c.name, c.type.arrow, c.name not in self.key) for c in self.columns]
        object.__setattr__(self, "_arrow", pa.schema(fields))

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        return self._index.get(name)

    def arrow_schema(self) -> pa.Schema:
        return self._arrow

    def with_columns(self, columns: list[Column]) -> TableSpec:
        """This spec with ``columns`` replacing same-named ones and the rest appended."""
        by_name = {c.name: c for c in columns}
        kept = tuple(by_name.pop(c.name, c) for c in self.columns)
        return replace(self, columns=kept + tuple(by_name.values()))


# -- type names -----------------------------------------------------------------------------

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote_name(name: str) -> str:
    """A struct field name as DuckDB writes it: bare when it can be, else double-quoted."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


_NAMES: dict[str, ColumnType] = {
    **dict.fromkeys(
        ("BIGINT", "INT8", "INT", "INTEGER", "INT4", "INT2", "SMALLINT", "TINYINT", "LONG"),
        ColumnType.BIGINT,
    ),
    **dict.fromkeys(
        ("DOUBLE", "DOUBLE PRECISION", "FLOAT8", "FLOAT", "FLOAT4", "REAL"), ColumnType.DOUBLE
    ),
    **dict.fromkeys(
        ("VARCHAR", "TEXT", "STRING", "CHAR", "CHARACTER", "CHARACTER VARYING", "BPCHAR"),
        ColumnType.VARCHAR,
    ),
    **dict.fromkeys(("BOOLEAN", "BOOL", "LOGICAL"), ColumnType.BOOLEAN),
    **dict.fromkeys(("BLOB", "BYTEA", "BINARY", "VARBINARY", "BYTES"), ColumnType.BLOB),
    **dict.fromkeys(("JSON", "JSONB"), ColumnType.JSON),
    **dict.fromkeys(
        (
            "TIMESTAMP",
            "TIMESTAMPTZ",
            "TIMESTAMP WITH TIME ZONE",
            "TIMESTAMP WITHOUT TIME ZONE",
            "DATETIME",
        ),
        ColumnType.TIMESTAMP,
    ),
    "DATE": ColumnType.DATE,
}
_TOKEN = re.compile(
    r'\s*(?:(?P<quoted>"(?:[^"]|"")*")|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|'
    r"(?P<number>\d+)|(?P<punct>\[\]|[(),]))"
)


def parse_type(text: str) -> SqlType:
    """The type an SQL type name stands for, as DuckDB, PostgreSQL or SQLite spell it.

    Accepts the scalar names above, ``DECIMAL(p, s)`` / ``NUMERIC(p, s)``, ``T[]``,
    ``LIST(T)`` and ``STRUCT(name T, …)`` (names may be double-quoted).

    Raises:
        ValueError: the text is not a type this mirror can hold.
    """
    parser = _TypeParser(text)
    type_ = parser.type()
    if parser.peek() is not None:
        raise ValueError(f"unexpected {parser.peek()!r} in type {text!r}")
    return type_


class _TypeParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        position = 0
        stripped = text.rstrip()
        while position < len(stripped):
            match = _TOKEN.match(stripped, position)
            if match is None:
                raise ValueError(f"cannot read type {text!r} at {stripped[position:]!r}")
            kind = match.lastgroup
            assert kind is not None
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise ValueError(f"type {self.text!r} ends too early")
        token = self.tokens[self.position]
        if expected is not None and token[1].upper() != expected:
            raise ValueError(f"expected {expected!r} in type {self.text!r}, got {token[1]!r}")
        self.position += 1
        return token

    def type(self) -> SqlType:
        kind, word = self.take()
        if kind != "word":
            raise ValueError(f"expected a type name in {self.text!r}, got {word!r}")
        name = word.upper()
        type_: SqlType
        if name in ("DECIMAL", "NUMERIC", "DECIMAL_TEXT"):  # DECIMAL_TEXT: SQLite's spelling
            type_ = self.decimal()
        elif name == "STRUCT" or name == "ROW":
            type_ = self.struct()
        elif name == "LIST":
            self.take("(")
            type_ = ListType(self.type())
            self.take(")")
        else:
            # Multi-word names: DOUBLE PRECISION, TIMESTAMP WITH TIME ZONE, CHARACTER VARYING.
            while (following := self.peek()) is not None and any(
                known.startswith(f"{name} {following.upper()}") for known in _NAMES
            ):
                name = f"{name} {self.take()[1].upper()}"
            if name not in _NAMES:
                raise ValueError(f"unknown type {self.text!r}")
            type_ = _NAMES[name]
            if self.peek() == "(":  # VARCHAR(20), TIMESTAMP(3): the length does not matter
                self.take("(")
                while self.take()[1] != ")":
                    pass
        while self.peek() == "[]":
            self.take()
            type_ = ListType(type_)
        return type_

    def decimal(self) -> DecimalType:
        if self.peek() != "(":
            return DecimalType()
        self.take("(")
        precision = int(self.take()[1])
        scale = 0
        if self.peek() == ",":
            self.take(",")
            scale = int(self.take()[1])
        self.take(")")
        if not 0 < precision <= MAX_DECIMAL_PRECISION or not 0 <= scale <= precision:
            raise ValueError(
                f"DECIMAL({precision},{scale}): precision must be 1 to "
                f"{MAX_DECIMAL_PRECISION} and scale 0 to the precision"
            )
        return DecimalType(scale, precision)

    def struct(self) -> StructType:
        self.take("(")
        fields: list[tuple[str, SqlType]] = []
        while True:
            kind, name = self.take()
            if kind == "quoted":
                name = name[1:-1].replace('""', '"')
            elif kind != "word":
                raise ValueError(f"expected a field name in {self.text!r}, got {name!r}")
            fields.append((name, self.type()))
            if self.peek() == ",":
                self.take(",")
                continue
            self.take(")")
            break
        return StructType(tuple(fields))


# -- schema changes -------------------------------------------------------------------------


class SchemaChangeError(ValueError):
    """A table cannot become the wanted one by adding columns and widening types."""


@dataclass(frozen=True)
class Widened:
    """A column whose type widens: every value ``before`` holds, ``after`` holds too."""

    column: str
    before: SqlType
    after: SqlType


@dataclass(frozen=True)
class SchemaDiff:
    """What turns a table into ``wanted``: create it, or add columns and widen types.

    Columns the table has beyond ``wanted`` are kept; columns are never dropped or narrowed.
    """

    wanted: TableSpec
    create: bool = False
    add: tuple[Column, ...] = ()
    widen: tuple[Widened, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.create or self.add or self.widen)

    def applied(self, current: TableSpec | None) -> TableSpec:
        """``current`` after the change: its columns widened, then the added ones (for engines
        that keep the table's definition themselves rather than in a catalog)."""
        if current is None:
            return self.wanted
        after = {w.column: w.after for w in self.widen}
        columns = tuple(replace(c, type=after.get(c.name, c.type)) for c in current.columns)
        return replace(current, columns=columns + self.add)


def diff(current: TableSpec | None, wanted: TableSpec) -> SchemaDiff:
    """The changes that make ``current`` (None: no such table) into ``wanted``.

    Added columns and widened types are listed in ``wanted``'s column order.

    Raises:
        SchemaChangeError: a key column would change type, or a column would narrow (see
            :func:`widens`): stored values could be lost.
    """
    if current is None:
        return SchemaDiff(wanted, create=True)
    if current == wanted:
        return SchemaDiff(wanted)
    add: list[Column] = []
    widen: list[Widened] = []
    for column in wanted.columns:
        existing = current.column(column.name)
        if existing is None:
            add.append(column)
        elif existing.type != column.type:
            if column.name in current.key:
                raise SchemaChangeError(
                    f"table {wanted.name}: key column {column.name!r} is {existing.type}, "
                    f"it cannot become {column.type}"
                )
            if not widens(existing.type, column.type):
                raise SchemaChangeError(
                    f"table {wanted.name}: column {column.name!r} cannot change from "
                    f"{existing.type} to {column.type}, which does not hold all its values"
                )
            widen.append(Widened(column.name, existing.type, column.type))
    return SchemaDiff(wanted, add=tuple(add), widen=tuple(widen))


def widens(before: SqlType, after: SqlType) -> bool:
    """Whether a column of type ``before`` may become ``after``, its values kept.

    The changes type unification makes: any type to VARCHAR (values become text); maps and
    lists to JSON; BIGINT and DECIMAL to DOUBLE; BIGINT to a DECIMAL with 19 or more integer
    digits; a DECIMAL to one with at least its integer digits and scale; a STRUCT to one with
    at least its fields, each widened; a list to one whose elements widen.
    """
    if before == after or after is ColumnType.VARCHAR:
        return True
    if after is ColumnType.JSON:
        return isinstance(before, ListType | StructType)
    if after is ColumnType.DOUBLE:
        return before is ColumnType.BIGINT or isinstance(before, DecimalType)
    if isinstance(after, DecimalType):
        if before is ColumnType.BIGINT:
            return after.integer_digits >= 19
        return (
            isinstance(before, DecimalType)
            and after.scale >= before.scale
            and after.integer_digits >= before.integer_digits
        )
    if isinstance(after, StructType) and isinstance(before, StructType):
        return all(
            (kept := after.field(name)) is not None and widens(type_, kept)
            for name, type_ in before.fields
        )
    if isinstance(after, ListType) and isinstance(before, ListType):
        return widens(before.element, after.element)
    return False
