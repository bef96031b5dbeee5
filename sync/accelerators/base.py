"""The accelerator interface, and opening one by its engine's name."""

from __future__ import annotations

import importlib
from types import TracebackType
from typing import Protocol

from sync.accelerators import engine_spec
from sync.accelerators.query import QueryHandle
from sync.changes import ChangeBatch, Checkpoint
from sync.schema import Index, TableSpec, TypeSupport
from sync.settings import AccelerationSettings

CHECKPOINT_TABLE = "_dynamirror_checkpoints"


class Accelerator(Protocol):
    """One engine database holding one or more mirrored tables and their checkpoints.

    A single sync thread writes each table; queries use :meth:`query_handle` concurrently.
    """

    engine: str
    type_support: TypeSupport  # the nested types it holds; the rest is stored as JSON

    def table_spec(self, name: str) -> TableSpec | None:
        """The table as the engine holds it now, or None if it does not exist."""
        ...

    def create_table(self, spec: TableSpec) -> None:
        """Create the table empty, dropping any table of that name (checkpoints untouched)."""
        ...

    def swap_in(self, dataset: str, staging: TableSpec, name: str, checkpoint: Checkpoint) -> None:
        """Replace table ``name`` by the loaded ``staging`` table and store ``checkpoint``, in
        one transaction: queries see the old table or the new one, never a half-loaded one."""
        ...

    def apply(self, dataset: str, spec: TableSpec, batch: ChangeBatch) -> None:
        """Apply ``batch`` to the table in one transaction, together with its checkpoint.

        Columns of ``spec`` missing from the table are added, and widened types altered, in
        that same transaction. A batch without a checkpoint (bootstrap) inserts its rows.
        """
        ...

    def load_checkpoint(self, dataset: str) -> Checkpoint | None:
        """The checkpoint last committed for ``dataset``."""
        ...

    def declare_indexes(self, table: str, indexes: tuple[Index, ...]) -> None:
        """Keep these secondary indexes on ``table`` (``acceleration.indexes``), through
        loads swapped in and schema changes; an engine without them says so once."""
        ...

    def row_count(self, table: str) -> int: ...

    def query_handle(self) -> QueryHandle:
        """A read-only handle for queries over every table of this database."""
        ...

    def close(self) -> None:
        """Release the engine; idempotent."""
        ...

    def __enter__(self) -> Accelerator: ...

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def open_accelerator(settings: AccelerationSettings) -> Accelerator:
    """Open the engine named by ``settings`` (its module and driver load on first use)."""
    module_name, class_name = engine_spec(settings.engine).accelerator.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(settings)
