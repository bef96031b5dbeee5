"""Errors as the ADBC client reports them; writes refused with the data left untouched."""

from __future__ import annotations

from pathlib import Path

import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from adbc_driver_manager import AdbcStatusCode
from google.protobuf import any_pb2

import flightsrv
from flightsrv.proto import FlightSql_pb2 as pb
from tests.flightsrv.flightsql.engines import NOT_READY_REASON, Env

SOURCE_TREE = str(Path(flightsrv.__file__).resolve().parents[1])


def assert_one_clean_line(message: str) -> None:
    """A message a client got: no traceback, no file of the server, no second line (the ADBC
    driver itself adds a trailing newline-free suffix)."""
    assert "Traceback" not in message
    assert 'File "' not in message
    assert SOURCE_TREE not in message and "site-packages" not in message
    assert "\n" not in message.strip()


def _query_error(
    conn, sql: str, params: tuple[object, ...] | None = None
) -> adbc_driver_manager.Error:
    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
        cur.execute(sql, params)
        cur.fetchall()
    assert_one_clean_line(str(caught.value))
    return caught.value


def _count_orders(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        return cur.fetchone()[0]


def test_engine_error_carries_the_engine_message(conn) -> None:
    # Flight has no INVALID_ARGUMENT a Python server can send without its traceback: UNKNOWN.
    error = _query_error(conn, "SELECT no_such_column FROM orders")
    assert error.status_code == AdbcStatusCode.UNKNOWN
    assert "no_such_column" in str(error)
    assert "Binder Error" in str(error)  # DuckDB's own wording


def test_syntax_error_carries_the_parser_message(conn) -> None:
    error = _query_error(conn, "SELECT FROM WHERE")
    assert error.status_code == AdbcStatusCode.UNKNOWN
    assert "Expected table name" in str(error)


def test_unknown_table_is_refused(conn) -> None:
    error = _query_error(conn, "SELECT * FROM no_such_table")
    assert isinstance(error, adbc_driver_manager.ProgrammingError)
    assert error.status_code == AdbcStatusCode.UNAUTHORIZED  # not served: outside the allow-list
    assert "no_such_table" in str(error)
    error = _query_error(conn, "SELECT * FROM information_schema.tables")
    assert error.status_code == AdbcStatusCode.UNAUTHORIZED
    assert "information_schema.tables" in str(error)


def test_files_and_system_tables_are_unreachable(conn) -> None:
    # A name that is no served table never reaches DuckDB's file-reading replacement scans.
    error = _query_error(conn, "SELECT * FROM '/etc/passwd'")
    assert error.status_code == AdbcStatusCode.UNAUTHORIZED
    for sql in ("SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM duckdb_tables()"):
        assert _query_error(conn, sql).status_code == AdbcStatusCode.UNAUTHORIZED
    assert _query_error(conn, "SELECT getenv('HOME')").status_code == AdbcStatusCode.UNAUTHORIZED


def test_not_ready_dataset_reports_why(conn) -> None:
    error = _query_error(conn, "SELECT * FROM pending")
    assert isinstance(error, adbc_driver_manager.OperationalError)
    assert error.status_code == AdbcStatusCode.IO  # gRPC UNAVAILABLE
    assert NOT_READY_REASON in str(error)


def test_cross_engine_query_names_the_engines(conn) -> None:
    error = _query_error(conn, "SELECT * FROM orders JOIN events USING (id)")
    assert error.status_code == AdbcStatusCode.UNKNOWN
    assert "duckdb" in str(error) and "sqlite" in str(error)


def test_wrong_parameter_count(conn) -> None:
    error = _query_error(conn, "SELECT * FROM orders WHERE id = ? AND customer = ?", (1,))
    assert error.status_code == AdbcStatusCode.UNKNOWN
    assert "2 parameter(s)" in str(error)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO orders (id) VALUES (99)",
        "UPDATE orders SET amount = 0",
        "DELETE FROM orders",
        "DROP TABLE orders",
        "CREATE TABLE stolen AS SELECT * FROM orders",
        "ALTER TABLE orders ADD COLUMN x INTEGER",
        "TRUNCATE orders",
        "ATTACH 'other.db'",
        "COPY orders TO 'out.csv'",
        "PRAGMA enable_profiling",
        "SET threads = 1",
        "CHECKPOINT",
        "SELECT 1; DELETE FROM orders",
        "EXPLAIN ANALYZE DELETE FROM orders",
        "INSTALL httpfs",
    ],
)
def test_writes_are_refused_and_data_unchanged(conn, sql: str) -> None:
    before = _count_orders(conn)
    error = _query_error(conn, sql)
    assert isinstance(error, adbc_driver_manager.ProgrammingError)
    assert error.status_code == AdbcStatusCode.UNAUTHORIZED  # gRPC PERMISSION_DENIED
    assert "read-only" in str(error) or "one statement" in str(error)
    assert _count_orders(conn) == before == 5


def test_executemany_update_is_refused(conn) -> None:
    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
        cur.executemany("UPDATE orders SET amount = ? WHERE id = ?", [(1.0, 1), (2.0, 2)])
    assert caught.value.status_code == AdbcStatusCode.UNAUTHORIZED
    assert _count_orders(conn) == 5


def test_bulk_ingest_is_refused(conn) -> None:
    data = pa.table({"id": [100], "customer": ["eve"]})
    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
        cur.adbc_ingest("orders", data, mode="append")
    assert caught.value.status_code == AdbcStatusCode.UNAUTHORIZED
    assert _count_orders(conn) == 5


def _descriptor(message: object) -> flight.FlightDescriptor:
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return flight.FlightDescriptor.for_command(wrapper.SerializeToString())


def test_update_commands_are_permission_denied(env: Env) -> None:
    client = env.flight_client()
    table = pa.table({"id": [1]})
    for command in (
        pb.CommandStatementUpdate(query="DELETE FROM orders"),
        pb.CommandStatementIngest(table="orders"),
    ):
        with pytest.raises(flight.FlightUnauthorizedError, match="read-only"):
            writer, reader = client.do_put(_descriptor(command), table.schema)
            writer.write_table(table)
            writer.close()
    with pytest.raises(flight.FlightUnauthorizedError, match="read-only"):
        writer, reader = client.do_put(flight.FlightDescriptor.for_path("orders"), table.schema)
        writer.write_table(table)
        writer.close()


def test_unsupported_actions_are_unimplemented(env: Env) -> None:
    client = env.flight_client()
    with pytest.raises(flight.FlightServerError, match="not supported") as caught:
        list(client.do_action(flight.Action("BeginSavepoint", b"")))
    assert_one_clean_line(str(caught.value))
    assert [a.type for a in client.list_actions()] == [
        "CreatePreparedStatement",
        "ClosePreparedStatement",
        "BeginTransaction",
        "EndTransaction",
        "CancelFlightInfo",
        "CancelQuery",
        "GetSessionOptions",
        "SetSessionOptions",
        "CloseSession",
    ]
