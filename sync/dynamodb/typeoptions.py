"""How DynamoDB values become the columns of one dataset in one engine.

The dataset's ``TypeSettings`` (what the spicepod asks for) joined with the engine's
``TypeSupport`` (what it can hold: STRUCT, LIST, else JSON): the one object inference,
conversion and schema evolution read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sync.dynamodb.golayout import TimeLayout, compile_layout
from sync.schema import ColumnType, DeclaredColumn, SqlType, TypeSupport
from sync.settings import TypeSettings
from sync.widening import held

DELETED_AT = "_deleted_at"  # the soft-delete column of ``ttl_deletes: soft``


@dataclass(frozen=True)
class TypeOptions:
    """A dataset's type ``settings`` for an engine that holds ``support`` (README, "Types").

    The default ``support``, ``TypeSupport()``, keeps every map, list and set as JSON text, as
    any engine can.
    """

    settings: TypeSettings = field(default_factory=TypeSettings)
    support: TypeSupport = field(default_factory=TypeSupport)

    @property
    def layout(self) -> TimeLayout:
        """The compiled ``time_format``."""
        return compile_layout(self.settings.time_format)

    @property
    def json_object_column(self) -> str | None:
        """The declared column collecting undeclared attributes, if any."""
        return next((c.name for c in self.settings.columns if c.json_object), None)

    def declared_column(self, name: str) -> DeclaredColumn | None:
        return next((c for c in self.settings.columns if c.name == name), None)

    def declared_type(self, name: str) -> SqlType | None:
        """The type a declared column has in this engine (STRUCT or LIST it lacks: JSON)."""
        column = self.declared_column(name)
        if column is None or (column.type is None and not column.json_object):
            return None
        return ColumnType.JSON if column.json_object else held(column.type, self.support)


DEFAULT_OPTIONS = TypeOptions()
