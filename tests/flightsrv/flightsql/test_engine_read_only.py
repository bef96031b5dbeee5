"""The query handles the server is given refuse writes themselves, whatever the SQL check lets
through: a second, engine-level guard (SQLite ``PRAGMA query_only``; DuckDB read-only
transactions)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from sync.accelerators.duckdb import DuckDBAccelerator
from sync.accelerators.query import QueryError, QueryHandle
from sync.accelerators.sqlite import SQLiteQueryHandle
from sync.schema import ColumnType
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


def _sqlite(tmp_path: Path) -> Iterator[QueryHandle]:
    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE t (id BIGINT)")
        con.executemany("INSERT INTO t VALUES (?)", [(0,), (1,), (2,)])
    con.close()
    yield SQLiteQueryHandle(path, {"id": ColumnType.BIGINT})


_ENGINES = {"duckdb": _duckdb, "sqlite": _sqlite}


@pytest.fixture
def handle(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueryHandle]:
    yield from _ENGINES[request.param](tmp_path)


def _count(handle: QueryHandle) -> int:
    return int(handle.execute("SELECT count(*) AS n FROM t").read_all().column(0)[0].as_py())


@pytest.mark.parametrize("sql", WRITES)
@pytest.mark.parametrize(
    "handle",
    ["duckdb", "sqlite"],
    indirect=True,
)
def test_writes_through_the_query_handle_are_refused(handle: QueryHandle, sql: str) -> None:
    try:
        handle.execute(sql).read_all()
    except QueryError as e:
        assert "read" in str(e).lower()  # DuckDB: read-only mode; SQLite: readonly database
    else:
        raise AssertionError(f"the engine ran {sql!r}")
    assert _count(handle) == 3


@pytest.mark.parametrize("handle", ["duckdb", "sqlite"], indirect=True)
def test_reads_and_concurrent_reads_still_work(handle: QueryHandle) -> None:
    first = handle.execute("SELECT id FROM t ORDER BY id")
    assert _count(handle) == 3  # a second query while the first one's reader is open
    assert first.read_all().column(0).to_pylist() == [0, 1, 2]
