"""PostgreSQL accelerator: an attached server holding mirrored tables and their checkpoints.

Every batch is one transaction: the Arrow rows go in by binary COPY (encoded in bulk by pgpq),
into a temporary staging table from which one ``DELETE … USING`` removes the deleted keys and
one ``INSERT … ON CONFLICT DO UPDATE`` writes the upserts; column changes and the checkpoint
commit with them. Bootstrap batches, which fill a fresh table, are copied straight into it. A
server that is down or goes away makes :meth:`PostgresAccelerator.apply` raise psycopg's error,
nothing committed; the next call reconnects.

Queries run each on a pooled connection inside ``BEGIN READ ONLY`` with the session's
``default_transaction_read_only`` on, so the server itself refuses writes, and stream their rows
in chunks (never the whole result in memory).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlglot

try:
    import psycopg
    from pgpq import ArrowToPostgresBinaryEncoder
    from pgpq.encoders import StringEncoderBuilder
    from pgpq.schema import Jsonb
    from psycopg.types.string import TextLoader
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the postgres accelerator needs psycopg and pgpq: pip install 'dynamirror[postgres]'"
    ) from e

from sync.accelerators import postgres_reader as pg_reader
from sync.accelerators import sql
from sync.accelerators.base import CHECKPOINT_TABLE
from sync.accelerators.postgres_lease import PostgresLease
from sync.accelerators.postgres_spec import MAX_NAME_BYTES, SPEC
from sync.accelerators.query import QueryError, StopSignal
from sync.accelerators.sqlengine import SqlAccelerator
from sync.changes import OP_COLUMN, ChangeBatch, Checkpoint, Op
from sync.schema import (
    Column,
    ColumnType,
    DecimalType,
    ListType,
    SchemaDiff,
    SqlType,
    TableSpec,
)
from sync.settings import AccelerationSettings

log = logging.getLogger(__name__)

TYPE_NAMES = {
    ColumnType.BIGINT: "bigint",
    ColumnType.DOUBLE: "double precision",
    ColumnType.VARCHAR: "text",
    ColumnType.BOOLEAN: "boolean",
    ColumnType.BLOB: "bytea",
    ColumnType.JSON: "jsonb",
    ColumnType.TIMESTAMP: "timestamptz",
    ColumnType.DATE: "date",
}


def type_name(type_: SqlType) -> str:
    if isinstance(type_, ColumnType):
        return TYPE_NAMES[type_]
    if isinstance(type_, DecimalType):
        return f"numeric({type_.precision},{type_.scale})"
    if isinstance(type_, ListType) and not isinstance(type_.element, ListType):
        return f"{type_name(type_.element)}[]"
    return "jsonb"


ROWS_PER_BATCH = 16 * 1024  # rows per Arrow batch of a query result
ROWS_PER_CHUNK = 4 * 1024  # rows libpq buffers per network read of a query result
IDLE_QUERY_CONNECTIONS = 4  # query connections kept open between queries
CANCEL_TIMEOUT_S = 5.0  # a cancel request the server does not answer gives up
CLIENT_CHECK_INTERVAL = "1s"  # how soon the server notices a query's runtime is gone
LOCK_TIMEOUT = "10s"  # a schema change waiting behind a long query gives up and is retried
STAGE = "_dynamirror_stage"


def positional(sql_text: str) -> str:
    """``sql_text`` with its ``?`` and ``%s`` placeholders numbered ``$1``, ``$2``, ….

    ``?`` is the query handle's documented placeholder and ``%s`` is what sqlglot writes for it
    in the postgres dialect. Placeholders are the server's own (``$n``), so a ``%`` in a
    literal (``LIKE 'a%'``) needs no escaping. Text inside quotes, dollar quotes and comments
    is left alone; so is SQL that already numbers its parameters (``$1``), where a ``?`` is the
    jsonb operator.
    """
    out: list[str] = []
    i, n, count = 0, len(sql_text), 0
    while i < n:
        c = sql_text[i]
        end = i + 1
        if c in "'\"":
            end = _closing_quote(sql_text, i, c)
        elif c == "-" and sql_text.startswith("--", i):
            newline = sql_text.find("\n", i)
            end = n if newline < 0 else newline
        elif c == "/" and sql_text.startswith("/*", i):
            end = _block_comment_end(sql_text, i)
        elif c == "$" and (tag := _dollar_tag(sql_text, i)):
            close = sql_text.find(tag, i + len(tag))
            end = n if close < 0 else close + len(tag)
        elif c == "$" and sql_text[i + 1 : i + 2].isdigit():
            return sql_text
        elif c == "?" or (c == "%" and sql_text.startswith("%s", i)):
            count += 1
            out.append(f"${count}")
            i += 1 if c == "?" else 2
            continue
        out.append(sql_text[i:end])
        i = end
    return "".join(out)


def _closing_quote(text: str, start: int, quote: str) -> int:
    # E'…' strings escape quotes with a backslash; every string doubles them.
    escapes = quote == "'" and start > 0 and text[start - 1] in "eE"
    i = start + 1
    while i < len(text):
        if escapes and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            if text.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    return len(text)


def _block_comment_end(text: str, start: int) -> int:
    depth, i = 0, start
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return len(text)


def _dollar_tag(text: str, start: int) -> str | None:
    """The ``$tag$`` opening a dollar-quoted string at ``start``, if one does."""
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        return None  # part of an identifier such as a$b
    close = text.find("$", start + 1)
    if close < 0:
        return None
    tag = text[start + 1 : close]
    if tag and (tag[0].isdigit() or not all(ch.isalnum() or ch == "_" for ch in tag)):
        return None  # $1 is a parameter, not a quote
    return text[start : close + 1]


# -- query results as Arrow -----------------------------------------------------------------

_OID_ARROW: dict[int, pa.DataType] = {
    16: pa.bool_(),
    17: pa.binary(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    26: pa.int64(),  # oid
    700: pa.float32(),
    701: pa.float64(),
    1082: pa.date32(),
    1083: pa.time64("us"),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    1186: pa.duration("us"),
    # arrays of the types above
    1000: pa.list_(pa.bool_()),
    1001: pa.list_(pa.binary()),
    1005: pa.list_(pa.int16()),
    1007: pa.list_(pa.int32()),
    1016: pa.list_(pa.int64()),
    1021: pa.list_(pa.float32()),
    1022: pa.list_(pa.float64()),
    1009: pa.list_(pa.string()),
    1015: pa.list_(pa.string()),
    3807: pa.list_(pa.string()),  # jsonb[]
    1182: pa.list_(pa.date32()),
    1185: pa.list_(pa.timestamp("us", tz="UTC")),
}
_NUMERIC_ARRAY = 1231
_NUMERIC = 1700
_AS_TEXT = ("json", "jsonb", "uuid")  # loaded as their text, not parsed into Python objects


def arrow_type(oid: int, modifier: int) -> pa.DataType:
    """The Arrow type of a result column from its type OID and modifier (text if not listed).

    ``numeric(p, s)`` is a decimal; unconstrained ``numeric`` (``sum`` of a bigint, ``avg``) is
    float64, as no fixed scale holds every value.
    """
    if oid == _NUMERIC:
        precision, scale = ((modifier - 4) >> 16) & 0xFFFF, (modifier - 4) & 0xFFFF
        if modifier >= 4 and 0 < precision <= 38:
            return pa.decimal128(precision, scale)
        return pa.float64()
    if oid == _NUMERIC_ARRAY:
        return pa.list_(arrow_type(_NUMERIC, modifier))
    return _OID_ARROW.get(oid, pa.string())


Field = tuple[str, int, int]  # name, type OID, type modifier


def _fields(cur: psycopg.Cursor[Any]) -> list[Field]:
    result = cur.pgresult
    assert result is not None
    return [(str(d.name), d.type_code, result.fmod(i)) for i, d in enumerate(cur.description or ())]


def _describe(con: psycopg.Connection[Any], statement: str) -> list[Field]:
    """The result columns of ``statement``, from the server's description of it (not run)."""
    encoding = con.info.encoding
    pgconn = con.pgconn
    for result in (
        pgconn.prepare(b"", statement.encode(encoding)),
        described := pgconn.describe_prepared(b""),
    ):
        if result.status == psycopg.pq.ExecStatus.FATAL_ERROR:
            raise psycopg.DatabaseError((result.error_message or b"").decode(encoding, "replace"))
    return [
        (
            (described.fname(i) or b"").decode(encoding),
            described.ftype(i),
            described.fmod(i),
        )
        for i in range(described.nfields)
    ]


