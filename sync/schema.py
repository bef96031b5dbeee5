"""Column types of a mirrored table and their Arrow form, shared by source and accelerators."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

import pyarrow as pa


class ColumnType(StrEnum):
    """SQL column types a DynamoDB attribute maps to (names as DuckDB spells them)."""

    BIGINT = "BIGINT"
    DOUBLE = "DOUBLE"
    VARCHAR = "VARCHAR"
    BOOLEAN = "BOOLEAN"
    BLOB = "BLOB"
    JSON = "JSON"  # maps, lists and sets, stored as JSON text

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
}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType


@dataclass(frozen=True)
class TableSpec:
    """A mirrored table: its SQL name, columns (key columns first) and DynamoDB key."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column | None:
        for column in self.columns:
            if column.name == name:
                return column
        return None

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.type.arrow, nullable=c.name not in self.key) for c in self.columns]
        )

    def with_columns(self, columns: list[Column]) -> TableSpec:
        """This spec with ``columns`` replacing same-named ones and the rest appended."""
        by_name = {c.name: c for c in columns}
        kept = tuple(by_name.pop(c.name, c) for c in self.columns)
        return replace(self, columns=kept + tuple(by_name.values()))
