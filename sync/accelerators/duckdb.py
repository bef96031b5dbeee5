"""DuckDB accelerator: set-based apply of Arrow batches, cursors for concurrent queries."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from sync.accelerators import sql
from sync.accelerators.query import QueryError, StopSignal
from sync.accelerators.spec import EngineSpec
from sync.accelerators.sqlengine import SqlAccelerator, transaction
from sync.changes import OP_COLUMN, Op
from sync.schema import (
    Column,
    ColumnType,
    ListType,
    SqlType,
    StructType,
    TableSpec,
    TypeSupport,
)
from sync.settings import AccelerationSettings

TYPE_NAMES = {
    ColumnType.BIGINT: "BIGINT",
    ColumnType.DOUBLE: "DOUBLE",
    ColumnType.VARCHAR: "VARCHAR",
    ColumnType.BOOLEAN: "BOOLEAN",
    ColumnType.BLOB: "BLOB",
    ColumnType.JSON: "JSON",
    ColumnType.TIMESTAMP: "TIMESTAMPTZ",
    ColumnType.DATE: "DATE",
}
TYPE_SUPPORT = TypeSupport(structs=True, lists="any")
SPEC = EngineSpec(
    name="duckdb",
    title="DuckDB",
    accelerator="sync.accelerators.duckdb:DuckDBAccelerator",
    modes=("memory", "file"),
    type_support=TYPE_SUPPORT,
    dialect="duckdb",
    placeholder="$",
    shared_readers=False,  # one process holds the file's write lock; no other may open it
    file_param="duckdb_file",
)
ROWS_PER_BATCH = 64 * 1024


def type_name(type_: SqlType) -> str:
    """DuckDB's name for a column type: STRUCT and LIST for maps and lists."""
    if isinstance(type_, ColumnType):
        return TYPE_NAMES[type_]
    if isinstance(type_, ListType):
        return f"{type_name(type_.element)}[]"
    if isinstance(type_, StructType):
        fields = ", ".join(f"{sql.quote(n)} {type_name(t)}" for n, t in type_.fields)
        return f"STRUCT({fields})"
    return str(type_)  # DECIMAL(p,s)


class DuckDBQueryHandle:
    """Queries on their own DuckDB cursor each, streaming Arrow batches from the engine."""

    dialect = SPEC.dialect

    def __init__(self, accelerator: DuckDBAccelerator) -> None:
        self._accelerator = accelerator

    def execute(
        self, sql_text: str, params: Sequence[object] = (), stop: StopSignal | None = None
    ) -> pa.RecordBatchReader:
        return self.start(sql_text, params, stop=stop).reader

    def start(
        self,
        sql_text: str,
        params: Sequence[object] = (),
        max_batch_rows: int | None = None,
        stop: StopSignal | None = None,
    ) -> DuckDBQuery:
        query = DuckDBQuery(self._accelerator.cursor())
        if stop is not None:
            stop.on_set(query.interrupt)
        rows = ROWS_PER_BATCH if max_batch_rows is None else min(max_batch_rows, ROWS_PER_BATCH)
        try:
            if stop is not None and stop.is_set():
                raise QueryError("the query was stopped before it started")
            # The engine's own guard behind the server's SQL check: a statement that writes
            # fails in a read-only transaction. It ends when the reader is released.
            query.cursor.execute("BEGIN TRANSACTION READ ONLY")
            relation = query.cursor.sql(sql_text, params=list(params) or None)
            if relation is None:  # a statement without a result
                query.reader = pa.RecordBatchReader.from_batches(pa.schema([]), [])
            else:
                query.reader = _with_utc(relation.to_arrow_reader(rows))
        except (duckdb.Error, QueryError) as e:
            query.close()
            raise QueryError(str(e)) from e
        return query