def _to_arrow(values: Sequence[object], type_: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if pa.types.is_floating(type_):  # Decimal values of an unconstrained numeric
            return pa.array([None if v is None else float(v) for v in values], type_)  # type: ignore[arg-type]
        return pa.array([None if v is None else str(v) for v in values], pa.string()).cast(type_)


class PostgresQueryHandle:
    """Each query on its own pooled read-only connection, streamed as Arrow batches.

    Placeholders: ``?`` (the handle's contract) and ``%s`` (what sqlglot writes for ``?`` in
    the postgres dialect) are numbered ``$1``, ``$2``, … and bound by the server; SQL already
    using ``$n`` passes unchanged. Without parameters the SQL is sent as is, so the jsonb
    ``?`` operator works there.
    """

    dialect = SPEC.dialect

    def __init__(self, pool: _QueryPool) -> None:
        self._pool = pool

    def execute(
        self, sql_text: str, params: Sequence[object] = (), stop: StopSignal | None = None
    ) -> pa.RecordBatchReader:
        try:
            con = self._pool.get()
        except psycopg.Error as e:
            raise QueryError(_message(e)) from e
        running = _Running(con)
        if stop is not None:
            stop.on_set(running.cancel)
        statement = positional(sql_text) if params else sql_text
        try:
            if stop is not None and stop.is_set():
                raise QueryError("the query was stopped before it started")
            cur = con.cursor()
            rows = cur.stream(statement, list(params) or None, size=ROWS_PER_CHUNK)
            first = list(itertools.islice(rows, ROWS_PER_BATCH))
            # psycopg describes a streamed result from its first row: without rows, ask.
            fields = _fields(cur) if first else _describe(con, statement)
        except psycopg.Error as e:
            running.release(self._pool, done=False)
            raise QueryError(_message(e)) from e
        except BaseException:
            running.release(self._pool, done=False)
            raise
        schema = pa.schema([pa.field(name, arrow_type(oid, fmod)) for name, oid, fmod in fields])
        if len(first) < ROWS_PER_BATCH:  # the whole result is in: the connection is free now
            running.release(self._pool, done=True)
            return pa.RecordBatchReader.from_batches(
                schema, [_record_batch(first, schema)] if first else []
            )
        batches = self._batches(running, rows, first, schema)
        next(batches)  # into its try block: a reader closed unread still frees the connection
        return pa.RecordBatchReader.from_batches(schema, batches)

    def _batches(
        self,
        running: _Running,
        rows: Iterator[tuple[Any, ...]],
        first: list[tuple[Any, ...]],
        schema: pa.Schema,
    ) -> Iterator[pa.RecordBatch | None]:
        done = False
        try:
            yield None  # consumed by execute
            chunk = first
            while chunk:
                yield _record_batch(chunk, schema)
                chunk = list(itertools.islice(rows, ROWS_PER_BATCH))
            done = True
        except psycopg.Error as e:
            raise QueryError(_message(e)) from e
        finally:
            # A stream abandoned half-way leaves the connection busy: close it, don't pool it.
            running.release(self._pool, done)


class _Running:
    """A pooled connection lent to one query, which a stop may cancel until it is given back:
    a cancel arriving later must not hit the next query on that connection."""

    def __init__(self, con: psycopg.Connection[Any]) -> None:
        self._con: psycopg.Connection[Any] | None = con
        self._lock = threading.Lock()

    def cancel(self) -> None:
        with self._lock:
            if self._con is not None:
                try:
                    self._con.cancel_safe(timeout=CANCEL_TIMEOUT_S)
                except psycopg.Error:
                    pass  # the query ended, or the server is gone: nothing runs any more

    def release(self, pool: _QueryPool, done: bool) -> None:
        """Give the connection back (``done``: its result was read to the end) or close it."""
        with self._lock:
            con, self._con = self._con, None
        if con is None:
            return
        if done:
            pool.put(con)
        else:
            pool.discard(con)


def _record_batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    return pa.record_batch(
        [_to_arrow(c, f.type) for c, f in zip(columns, schema, strict=True)], schema=schema
    )


def _message(error: psycopg.Error) -> str:
    return str(error).strip() or type(error).__name__


class _QueryPool:
    """A few idle read-only connections kept between queries (a connection costs ~3 ms).

    Every query runs in ``BEGIN READ ONLY`` and is rolled back after, so whatever a query set
    in its session (``SET``, ``set_config``) is undone before the connection is reused.
    """

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], idle: int) -> None:
        self._connect = connect
        self._idle: list[psycopg.Connection[Any]] = []
        self._max_idle = idle
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> psycopg.Connection[Any]:
        with self._lock:
            if self._closed:
                raise QueryError("the accelerator is closed")
            while self._idle:
                con = self._idle.pop()
                if not con.closed:
                    return con
        con = self._connect()
        try:
            con.autocommit = False
            con.read_only = True
            con.execute("SET default_transaction_read_only = on")
            # A query whose runtime died (killed, crashed) would otherwise compute on until it
            # has a row to send, which an aggregate may never have.
            con.execute(f"SET client_connection_check_interval = '{CLIENT_CHECK_INTERVAL}'")
            con.commit()
        except BaseException:
            con.close()
            raise
        for name in _AS_TEXT:
            con.adapters.register_loader(name, TextLoader)
        return con

    def put(self, con: psycopg.Connection[Any]) -> None:
        try:
            con.rollback()
        except psycopg.Error:
            con.close()
            return
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle and not con.closed:
                self._idle.append(con)
                return
        con.close()

    @staticmethod
    def discard(con: psycopg.Connection[Any]) -> None:
        con.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for con in idle:
            con.close()


