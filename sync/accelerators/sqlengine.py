"""What the SQL engines share: tables created and evolved from one schema diff, a loaded table
swapped in, the checkpoint written in the batch's transaction, an idempotent close.

An engine subclasses :class:`SqlAccelerator` and supplies what really differs: how it begins
and ends a write transaction, where the sync reads, how it reads a table's definition back, its
type names, how a batch's rows go in, and what closing releases. The rest (how a widened
column's values convert, what follows a table's creation, how columns change, how a loaded
table replaces the served one, the checkpoint SQL) has a default an engine may override.
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from types import TracebackType
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import pyarrow as pa

from sync.accelerators import sql
from sync.accelerators.spec import EngineSpec
from sync.changes import ChangeBatch, Checkpoint
from sync.schema import Index, SchemaChangeError, SchemaDiff, SqlType, TableSpec, diff


class Cursor(Protocol):
    """What the shared mechanics need of an engine's cursor (or connection)."""

    def execute(self, statement: Any, params: Any = ..., /) -> Any: ...

    def executemany(self, statement: Any, params: Any, /) -> Any: ...


C = TypeVar("C", bound=Cursor)


@contextmanager
def transaction(cur: C, lock: AbstractContextManager[Any], begin: str) -> Iterator[C]:
    """``begin`` … COMMIT on ``cur`` holding ``lock``; ROLLBACK on any exception."""
    with lock:
        cur.execute(begin)
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")


