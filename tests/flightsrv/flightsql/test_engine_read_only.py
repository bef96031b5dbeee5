"""The query handles the server is given refuse writes and reaching past the mirror themselves,
whatever the SQL check lets through: a second, engine-level guard (SQLite ``PRAGMA query_only``
and an authorizer; DuckDB read-only transactions with external access off and its configuration
locked; PostgreSQL a reader role that may only SELECT the mirrored tables)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from sync.accelerators.duckdb import DuckDBAccelerator
from sync.accelerators.query import QueryError, QueryHandle
from sync.accelerators.sqlite import SQLiteQueryHandle
from sync.changes import OP_COLUMN, ChangeBatch, Op
from sync.schema import Column, ColumnType, TableSpec
from sync.settings import AccelerationSettings

WRITES = [
    "INSERT INTO t VALUES (99)",
    "UPDATE t SET id = id + 100",
    "DELETE FROM t",
    "CREATE TABLE stolen AS SELECT * FROM t",
    "DROP TABLE t",
]


def _duckdb(tmp_path: Path) -> Iterator[QueryHandle]:
    accelerator = DuckDBAccelerator(AccelerationSettings("duckdb", "memory"))
    with accelerator.cursor() as cur:
        cur.execute("CREATE TABLE t AS SELECT range AS id FROM range(3)")
    try:
        yield accelerator.query_handle()
    finally:
        accelerator.close()


def _postgres(tmp_path: Path) -> Iterator[QueryHandle]:
    from sync.accelerators.postgres import PostgresAccelerator
    from tests.harness import postgres_schema

    with postgres_schema() as connection:
        accelerator = PostgresAccelerator(
            AccelerationSettings("postgres", "file", None, connection)
        )
        accelerator.create_table(TableSpec("t", (Column("id", ColumnType.BIGINT),), ("id",)))
        accelerator.apply("t", accelerator.table_spec("t"), _three_rows())  # type: ignore[arg-type]
        try:
            yield accelerator.query_handle()
        finally:
            accelerator.close()


def _three_rows() -> ChangeBatch:
    ops = pa.array([Op.UPSERT.value] * 3, pa.int8())
    return ChangeBatch(pa.table({OP_COLUMN: ops, "id": pa.array([0, 1, 2], pa.int64())}), None)


def _sqlite(tmp_path: Path) -> Iterator[QueryHandle]:
    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE t (id BIGINT)")
        con.executemany("INSERT INTO t VALUES (?)", [(0,), (1,), (2,)])
    con.close()
    yield SQLiteQueryHandle(path, {"id": ColumnType.BIGINT})


_ENGINES = {"duckdb": _duckdb, "sqlite": _sqlite, "postgres": _postgres}
# How each engine words its refusal of a write.
_REFUSED = {"duckdb": "read-only", "sqlite": "not authorized", "postgres": "read-only"}
# Statements that would reach past the mirrored tables: files, the environment, settings,
# extensions, process memory, other roles' data, internal tables.
ESCAPES = {
    "duckdb": [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT getenv('HOME')",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "ATTACH '/tmp/dynamirror-escape.duckdb' AS escape",
        "COPY t TO '/tmp/dynamirror-escape.csv'",
    ],
    "sqlite": [
        "SELECT fts3_tokenizer('simple') FROM t LIMIT 1",
        "SELECT load_extension('/tmp/x')",
        "SELECT randomblob(1000000000)",
        "SELECT * FROM sqlite_master",
        "SELECT * FROM _dynamirror_checkpoints",
        "PRAGMA writable_schema = ON",
        "ATTACH '/tmp/dynamirror-escape.sqlite' AS escape",
    ],
    "postgres": [
        "SELECT pg_read_file('/etc/passwd') FROM t LIMIT 1",
        "SELECT pg_read_binary_file('/etc/hostname')",
        "SELECT pg_ls_dir('.')",
        "SELECT pg_stat_file('PG_VERSION')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT set_config('role', 'postgres', false)",
        "SELECT current_setting('data_directory')",
        "SELECT query_to_xml('select usename, passwd from pg_shadow', true, false, '')",
        "SELECT * FROM _dynamirror_checkpoints",
        "COPY t TO PROGRAM 'id'",
    ],
}


@pytest.fixture
def handle(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueryHandle]:
    yield from _ENGINES[request.param](tmp_path)


def _count(handle: QueryHandle) -> int:
    return int(handle.execute("SELECT count(*) AS n FROM t").read_all().column(0)[0].as_py())


@pytest.mark.parametrize("sql", WRITES)
@pytest.mark.parametrize("handle", list(_ENGINES), indirect=True)
def test_writes_through_the_query_handle_are_refused(
    handle: QueryHandle, request: pytest.FixtureRequest, sql: str
) -> None:
    with pytest.raises(QueryError) as refused:
        handle.execute(sql).read_all()
    engine = request.node.callspec.params["handle"]
    assert _REFUSED[engine] in str(refused.value).lower()
    assert _count(handle) == 3


@pytest.mark.parametrize(
    ("handle", "sql"),
    [(engine, sql) for engine, statements in ESCAPES.items() for sql in statements],
    indirect=["handle"],
)
def test_the_engine_itself_refuses_to_reach_past_the_mirror(handle: QueryHandle, sql: str) -> None:
    with pytest.raises(QueryError):
        handle.execute(sql).read_all()
    assert _count(handle) == 3


@pytest.mark.parametrize("handle", ["postgres"], indirect=True)
def test_postgres_queries_run_as_a_reader_role_without_privileges(handle: QueryHandle) -> None:
    who = handle.execute(
        "SELECT current_user AS name, r.rolsuper, r.rolcreaterole, r.rolcreatedb "
        "FROM pg_roles r WHERE r.rolname = current_user"
    ).read_all()
    name, superuser, createrole, createdb = (c[0].as_py() for c in who.columns)
    assert name.endswith("_dynamirror_reader")
    assert (superuser, createrole, createdb) == (False, False, False)
    assert _count(handle) == 3  # and it may read the mirrored table


@pytest.mark.parametrize("handle", list(_ENGINES), indirect=True)
def test_reads_and_concurrent_reads_still_work(handle: QueryHandle) -> None:
    first = handle.execute("SELECT id FROM t ORDER BY id")
    assert _count(handle) == 3  # a second query while the first one's reader is open
    assert first.read_all().column(0).to_pylist() == [0, 1, 2]


def test_a_superuser_reader_gets_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    from sync.accelerators.postgres import PostgresAccelerator
    from tests.harness import postgres_schema

    with postgres_schema() as connection:
        reader = {"user": connection.get("user") or "postgres"}  # the test server's superuser
        settings = AccelerationSettings("postgres", "file", None, connection, reader)
        with PostgresAccelerator(settings) as accelerator, caplog.at_level("WARNING"):
            accelerator.create_table(TableSpec("t", (Column("id", ColumnType.BIGINT),), ("id",)))
    assert any("SUPERUSER" in r.getMessage() for r in caplog.records)