@contextmanager
def _reading(pool: _QueryPool) -> Iterator[psycopg.Cursor[Any]]:
    con = pool.get()
    try:
        with con.cursor() as cur:
            yield cur
    except BaseException:
        pool.discard(con)
        raise
    pool.put(con)


# -- the checkpoint table and the catalog queries -----------------------------------------

_CHECKPOINT_DDL = sqlglot.transpile(sql.CHECKPOINT_DDL, read="duckdb", write="postgres")[0]
_CHECKPOINT_COLUMNS = [
    (column.name, column.args["kind"].sql("postgres"))
    for column in sqlglot.parse_one(_CHECKPOINT_DDL, read="postgres").find_all(
        sqlglot.exp.ColumnDef
    )
]
_COLUMNS = (
    "SELECT column_name, data_type FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
)
_COLUMN_TYPES = (  # format_type: numeric(38,9), text[], timestamp with time zone
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
    "WHERE a.attrelid = to_regclass(quote_ident(current_schema()) || '.' || quote_ident($1)) "
    "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
)
_PRIMARY_KEY = (
    "SELECT a.attname FROM pg_index i "
    "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
    "WHERE i.indisprimary "
    "AND i.indrelid = to_regclass(quote_ident(current_schema()) || '.' || quote_ident($1)) "
    "ORDER BY k.position"
)
_PRIMARY_KEY_NAME = (
    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE i.indisprimary "
    "AND i.indrelid = to_regclass(quote_ident(current_schema()) || '.' || quote_ident($1))"
)


