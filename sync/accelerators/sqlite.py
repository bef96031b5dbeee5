"""SQLite accelerator: WAL, one writer connection, a read-only connection per query.

Memory mode keeps the database in a private file under /dev/shm (RAM) when the machine has
one, removed on close: unlike SQLite's shared-cache ``:memory:``, this lets queries run while
the sync writes (WAL readers never wait for the writer).
"""

from __future__ import annotations

import base64
import decimal
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from sync.accelerators import sql
from sync.accelerators.base import CHECKPOINT_TABLE
from sync.accelerators.query import QueryError, StopSignal
from sync.accelerators.spec import EngineSpec
from sync.accelerators.sqlengine import SqlAccelerator, transaction
from sync.changes import OP_COLUMN, Op
from sync.schema import (
    Column,
    ColumnType,
    DecimalType,
    SchemaDiff,
    SqlType,
    TableSpec,
    TypeSupport,
)
from sync.settings import AccelerationSettings

# SQLite keeps a declared type name as written; values follow its affinity. TIMESTAMP is stored
# as ISO 8601 text in UTC ('2024-01-02 03:04:05.123456Z'), DATE as 'YYYY-MM-DD', DECIMAL as its
# exact digits in a DECIMAL_TEXT(p,s) column (TEXT affinity: NUMERIC affinity would keep only
# 15 significant digits), maps, lists and sets as JSON text.
TYPE_NAMES = {
    ColumnType.BIGINT: "BIGINT",
    ColumnType.DOUBLE: "DOUBLE",
    ColumnType.VARCHAR: "VARCHAR",
    ColumnType.BOOLEAN: "BOOLEAN",
    ColumnType.BLOB: "BLOB",
    ColumnType.JSON: "JSON",
    ColumnType.TIMESTAMP: "TIMESTAMP",
    ColumnType.DATE: "DATE",
}
TYPE_SUPPORT = TypeSupport(structs=False, lists="none")
SPEC = EngineSpec(
    name="sqlite",
    title="SQLite",
    accelerator="sync.accelerators.sqlite:SQLiteAccelerator",
    modes=("memory", "file"),
    type_support=TYPE_SUPPORT,
    dialect="sqlite",
    placeholder="?",
    shared_readers=True,  # WAL: readers in any process never wait for the writer
    file_param="sqlite_file",
    value_typed_results=True,
)
ROWS_PER_BATCH = 64 * 1024
_PY_ARROW = {int: pa.int64(), float: pa.float64(), str: pa.string(), bytes: pa.binary()}


def type_name(type_: SqlType) -> str:
    if isinstance(type_, ColumnType):
        return TYPE_NAMES[type_]
    if isinstance(type_, DecimalType):
        return f"DECIMAL_TEXT({type_.precision},{type_.scale})"
    return "JSON"  # no STRUCT or LIST in SQLite


_BASE64 = "_dynamirror_base64"  # SQLite has none: registered on the writer (rebuilds only)


def _base64(value: object) -> str | None:
    return base64.b64encode(value).decode() if isinstance(value, bytes) else None


