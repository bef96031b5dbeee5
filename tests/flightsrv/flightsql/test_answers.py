"""Engines that type results by their values (SQLite) run a statement to tell its schema:
GetFlightInfo keeps that small result for its own ticket's DoGet, so the statement runs once.

Served over a real SQLite file through the project's SQLite query handle, read by the real
Flight client; the handle is wrapped only to note what it is asked to run.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql_dbapi
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flightsrv.flightsql import FlightSqlServer, queries
from flightsrv.flightsql.catalog import TableInfo
from flightsrv.flightsql.server import _pack, _unpack
from flightsrv.flightsql.statements import Statement
from flightsrv.proto import FlightActions_pb2 as fa
from flightsrv.proto import FlightSql_pb2 as pb
from sync.accelerators.sqlite import SQLiteQueryHandle
from sync.schema import ColumnType
from tests.flightsrv.flightsql.engines import EngineCatalog, RecordingHandle
from tests.flightsrv.flightsql.test_protocol import _action, _query

SCHEMA = pa.schema([("id", pa.int64()), ("kind", pa.string())])
ROWS = 3_000
TOTAL = "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind"
GROUPED = "GROUP BY"  # in TOTAL as the engine is given it


@dataclass
class Served:
    server: FlightSqlServer
    handle: RecordingHandle
    path: Path

    def client(self) -> flight.FlightClient:
        return flight.FlightClient(f"grpc://127.0.0.1:{self.server.port}")

    def write(self, sql: str) -> None:
        with sqlite3.connect(self.path) as con:
            con.execute(sql)

    def runs(self, fragment: str) -> int:
        """Statements the engine was asked to run that contain ``fragment``."""
        return sum(fragment in text for text in self.handle.executed)


def _serve(tmp_path: Path, max_batch_bytes: int) -> Iterator[Served]:
    path = tmp_path / "events.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("CREATE TABLE events (id BIGINT PRIMARY KEY, kind VARCHAR)")
        con.executemany("INSERT INTO events VALUES (?, ?)", [(i, f"k{i % 3}") for i in range(ROWS)])
    handle = RecordingHandle(
        SQLiteQueryHandle(path, {"id": ColumnType.BIGINT, "kind": ColumnType.VARCHAR})
    )
    catalog = EngineCatalog(scratch=handle)
    catalog.add(TableInfo("events", SCHEMA, ("id",), "sqlite"), handle)
    server = FlightSqlServer("grpc://127.0.0.1:0", catalog, max_batch_bytes=max_batch_bytes)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield Served(server, handle, path)
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    yield from _serve(tmp_path, 4 << 20)


def _rows(client: flight.FlightClient, info: flight.FlightInfo) -> list[dict[str, object]]:
    return client.do_get(info.endpoints[0].ticket).read_all().to_pylist()


def test_a_ticket_streams_the_result_its_flight_info_computed(served: Served) -> None:
    client = served.client()
    info = client.get_flight_info(_query(TOTAL))
    served.write("DELETE FROM events WHERE kind = 'k0'")  # after GetFlightInfo, before DoGet
    assert _rows(client, info) == [
        {"kind": "k0", "n": 1000},
        {"kind": "k1", "n": 1000},
        {"kind": "k2", "n": 1000},
    ]
    assert served.runs(GROUPED) == 1
    # Kept for one DoGet: the ticket redeemed again runs the statement, on today's data.
    assert _rows(client, info) == [{"kind": "k1", "n": 1000}, {"kind": "k2", "n": 1000}]
    assert served.runs(GROUPED) == 2


def test_each_flight_info_gets_its_own_result(served: Served) -> None:
    client = served.client()
    first = client.get_flight_info(_query(TOTAL))
    served.write("UPDATE events SET kind = 'k1' WHERE kind = 'k2'")
    second = client.get_flight_info(_query(TOTAL))
    assert _rows(client, second) == [{"kind": "k0", "n": 1000}, {"kind": "k1", "n": 2000}]
    assert _rows(client, first) == [
        {"kind": "k0", "n": 1000},
        {"kind": "k1", "n": 1000},
        {"kind": "k2", "n": 1000},
    ]
    assert served.runs(GROUPED) == 2


def test_a_kept_result_goes_stale_and_runs_again(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "ANSWER_MAX_AGE_S", 0.0)
    client = served.client()
    info = client.get_flight_info(_query(TOTAL))
    served.write("DELETE FROM events WHERE kind <> 'k2'")
    assert _rows(client, info) == [{"kind": "k2", "n": 1000}]
    assert served.runs(GROUPED) == 2


def test_a_cancelled_flight_info_serves_nothing_it_kept(served: Served) -> None:
    client = served.client()
    info = client.get_flight_info(_query(TOTAL))
    body = fa.CancelFlightInfoRequest(info=info.serialize()).SerializeToString()
    _action(client, "CancelFlightInfo", body)
    with pytest.raises(flight.FlightCancelledError, match="cancelled"):
        _rows(client, info)


def test_a_forged_ticket_with_a_kept_id_runs_its_own_statement(served: Served) -> None:
    client = served.client()
    info = client.get_flight_info(_query(TOTAL))
    kept = Statement.decode(_unpack(info.endpoints[0].ticket.ticket).statement_handle)
    other = "SELECT kind, count(*) AS n FROM events WHERE id < 3 GROUP BY kind ORDER BY kind"
    forged = Statement(other, None, kept.schema, kept.query_id).encode()
    ticket = pb.TicketStatementQuery(statement_handle=forged)
    rows = client.do_get(flight.Ticket(_pack(ticket))).read_all().to_pylist()
    assert rows == [{"kind": "k0", "n": 1}, {"kind": "k1", "n": 1}, {"kind": "k2", "n": 1}]


def test_a_result_over_the_batch_size_is_not_kept(tmp_path: Path) -> None:
    for served in _serve(tmp_path, 8 * 1024):
        client = served.client()
        info = client.get_flight_info(_query("SELECT id, kind FROM events ORDER BY id"))
        assert len(client.do_get(info.endpoints[0].ticket).read_all()) == ROWS
        assert served.runs("ORDER BY id") == 2


def test_prepared_lookups_run_once_per_execution(served: Served) -> None:
    sql = "SELECT id, kind FROM events WHERE id = ?"
    uri = f"grpc://127.0.0.1:{served.server.port}"
    with flightsql_dbapi.connect(uri) as conn, conn.cursor() as cur:
        for key in (1, 2, 3, 4):
            cur.execute(sql, (key,))
            assert cur.fetchall() == [(key, f"k{key % 3}")]
    ran = [text for text in served.handle.executed if "WHERE" in text]
    assert len(ran) == 1 + 4  # the probe at prepare, then one run per execution