class SqlAccelerator(ABC, Generic[C]):
    """One engine database holding mirrored tables and their checkpoints (see
    :class:`sync.accelerators.base.Accelerator`), written by one sync thread per table.

    Every change to a table and the checkpoint that goes with it commit in one transaction.
    """

    # The checkpoint table's rows (``?`` placeholders; an engine binding others overrides).
    CHECKPOINT_DELETE: ClassVar[str] = sql.CHECKPOINT_DELETE
    CHECKPOINT_INSERT: ClassVar[str] = sql.CHECKPOINT_INSERT
    CHECKPOINT_SELECT: ClassVar[str] = sql.CHECKPOINT_SELECT

    def __init__(self, spec: EngineSpec) -> None:
        self.engine_spec = spec
        self.engine = spec.name
        self.type_support = spec.type_support
        # Tables as committed, so a batch compares specs instead of asking the engine; only the
        # writer changes tables.
        self._specs: dict[str, TableSpec] = {}
        self._indexes: dict[str, tuple[Index, ...]] = {}  # declared, by table
        # Run first in every write transaction of a table a lease guards (see sync.lease);
        # True on the first write of a new term, when other runtimes may have changed tables.
        self._fences: dict[str, Callable[[C], bool]] = {}
        self._lock = threading.Lock()  # guards _closed (and engine state kept with it)
        self._closed = False

    # -- hooks: what each engine does its own way ------------------------------------------

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[C]:
        """BEGIN … COMMIT on a write cursor; ROLLBACK on any exception."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[C]:
        """A cursor for the sync's own reads (definitions, checkpoints, counts)."""

    @abstractmethod
    def _introspect(self, cur: C, name: str) -> TableSpec | None:
        """Table ``name`` as the engine holds it, or None if there is none."""

    @abstractmethod
    def _type_name(self, type_: SqlType) -> str:
        """The engine's name for a column type."""

    @abstractmethod
    def _write(self, cur: C, spec: TableSpec, rows: pa.Table, bootstrap: bool) -> None:
        """Write ``rows`` (an ``_op`` column, then the columns) into table ``spec``.

        ``bootstrap``: the rows are upserts filling a fresh table, insert them. Otherwise there
        is one row per key: delete the keys marked deleted, upsert the others.
        """

    @abstractmethod
    def _release(self) -> None:
        """Close the engine's connections; called once."""

    # -- hooks with a default ---------------------------------------------------------------

    def _using(self, column: str, before: SqlType, after: SqlType) -> str | None:
        """The expression converting a widened column's stored values, as new values of the
        wider type are written (None: the engine's own cast)."""
        return None

    def _created(self, cur: C, spec: TableSpec) -> None:
        """Called in the transaction that created table ``spec`` (grants, for instance)."""

    def _alter(self, cur: C, change: SchemaDiff) -> None:
        """Add the columns and widen the types ``change`` lists (a table that exists)."""
        table = sql.quote(change.wanted.name)
        for column in change.add:
            cur.execute(
                f"ALTER TABLE {table} ADD COLUMN {sql.quote(column.name)} "
                f"{self._type_name(column.type)}"
            )
        for widened in change.widen:
            using = self._using(widened.column, widened.before, widened.after)
            cur.execute(
                f"ALTER TABLE {table} ALTER COLUMN {sql.quote(widened.column)} "
                f"TYPE {self._type_name(widened.after)}{f' USING {using}' if using else ''}"
            )

    def _replace(self, cur: C, staging: str, name: str) -> None:
        """Table ``staging`` becomes table ``name``, whichever table had that name dropped."""
        cur.execute(f"DROP TABLE IF EXISTS {sql.quote(name)}")
        cur.execute(f"ALTER TABLE {sql.quote(staging)} RENAME TO {sql.quote(name)}")

    def _rows(self, spec: TableSpec, batch: ChangeBatch) -> pa.Table:
        """The rows :meth:`_write` gets, prepared before the transaction begins."""
        return batch.rows if batch.inserts_only else batch.latest_per_key(spec.key)

    @contextmanager
    def _writing(self, table: str) -> Iterator[C]:
        """A write transaction on ``table`` (or under its dataset's name), fenced first when a
        lease guards it: a runtime that lost the lease cannot commit."""
        with self._transaction() as cur:
            fence = self._fences.get(table)
            if fence is not None and fence(cur):
                self._specs.clear()  # written by another runtime since: ask the engine
            yield cur

    def fence(self, tables: Iterable[str], check: Callable[[C], bool]) -> None:
        """Run ``check`` first in every later write transaction of ``tables``."""
        for table in tables:
            self._fences[table] = check

    # -- the accelerator ---------------------------------------------------------------------

    def table_spec(self, name: str) -> TableSpec | None:
        with self._reading() as cur:
            return self._introspect(cur, name)

    def create_table(self, spec: TableSpec) -> None:
        limit = self.engine_spec.max_identifier_bytes
        if limit is not None and len(spec.name.encode()) > limit:
            raise ValueError(
                f"table name {spec.name!r} is longer than {self.engine_spec.title}'s {limit} bytes"
            )
        with self._writing(spec.name) as cur:
            cur.execute(f"DROP TABLE IF EXISTS {sql.quote(spec.name)}")
            self._create(cur, spec)
        self._specs[spec.name] = spec

    def swap_in(self, dataset: str, staging: TableSpec, name: str, checkpoint: Checkpoint) -> None:
        with self._writing(dataset) as cur:
            self._evolve(cur, staging)
            self._replace(cur, staging.name, name)
            self._create_indexes(cur, replace(staging, name=name))
            self._store_checkpoint(cur, dataset, checkpoint)
        self._specs.pop(staging.name, None)
        self._specs[name] = replace(staging, name=name)

    def apply(self, dataset: str, spec: TableSpec, batch: ChangeBatch) -> None:
        rows = self._rows(spec, batch)
        self._unindex_widened(spec)
        with self._writing(dataset) as cur:
            self._evolve(cur, spec)
            if rows.num_rows:
                self._write(cur, spec, rows, batch.inserts_only)
            if batch.checkpoint is not None:
                self._store_checkpoint(cur, dataset, batch.checkpoint)
        self._specs[spec.name] = spec

    def declare_indexes(self, table: str, indexes: tuple[Index, ...]) -> None:
        """Keep ``indexes`` on ``table``: made now if the table exists, and whenever it is
        created, swapped in or altered from now on; an index whose columns the table does
        not have yet waits for them."""
        self._indexes[table] = indexes
        with self._writing(table) as cur:
            spec = self._introspect(cur, table)
            if spec is not None:
                self._create_indexes(cur, spec)

    def load_checkpoint(self, dataset: str) -> Checkpoint | None:
        with self._reading() as cur:
            return self._read_checkpoint(cur, dataset)

    def row_count(self, table: str) -> int:
        with self._reading() as cur:
            row = cur.execute(f"SELECT count(*) FROM {sql.quote(table)}").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Release the engine; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- shared mechanics --------------------------------------------------------------------

    def _create(self, cur: C, spec: TableSpec) -> None:
        cur.execute(sql.create_table_sql(spec, self._type_name))
        self._created(cur, spec)
        self._create_indexes(cur, spec)

    def _create_indexes(self, cur: C, spec: TableSpec) -> None:
        """The declared indexes of ``spec``'s table whose columns it has, if missing."""
        table = sql.quote(spec.name)
        for index in self._indexes.get(spec.name, ()):
            if all(spec.column(c) is not None for c in index.columns):
                columns = ", ".join(sql.quote(c) for c in index.columns)
                cur.execute(
                    f"CREATE {'UNIQUE ' if index.unique else ''}INDEX IF NOT EXISTS "
                    f"{sql.quote(self._index_name(spec.name, index))} ON {table} ({columns})"
                )

    def _drop_indexes(self, cur: C, table: str, columns: set[str]) -> None:
        """Drop the declared indexes of ``table`` on any of ``columns`` (before their type
        changes: an engine may refuse to change an indexed column)."""
        for index in self._indexes.get(table, ()):
            if columns & set(index.columns):
                cur.execute(f"DROP INDEX IF EXISTS {sql.quote(self._index_name(table, index))}")

    def _unindex_widened(self, spec: TableSpec) -> None:
        """Drop the table's declared indexes, in a transaction of their own, when ``spec``
        widens a column: DuckDB refuses to change a column's type while the table has
        any index, even one dropped in the same transaction. The batch's transaction makes
        them again; an index only speeds reads, so the moment without it changes no answer."""
        indexed = {c for index in self._indexes.get(spec.name, ()) for c in index.columns}
        current = self._specs.get(spec.name)
        if not indexed or current == spec:
            return
        if current is None:
            current = self.table_spec(spec.name)
        try:
            widened = diff(current, spec).widen
        except SchemaChangeError:
            return  # refused in the batch's own transaction, with nothing changed
        if widened:
            with self._writing(spec.name) as cur:
                self._drop_indexes(cur, spec.name, indexed)

    def _index_name(self, table: str, index: Index) -> str:
        """``<table>_<columns>_idx``, shortened with a hash where the engine's names are."""
        name = f"{table}_{'_'.join(index.columns)}_idx"
        limit = self.engine_spec.max_identifier_bytes
        if limit is not None and len(name.encode()) > limit:
            digest = hashlib.sha1(name.encode()).hexdigest()[:10]
            name = f"{name.encode()[: limit - 12].decode(errors='ignore')}_{digest}"
        return name

    def _evolve(self, cur: C, spec: TableSpec) -> None:
        """Make the table ``spec`` in the transaction of ``cur``: create it, or alter it."""
        current = self._specs.get(spec.name)
        if current == spec:  # the common case: no question to the engine
            return
        change = diff(current or self._introspect(cur, spec.name), spec)
        if change.create:
            self._create(cur, spec)
        elif not change.is_empty:
            self._alter(cur, change)
            self._create_indexes(cur, spec)

    def _store_checkpoint(self, cur: C, dataset: str, checkpoint: Checkpoint) -> None:
        cur.execute(self.CHECKPOINT_DELETE, [dataset])
        rows = sql.checkpoint_rows(dataset, checkpoint)
        if rows:
            cur.executemany(self.CHECKPOINT_INSERT, rows)

    def _read_checkpoint(self, cur: C, dataset: str) -> Checkpoint | None:
        return sql.checkpoint_from_rows(cur.execute(self.CHECKPOINT_SELECT, [dataset]).fetchall())