# -- the accelerator ------------------------------------------------------------------------


class PostgresAccelerator(SqlAccelerator[psycopg.Cursor[Any]]):
    """Mirrored tables and their checkpoints in one PostgreSQL database.

    Tables live in the connection's current schema (``public`` unless ``search_path`` says
    otherwise), next to ``_dynamirror_checkpoints``. Each transaction takes a write connection
    of its own, so datasets sharing a database apply their batches in parallel. The data stays
    in the server whatever ``mode`` says: a restart resumes from the stored checkpoint.
    """

    CHECKPOINT_DELETE = positional(sql.CHECKPOINT_DELETE)
    # Columns named: a table upgraded by _ensure_checkpoint_table has its columns in another
    # order.
    CHECKPOINT_INSERT = (
        f"INSERT INTO {CHECKPOINT_TABLE} "
        f"({', '.join(sql.quote(n) for n, _ in _CHECKPOINT_COLUMNS)}) "
        f"VALUES ({', '.join(f'${i}' for i in range(1, len(_CHECKPOINT_COLUMNS) + 1))})"
    )
    CHECKPOINT_SELECT = positional(sql.CHECKPOINT_SELECT)

    def __init__(self, settings: AccelerationSettings) -> None:
        super().__init__(SPEC)
        # No I/O here: a server that is not up yet only fails the calls that need it.
        self._params: dict[str, Any] = dict(settings.connection or {})
        self._configured_reader = dict(settings.reader or {})
        # The role granted SELECT on each table, and what queries connect with; settled by the
        # first write connection (None until then).
        self._reader_role: str | None = None
        self._reader_params: dict[str, Any] | None = None
        self._reader_lock = threading.Lock()
        self._pool = _QueryPool(self._connect_reader, IDLE_QUERY_CONNECTIONS)
        # The sync's own reads (table definitions, row counts) as the writer.
        self._internal = _QueryPool(self._connect_internal, 1)
        self._idle_writers: list[psycopg.Connection[Any]] = []  # kept with _closed, under _lock
        self._granted: set[str] = set()  # tables table_spec made sure the reader may read

    def _connect_internal(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            **{"application_name": "dynamirror-sync", **self._params},
            prepare_threshold=None,
            cursor_factory=psycopg.RawCursor,
        )

    def _connect_reader(self) -> psycopg.Connection[Any]:
        """A query connection, as the reader role (see :mod:`postgres_reader`)."""
        if self._reader_params is None:
            with self._transaction():
                pass  # the first write connection settles the reader role
        assert self._reader_params is not None
        params = {"application_name": "dynamirror-query", **self._reader_params}
        try:
            return psycopg.connect(
                **params, prepare_threshold=None, cursor_factory=psycopg.RawCursor
            )
        except psycopg.OperationalError as e:
            if self._configured_reader or self._reader_params is self._params:
                raise
            # The server's pg_hba.conf may not let the managed role in: fall back, loudly.
            log.warning(
                "PostgreSQL queries run as the writer %r: the reader role %r cannot connect (%s); "
                "allow it in pg_hba.conf, or set pg_reader_user / pg_reader_pass",
                self._params.get("user"),
                self._reader_role,
                _message(e),
            )
            self._reader_params = self._params
            return self._connect_reader()

    def _settle_reader(self, cur: psycopg.Cursor[Any]) -> None:
        """Choose (and create or reset) the role queries run as, once, on a write connection."""
        with self._reader_lock:
            if self._reader_params is not None:
                return
            writer = str(cur.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
            if self._configured_reader:
                role = self._configured_reader["user"]
                params = {**self._params, **self._configured_reader}
            else:
                role = pg_reader.managed_name(writer)
                password = pg_reader.derived_password(self._params.get("password"))
                if pg_reader.ensure_managed(cur, role, password):
                    params = {**self._params, "user": role, "password": password}
                else:
                    log.warning(
                        "PostgreSQL queries run as the writer %r: it may not create the reader "
                        "role %r (CREATEROLE); set pg_reader_user / pg_reader_pass to a role "
                        "with no privileges, which the runtime grants SELECT on its tables",
                        writer,
                        role,
                    )
                    role, params = writer, self._params
            if role != writer:
                pg_reader.grant_schema(cur, role)
            if pg_reader.is_superuser(cur, role):
                log.warning(
                    "PostgreSQL queries run as %r, a SUPERUSER: a query could reach past the "
                    "mirrored tables if the statement check let it; use a reader role with no "
                    "privileges (pg_reader_user / pg_reader_pass)",
                    role,
                )
            self._reader_role = None if role == writer else role
            self._reader_params = params

    def _grant(self, cur: psycopg.Cursor[Any], table: str) -> None:
        if self._reader_role is not None:
            pg_reader.grant_table(cur, self._reader_role, table)

    def _connect_writer(self) -> psycopg.Connection[Any]:
        con = psycopg.connect(
            **{"application_name": "dynamirror-sync", **self._params},
            autocommit=True,
            prepare_threshold=None,
            cursor_factory=psycopg.RawCursor,
        )
        try:
            con.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            # A commit need not wait for its WAL flush: a server crash can only lose the last
            # few batches together with their checkpoint, and the stream replays them.
            con.execute("SET synchronous_commit = off")
            with con.transaction(), con.cursor() as cur:
                _ensure_checkpoint_table(cur)
            with con.transaction(), con.cursor() as cur:
                self._settle_reader(cur)
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        """BEGIN … COMMIT on a write connection; ROLLBACK on any exception.

        A connection the server dropped is closed and a new one opened by the next call.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("the postgres accelerator is closed")
            con = self._idle_writers.pop() if self._idle_writers else None
        if con is None or con.closed:
            con = self._connect_writer()
        try:
            with con.transaction(), con.cursor() as cur:
                yield cur
        finally:
            with self._lock:
                idle = con.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                if not self._closed and not con.closed and idle:
                    self._idle_writers.append(con)
                    con = None
            if con is not None:
                con.close()

    def _reading(self) -> AbstractContextManager[psycopg.Cursor[Any]]:
        return _reading(self._internal)

    def _introspect(self, cur: psycopg.Cursor[Any], name: str) -> TableSpec | None:
        columns = cur.execute(_COLUMN_TYPES, [name]).fetchall()
        if not columns:
            return None
        key = tuple(row[0] for row in cur.execute(_PRIMARY_KEY, [name]).fetchall())
        return TableSpec(name, tuple(Column(n, sql.type_from_name(t)) for n, t in columns), key)

    def _type_name(self, type_: SqlType) -> str:
        return type_name(type_)

    def _using(self, column: str, before: SqlType, after: SqlType) -> str:
        """Arrays to JSON, binary to its base64 text (as new values of the widened column are
        written); other values by their cast."""
        name = sql.quote(column)
        if after is ColumnType.JSON and isinstance(before, ListType):
            return f"to_jsonb({name})"
        if after is ColumnType.VARCHAR:
            if isinstance(before, ListType):
                return f"to_jsonb({name})::text"
            if before is ColumnType.BLOB:
                return f"translate(encode({name}, 'base64'), E'\\n', '')"
        return f"{name}::{type_name(after)}"

    def _created(self, cur: psycopg.Cursor[Any], spec: TableSpec) -> None:
        self._grant(cur, spec.name)

    def _alter(self, cur: psycopg.Cursor[Any], change: SchemaDiff) -> None:
        changes = [f"ADD COLUMN {sql.quote(c.name)} {type_name(c.type)}" for c in change.add] + [
            f"ALTER COLUMN {sql.quote(w.column)} TYPE {type_name(w.after)} "
            f"USING {self._using(w.column, w.before, w.after)}"
            for w in change.widen
        ]
        # One statement: a type change rewrites the table once, not once per column.
        cur.execute(f"ALTER TABLE {sql.quote(change.wanted.name)} {', '.join(changes)}")

    def _replace(self, cur: psycopg.Cursor[Any], staging: str, name: str) -> None:
        # Wait for queries still reading the old table however long they take: giving up would
        # throw the whole load away.
        cur.execute("SET LOCAL lock_timeout = 0")
        super()._replace(cur, staging, name)
        # The key's index keeps the staging name; give it the table's so that the next load can
        # create its staging table again.
        index = cur.execute(_PRIMARY_KEY_NAME, [name]).fetchone()
        if index is not None:
            pkey = sql.quote(f"{name}_pkey"[:MAX_NAME_BYTES])
            cur.execute(f"ALTER INDEX {sql.quote(index[0])} RENAME TO {pkey}")

    def _rows(self, spec: TableSpec, batch: ChangeBatch) -> pa.Table:
        return _conform(super()._rows(spec, batch), spec)

    def _write(
        self, cur: psycopg.Cursor[Any], spec: TableSpec, rows: pa.Table, bootstrap: bool
    ) -> None:
        if bootstrap:
            # A bootstrap batch fills a fresh table: straight in, no staging, no conflicts.
            upserts = rows.filter(pc.equal(rows.column(OP_COLUMN), int(Op.UPSERT)))
            _copy_into(cur, sql.quote(spec.name), upserts.drop_columns([OP_COLUMN]), spec)
        else:
            _merge(cur, spec, rows)

    def _release(self) -> None:
        """Close every connection; one in use by a transaction closes when it ends."""
        with self._lock:
            idle, self._idle_writers = self._idle_writers, []
        self._pool.close()
        self._internal.close()
        for con in idle:
            con.close()

    def table_spec(self, name: str) -> TableSpec | None:
        spec = super().table_spec(name)
        if spec is not None and name not in self._granted:
            # A table of an older version, or whose grant was lost (the first write connection
            # settles the reader role). Once: a follower asks every poll.
            with self._transaction() as cur:
                self._grant(cur, name)
            self._granted.add(name)
        return spec

    def load_checkpoint(self, dataset: str) -> Checkpoint | None:
        # On a write connection: opening one creates (or upgrades) the checkpoint table.
        with self._transaction() as cur:
            return self._read_checkpoint(cur, dataset)

    def query_handle(self) -> PostgresQueryHandle:
        return PostgresQueryHandle(self._pool)

    def lease(self, dataset: str, tables: Sequence[str], timeout_s: float) -> PostgresLease:
        """Several runtimes may mirror into one database: ``dataset``'s lease, in it, fencing
        every write to ``tables`` (see :mod:`sync.accelerators.postgres_lease`)."""
        lease = PostgresLease(partial(self._connect_lease, timeout_s), dataset, timeout_s)
        self.fence(tables, lease.fence)
        return lease

    def _connect_lease(self, timeout_s: float) -> psycopg.Connection[Any]:
        # A cut connection fails within a third of the lease's time, not at TCP's pace.
        third = max(1, int(timeout_s / 3))
        return psycopg.connect(
            **{
                "application_name": "dynamirror-lease",
                "connect_timeout": str(third),
                "keepalives": "1",
                "keepalives_idle": "1",
                "keepalives_interval": "1",
                "keepalives_count": str(third),
                "tcp_user_timeout": str(third * 1000),
                **self._params,
            },
            autocommit=True,
            prepare_threshold=None,
            cursor_factory=psycopg.RawCursor,
        )


def _ensure_checkpoint_table(cur: psycopg.Cursor[Any]) -> None:
    """Create the checkpoint table, or add the columns a newer version of it has."""
    # Serialise CREATE … IF NOT EXISTS across processes: it races on the catalog.
    cur.execute("SELECT pg_advisory_xact_lock(hashtext($1))", [CHECKPOINT_TABLE])
    cur.execute(_CHECKPOINT_DDL)
    present = {row[0] for row in cur.execute(_COLUMNS, [CHECKPOINT_TABLE]).fetchall()}
    missing = [c for c in _CHECKPOINT_COLUMNS if c[0] not in present]
    if missing:  # nullable: rows written before the column existed have no value for it
        added = ", ".join(f"ADD COLUMN {sql.quote(name)} {type_}" for name, type_ in missing)
        cur.execute(f"ALTER TABLE {CHECKPOINT_TABLE} {added}")


def _conform(rows: pa.Table, spec: TableSpec) -> pa.Table:
    """``rows`` as ``_op`` then the spec's columns, in their Arrow types: binary COPY is typed."""
    types = [pa.int8(), *(c.type.arrow for c in spec.columns)]
    rows = rows.select([OP_COLUMN, *spec.column_names])
    if rows.schema.types == types:
        return rows
    return rows.cast(
        pa.schema([pa.field(n, t) for n, t in zip(rows.column_names, types, strict=True)])
    )


def _encoder(schema: pa.Schema, spec: TableSpec) -> ArrowToPostgresBinaryEncoder:
    """COPY's binary encoder; JSON columns go out as jsonb, the rest as pgpq infers them."""
    builders = {
        field.name: (
            StringEncoderBuilder.new_with_output(field, Jsonb())
            if (column := spec.column(field.name)) and column.type is ColumnType.JSON
            else ArrowToPostgresBinaryEncoder.infer_encoder(field)
        )
        for field in schema
    }
    return ArrowToPostgresBinaryEncoder.new_with_encoders(schema, builders)


def _copy_into(cur: psycopg.Cursor[Any], table: str, rows: pa.Table, spec: TableSpec) -> None:
    if not rows.num_rows:
        return
    encoder = _encoder(rows.schema, spec)
    columns = ", ".join(sql.quote(n) for n in rows.column_names)
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT binary)") as copy:
        copy.write(encoder.write_header())
        for batch in rows.to_batches():
            copy.write(encoder.write_batch(batch))
        copy.write(encoder.finish())