def _bindable(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column as values sqlite3 binds without adapters: instants, dates and decimals as text."""
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_decimal(kind):
        return pc.cast(column, pa.string())
    return column


# What a query connection's authorizer lets a statement do: read (plain and recursive
# selects, columns of tables) and call functions, except those below. Everything else
# (PRAGMA, ATTACH, writes, schema changes, transactions) is denied by SQLite itself, whatever
# SQL reached it.
_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
# Functions that reach outside the database or leak process memory: fts3_tokenizer() returns a
# pointer (and with two arguments installs one), load_extension() runs native code, the
# shell's file functions read and write files; randomblob/zeroblob allocate what they are asked.
_DENIED_FUNCTIONS = frozenset(
    {
        "fts3_tokenizer", "fts5", "load_extension", "readfile", "writefile", "edit", "lsmode",
        "sqlar_compress", "sqlar_uncompress", "zipfile", "randomblob", "zeroblob",
    }
)  # fmt: skip


def _authorize(action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
    """The authorizer of a query connection: reads and function calls, but not of SQLite's own
    tables, the checkpoint table or the denied functions. (A CTE's name is read like a table's,
    so the served tables themselves are the statement check's to enforce.)"""
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_READ and arg1 is not None:
        name = arg1.lower()
        if name.startswith("sqlite_") or name == CHECKPOINT_TABLE:
            return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


class SQLiteQueryHandle:
    """Each query on its own read-only connection (``PRAGMA query_only``), streamed in batches.

    The connection's authorizer lets a statement read the mirror tables and call functions but
    a denied few, and nothing else; ``trusted_schema`` is off.
    SQLite results carry no column types, so a result column named like a table column takes
    that column's type (BOOLEAN stays boolean); others take the type of their first value.
    """

    dialect = SPEC.dialect

    def __init__(self, path: Path, column_types: Mapping[str, SqlType]) -> None:
        self._path = path
        self._column_types = column_types

    def execute(
        self, sql_text: str, params: Sequence[object] = (), stop: StopSignal | None = None
    ) -> pa.RecordBatchReader:
        con = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, check_same_thread=False)
        open_ = _Open(con)
        try:
            con.execute("PRAGMA query_only = ON")
            con.execute("PRAGMA trusted_schema = OFF")
            con.set_authorizer(_authorize)
            if stop is not None:
                stop.on_set(open_.interrupt)
                if stop.is_set():
                    raise QueryError("the query was stopped before it started")
            cur = con.execute(sql_text, tuple(params))
            names = [d[0] for d in cur.description or ()]
            first = cur.fetchmany(ROWS_PER_BATCH)
        except (sqlite3.Error, QueryError) as e:
            open_.close()
            raise QueryError(str(e)) from e
        schema = pa.schema(
            [pa.field(n, self._arrow_type(n, i, first)) for i, n in enumerate(names)]
        )
        return pa.RecordBatchReader.from_batches(schema, _batches(open_, cur, first, schema))

    def _arrow_type(self, name: str, index: int, rows: list[tuple[object, ...]]) -> pa.DataType:
        ctype: SqlType | None = self._column_types.get(name)
        if ctype is not None:
            return ctype.arrow
        for row in rows:
            if row[index] is not None:
                return _PY_ARROW.get(type(row[index]), pa.string())
        return pa.string()


class _Open:
    """A query connection that may be interrupted from another thread until it is closed."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con
        self._lock = threading.Lock()

    def interrupt(self) -> None:
        with self._lock:
            try:
                self.con.interrupt()
            except sqlite3.ProgrammingError:
                pass  # closed already: nothing runs any more

    def close(self) -> None:
        with self._lock:
            self.con.close()


def _batches(
    open_: _Open, cur: sqlite3.Cursor, rows: list[tuple[object, ...]], schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    try:
        while rows:
            columns = list(zip(*rows, strict=True))
            yield pa.record_batch(
                [_to_arrow(col, f.type) for col, f in zip(columns, schema, strict=True)],
                schema=schema,
            )
            rows = cur.fetchmany(ROWS_PER_BATCH)
    except sqlite3.Error as e:
        raise QueryError(str(e)) from e
    finally:
        open_.close()


def _to_arrow(values: Sequence[object], type_: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # SQLite stores booleans as 0/1 and lets a column hold mixed kinds of values.
        if pa.types.is_boolean(type_):
            return pa.array([None if v is None else bool(v) for v in values], type_)
        if pa.types.is_decimal(type_):  # REAL values: back to the column's scale
            exact = [None if v is None else _decimal(v, type_.scale) for v in values]
            return pa.array(exact, type_)
        return pa.array([None if v is None else str(v) for v in values], pa.string()).cast(type_)


_DECIMALS = decimal.Context(prec=80)  # room for DECIMAL(38, s) whatever the scale


def _decimal(value: object, scale: int) -> decimal.Decimal:
    return decimal.Decimal(str(value)).quantize(
        decimal.Decimal(1).scaleb(-scale), context=_DECIMALS
    )


class SQLiteAccelerator(SqlAccelerator[sqlite3.Connection]):
    """One SQLite database holding mirrored tables and checkpoints."""

    def __init__(self, settings: AccelerationSettings) -> None:
        super().__init__(SPEC)
        self._temporary = settings.mode == "memory"
        if self._temporary:
            ram = "/dev/shm" if os.path.isdir("/dev/shm") else None
            fd, name = tempfile.mkstemp(prefix="dynamirror-", suffix=".sqlite", dir=ram)
            os.close(fd)
            self.path = Path(name)
        else:
            assert settings.file is not None
            settings.file.parent.mkdir(parents=True, exist_ok=True)
            self.path = settings.file
        self._writer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._writer.execute("PRAGMA journal_mode = WAL")
        self._writer.execute("PRAGMA synchronous = NORMAL")
        self._writer.execute(sql.CHECKPOINT_DDL)
        self._writer.create_function(_BASE64, 1, _base64, deterministic=True)
        self._write_lock = threading.RLock()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._writer, self._write_lock, "BEGIN IMMEDIATE")

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            yield self._writer

    def _introspect(self, cur: sqlite3.Connection, name: str) -> TableSpec | None:
        info = cur.execute(f"PRAGMA table_info({sql.quote(name)})").fetchall()
        if not info:
            return None
        # table_info rows: (cid, name, type, notnull, default, pk position or 0)
        columns = tuple(Column(row[1], sql.type_from_name(row[2])) for row in info)
        key = tuple(row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        return TableSpec(name, columns, key)

    def _type_name(self, type_: SqlType) -> str:
        return type_name(type_)

    def _using(self, column: str, before: SqlType, after: SqlType) -> str | None:
        """Booleans widened to text read true / false, binary its base64 text, as new values
        are written."""
        name = sql.quote(column)
        if after is ColumnType.VARCHAR and before is ColumnType.BOOLEAN:
            return f"CASE WHEN {name} THEN 'true' WHEN NOT {name} THEN 'false' END"
        if after is ColumnType.VARCHAR and before is ColumnType.BLOB:
            return f"{_BASE64}({name})"
        return None

    def _alter(self, cur: sqlite3.Connection, change: SchemaDiff) -> None:
        if not change.widen:
            super()._alter(cur, change)
            return
        # SQLite cannot change a column's declared type: rebuild the table in place (with the
        # columns it has beyond the wanted ones, at the end).
        current = self._introspect(cur, change.wanted.name)
        assert current is not None
        extra = [c for c in current.columns if change.wanted.column(c.name) is None]
        spec = replace(change.wanted, columns=change.wanted.columns + tuple(extra))
        table, scratch = sql.quote(spec.name), sql.quote(f"_rebuild_{spec.name}")
        cur.execute(sql.create_table_sql(spec, type_name).replace(table, scratch, 1))
        added = {c.name for c in change.add}
        widened = {w.column: w for w in change.widen}
        kept = [c.name for c in spec.columns if c.name not in added]
        values = [
            (self._using(name, w.before, w.after) if (w := widened.get(name)) else None)
            or sql.quote(name)
            for name in kept
        ]
        cur.execute(
            f"INSERT INTO {scratch} ({', '.join(map(sql.quote, kept))}) "
            f"SELECT {', '.join(values)} FROM {table}"
        )
        cur.execute(f"DROP TABLE {table}")
        cur.execute(f"ALTER TABLE {scratch} RENAME TO {table}")

    def _write(
        self, cur: sqlite3.Connection, spec: TableSpec, rows: pa.Table, bootstrap: bool
    ) -> None:
        table = sql.quote(spec.name)
        names = spec.column_names
        if not bootstrap:
            keys = zip(*(rows.column(k).to_pylist() for k in spec.key), strict=True)
            where = " AND ".join(f"{sql.quote(k)} = ?" for k in spec.key)
            cur.executemany(f"DELETE FROM {table} WHERE {where}", keys)
        upserts = rows.filter(pc.equal(rows.column(OP_COLUMN), int(Op.UPSERT)))
        if upserts.num_rows:
            placeholders = ", ".join("?" for _ in names)
            values = zip(*(_bindable(upserts.column(n)).to_pylist() for n in names), strict=True)
            cur.executemany(
                f"INSERT INTO {table} ({', '.join(map(sql.quote, names))}) VALUES ({placeholders})",
                values,
            )

    def _release(self) -> None:
        with self._write_lock:
            self._writer.close()
        if self._temporary:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def snapshot(self, dest: Path) -> None:
        """SQLite's online backup of the whole database, under the writer's lock."""
        if self._temporary:
            raise ValueError("snapshots need a file accelerator (mode: file)")
        target = sqlite3.connect(dest)
        try:
            with self._write_lock:
                self._writer.backup(target)
        finally:
            target.close()

    def query_handle(self) -> SQLiteQueryHandle:
        types: dict[str, SqlType] = {}
        clashes: set[str] = set()
        for spec in self._specs.values():
            for column in spec.columns:
                if types.setdefault(column.name, column.type) != column.type:
                    clashes.add(column.name)
        return SQLiteQueryHandle(self.path, {n: t for n, t in types.items() if n not in clashes})
