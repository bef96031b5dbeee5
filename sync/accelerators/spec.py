"""What an engine is, declared by its module: read by config validation, settings and serving,
so that no code outside ``sync/accelerators/`` needs to know an engine by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from sync.schema import TypeSupport

Mode = Literal["memory", "file"]


class ParamError(ValueError):
    """An acceleration param's value is refused; ``param`` names it, the message says why."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Connection:
    """What a server engine's params resolve to: its connection keywords, and those queries
    connect with instead (a read-only role), if configured."""

    keywords: Mapping[str, str]
    reader: Mapping[str, str] | None = None


@dataclass(frozen=True)
class EngineSpec:
    """One engine's declaration; importing it never loads the engine's driver."""

    name: str  # as written in ``acceleration.engine``
    title: str  # as written in prose (error messages)
    accelerator: str  # ``module:Class`` of the implementation, imported on first open
    modes: tuple[Mode, ...]  # the first is the default
    type_support: TypeSupport
    dialect: str  # sqlglot's name for the SQL the engine runs
    placeholder: Literal["$", "?"]  # numbered parameters are written ``$1`` or ``?1``
    # Other processes may read the database while this one writes it (a DuckDB file is locked).
    shared_readers: bool
    file_param: str | None = None  # the param naming the database file in file mode
    params: tuple[str, ...] = ()  # the other params it accepts
    # The params given (unset ones left out) → connection settings; raises ParamError, or
    # ImportError when the driver is not installed.
    connection: Callable[[Mapping[str, str]], Connection] | None = None
    # Where a server engine's database is, from its connection keywords: datasets with one
    # location share one database.
    server_location: Callable[[Mapping[str, str]], str] | None = None
    extra: str | None = None  # the package extra that installs its driver
    modes_note: str = ""  # why modes are missing, for the error naming a refused one
    max_identifier_bytes: int | None = None  # longer table names are cut short
    # Result column types come from the values (SQLite types a computed column by its first
    # rows), so a result's schema needs the real query, not a LIMIT 0 probe.
    value_typed_results: bool = False
    # The params given (unset ones left out) → the engine's own options, validated; raises
    # ParamError naming the refused param.
    options: Callable[[Mapping[str, str]], Mapping[str, str]] | None = None
    # Params a Spice user's file may hold that mean nothing here: accepted with a warning.
    inapplicable_params: tuple[str, ...] = ()