def _merge(cur: psycopg.Cursor[Any], spec: TableSpec, rows: pa.Table) -> None:
    """Stage the batch (one row per key), delete the deleted keys, upsert the rest."""
    table = sql.quote(spec.name)
    stage_columns = ", ".join(f"{sql.quote(c.name)} {type_name(c.type)}" for c in spec.columns)
    cur.execute(f"CREATE TEMP TABLE {STAGE} (_op smallint, {stage_columns}) ON COMMIT DROP")
    _copy_into(cur, STAGE, rows, spec)
    ops = rows.column(OP_COLUMN)
    if pc.any(pc.equal(ops, int(Op.DELETE))).as_py():
        cur.execute(
            f"DELETE FROM {table} USING {STAGE} "
            f"WHERE {sql.key_match(spec.key, table, STAGE)} AND {STAGE}._op = {int(Op.DELETE)}"
        )
    if pc.any(pc.equal(ops, int(Op.UPSERT))).as_py():
        columns = ", ".join(sql.quote(c) for c in spec.column_names)
        key = ", ".join(sql.quote(k) for k in spec.key)
        values = [sql.quote(c) for c in spec.column_names if c not in spec.key]
        action = (
            f"DO UPDATE SET {', '.join(f'{v} = EXCLUDED.{v}' for v in values)}"
            if values
            else "DO NOTHING"
        )
        cur.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {STAGE} "
            f"WHERE _op = {int(Op.UPSERT)} ON CONFLICT ({key}) {action}"
        )