def _with_utc(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``reader`` with every zoned timestamp named ``UTC``.

    DuckDB names its session's zone (``Etc/UTC``, or the host's zone) where the table's schema,
    GetTables and clients' type maps say ``UTC``. The values are UTC instants either way, so
    the cast changes the type's metadata only, not the data.
    """
    schema = pa.schema(
        [field.with_type(_utc(field.type)) for field in reader.schema], reader.schema.metadata
    )
    return reader if schema.equals(reader.schema) else reader.cast(schema)


def _utc(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        return pa.timestamp(kind.unit, "UTC")
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_utc(kind.value_type)))
    if pa.types.is_struct(kind):
        return pa.struct([field.with_type(_utc(field.type)) for field in kind])
    if pa.types.is_map(kind):
        return pa.map_(
            kind.key_field.with_type(_utc(kind.key_type)),
            kind.item_field.with_type(_utc(kind.item_type)),
            kind.keys_sorted,
        )
    return kind


class DuckDBQuery:
    """A statement streaming from its own cursor.

    DuckDB's reader holds the cursor's connection, and so its read-only transaction, until the
    reader is closed or dropped: callers that only keep the reader leak nothing. Closing the
    cursor while the reader is still read would end the result early without an error, so
    :meth:`close` is for when nobody reads any more. The cursor is never reused, so a late
    :meth:`interrupt` can stop nothing but this statement.
    """

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self.cursor = cursor
        # Set once the statement runs; the query exists before, so that a stop can reach it.
        self._reader: pa.RecordBatchReader | None = None

    @property
    def reader(self) -> pa.RecordBatchReader:
        assert self._reader is not None, "the statement has not started"
        return self._reader

    @reader.setter
    def reader(self, reader: pa.RecordBatchReader) -> None:
        self._reader = reader

    def interrupt(self) -> None:
        try:
            self.cursor.interrupt()
        except duckdb.Error:
            pass  # closed already: nothing runs any more

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self.cursor.close()


class DuckDBAccelerator(SqlAccelerator[duckdb.DuckDBPyConnection]):
    """One DuckDB database (a file, or in memory) holding mirrored tables and checkpoints."""

    def __init__(self, settings: AccelerationSettings) -> None:
        super().__init__(SPEC)
        # Queries share this database: no file or network access from SQL, and settings
        # locked so that no statement can turn that back on.
        config: dict[str, str | bool | int | float | list[str]] = {
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "lock_configuration": True,
        }
        self._file = settings.file if settings.mode == "file" else None
        if settings.mode == "file":
            assert settings.file is not None
            settings.file.parent.mkdir(parents=True, exist_ok=True)
            self._db = duckdb.connect(str(settings.file), config=config)
        else:
            self._db = duckdb.connect(":memory:", config=config)
        self._write_lock = threading.Lock()
        self._writer = self._db.cursor()
        self._writer.execute(sql.CHECKPOINT_DDL)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._closed:
                raise QueryError("the accelerator is closed")
            return self._db.cursor()

    def _transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        return transaction(self._writer, self._write_lock, "BEGIN TRANSACTION")

    @contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.cursor() as cur:
            yield cur

    def _introspect(self, cur: duckdb.DuckDBPyConnection, name: str) -> TableSpec | None:
        columns = cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
            [name],
        ).fetchall()
        if not columns:
            return None
        # fetchall, not fetchone: an unread result would block the writer's next statement.
        key_rows = cur.execute(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            "WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [name],
        ).fetchall()
        key = tuple(key_rows[0][0]) if key_rows else ()
        return TableSpec(name, tuple(Column(n, sql.type_from_name(t)) for n, t in columns), key)

    def _type_name(self, type_: SqlType) -> str:
        return type_name(type_)

    def _using(self, column: str, before: SqlType, after: SqlType) -> str | None:
        """STRUCT and LIST become JSON text, binary its base64 text (as new values are
        rendered); a STRUCT gaining fields is cast by name (old rows get nulls in the new ones).
        """
        if after in (ColumnType.VARCHAR, ColumnType.JSON):
            if isinstance(before, ListType | StructType):
                return f"to_json({sql.quote(column)})::{TYPE_NAMES[after]}"
            if before is ColumnType.BLOB:
                return f"base64({sql.quote(column)})"
        return None

    def _write(
        self, cur: duckdb.DuckDBPyConnection, spec: TableSpec, rows: pa.Table, bootstrap: bool
    ) -> None:
        table = sql.quote(spec.name)
        columns = ", ".join(sql.quote(c) for c in spec.column_names)
        cur.register("_changes", rows)
        try:
            if not bootstrap:
                # Delete every key the batch touches, then insert the upserted rows: measured
                # several times faster than INSERT … ON CONFLICT in DuckDB.
                cur.execute(
                    f"DELETE FROM {table} USING _changes "
                    f"WHERE {sql.key_match(spec.key, table, '_changes')}"
                )
            cur.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _changes "
                f"WHERE {OP_COLUMN} = {int(Op.UPSERT)}"
            )
        finally:
            cur.unregister("_changes")

    def _release(self) -> None:
        with self._write_lock:
            self._writer.close()
            self._db.close()

    def snapshot(self, dest: Path) -> None:
        """Checkpoint the WAL into the file and copy it, holding the writer: no batch can land
        halfway, so data and checkpoint in the copy agree."""
        if self._file is None:
            raise ValueError("snapshots need a file accelerator (mode: file)")
        with self._write_lock:
            self._writer.execute("CHECKPOINT")
            wal = self._file.with_name(self._file.name + ".wal")
            if wal.exists() and wal.stat().st_size:
                raise RuntimeError(f"{wal} is not empty after CHECKPOINT; snapshot skipped")
            shutil.copyfile(self._file, dest)

    def query_handle(self) -> DuckDBQueryHandle:
        return DuckDBQueryHandle(self)
