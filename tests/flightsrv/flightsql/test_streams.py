"""How results leave the server: from C++ when no batch needs reshaping, cursors released on
every path, schemas reused across executions and renewed when a table gains a column.

The server here runs over a real DuckDB accelerator's own query handle (the shared test
catalog wraps its handle to count batches, which keeps every result on the Python path).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import adbc_driver_flightsql.dbapi as flightsql_dbapi
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flightsrv.flightsql import FlightSqlServer
from flightsrv.flightsql.catalog import TableInfo
from flightsrv.flightsql.metadata import Namespace
from flightsrv.flightsql.queries import Direct, QueryRunner
from flightsrv.flightsql.running import StopFlag
from flightsrv.flightsql.server import CATALOG_NAME, SCHEMA_NAME
from flightsrv.flightsql.statements import Statement
from flightsrv.proto import FlightActions_pb2 as fa
from sync.accelerators.duckdb import DuckDBAccelerator
from sync.settings import AccelerationSettings
from tests.flightsrv.flightsql.engines import EngineCatalog, Env, shutdown_while_reading
from tests.flightsrv.flightsql.test_protocol import _action, _query, _wait, _wire_bytes

NUMS_ROWS = 2_000_000
NUMS = pa.schema([("id", pa.int64()), ("v", pa.float64())])
WORDS = pa.schema([("id", pa.int64()), ("w", pa.string())])
EVOLVING = pa.schema([("id", pa.int64()), ("name", pa.string())])


@dataclass
class Served:
    server: FlightSqlServer
    accelerator: DuckDBAccelerator
    catalog: EngineCatalog

    @property
    def uri(self) -> str:
        return f"grpc://127.0.0.1:{self.server.port}"


def _serve(
    catalog: EngineCatalog, compression: str = "none"
) -> tuple[FlightSqlServer, threading.Thread]:
    server = FlightSqlServer("grpc://127.0.0.1:0", catalog, compression=compression)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def served() -> Iterator[Served]:
    accelerator = DuckDBAccelerator(AccelerationSettings("duckdb", "memory"))
    with accelerator.cursor() as cur:
        for name, value, rows in (
            ("nums", "range * 0.5 AS v", NUMS_ROWS),
            ("words", "'w-' || range AS w", 500_000),
            ("evolving", "'n-' || range AS name", 3),
        ):
            cur.execute(f"CREATE TABLE {name} AS SELECT range AS id, {value} FROM range({rows})")
    handle = accelerator.query_handle()
    catalog = EngineCatalog(scratch=handle)
    for name, schema in (("nums", NUMS), ("words", WORDS), ("evolving", EVOLVING)):
        catalog.add(TableInfo(name, schema, ("id",), "duckdb"), handle)
    server, thread = _serve(catalog)
    try:
        yield Served(server, accelerator, catalog)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        accelerator.close()


def _connections(accelerator: DuckDBAccelerator) -> int:
    """Open DuckDB connections (cursors) of the database, this count's own included."""
    with accelerator.cursor() as cur:
        return int(cur.execute("SELECT * FROM duckdb_connection_count()").fetchall()[0][0])


def _table_memory(accelerator: DuckDBAccelerator) -> int:
    with accelerator.cursor() as cur:
        row = cur.execute(
            "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'"
        ).fetchall()[0]
    return int(row[0] or 0)


def _ticket(uri: str, sql: str) -> flight.Ticket:
    return flight.connect(uri).get_flight_info(_query(sql)).endpoints[0].ticket


def _hold_gil(seconds: float) -> None:
    """Run Python in this thread for ``seconds`` without letting any other thread run Python."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(10 * seconds)
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
    finally:
        sys.setswitchinterval(interval)


# A client in its own process: it reads the first batch, waits for a line on stdin, then
# prints how long the remaining rows took to arrive (not waiting for the end of the call).
_CLIENT = """
import sys, time
import pyarrow.flight as flight
reader = flight.connect(sys.argv[1]).do_get(flight.Ticket(bytes.fromhex(sys.argv[2])))
rows = reader.read_chunk().data.num_rows
print("started", flush=True)
sys.stdin.readline()
began = time.perf_counter()
while rows < int(sys.argv[3]):
    rows += reader.read_chunk().data.num_rows
print(time.perf_counter() - began, flush=True)
"""


@pytest.mark.slow  # a timed concurrency check
def test_plain_select_streams_without_the_gil(served: Served) -> None:
    # Sent from C++, a result needs no Python per batch: it reaches the client while another
    # thread keeps the GIL. A Python generator would wait for the GIL before every batch.
    ticket = _ticket(served.uri, "SELECT id, v FROM nums")
    client = subprocess.Popen(
        [sys.executable, "-c", _CLIENT, served.uri, ticket.ticket.hex(), str(NUMS_ROWS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    assert client.stdout.readline().strip() == "started"
    client.stdin.write("go\n")
    client.stdin.flush()
    _hold_gil(4.0)
    elapsed = float(client.stdout.readline())
    client.communicate(timeout=30)
    assert elapsed < 2.0


def test_streams_release_their_cursors_however_they_end(served: Served) -> None:
    baseline = _connections(served.accelerator)
    memory = _table_memory(served.accelerator)
    client = flight.connect(served.uri)
    for sql in ("SELECT id, v FROM nums", "SELECT id, w FROM words"):  # from C++, from Python
        ticket = _ticket(served.uri, sql)
        for _ in range(8):
            assert client.do_get(ticket).read_all().num_rows > 0
            abandoned = client.do_get(ticket)
            abandoned.read_chunk()
            abandoned.cancel()
            gone = flight.connect(served.uri)
            gone.do_get(ticket).read_chunk()
            gone.close()  # the client goes away mid-stream
    reader = client.do_get(_ticket(served.uri, "SELECT id, v FROM nums"))
    reader.read_chunk()
    assert _connections(served.accelerator) > baseline  # a stream holds its cursor...
    reader.cancel()
    assert _wait(lambda: len(served.server.running_queries) == 0)
    assert _wait(lambda: _connections(served.accelerator) == baseline)  # ...until it ends
    # No reader is left either: each held a read transaction pinning the tables it read.
    with served.accelerator.cursor() as cur:
        cur.execute("DROP TABLE nums")
        cur.execute("DROP TABLE words")
    assert memory > 10_000_000
    assert _wait(lambda: _table_memory(served.accelerator) < memory / 100)


def test_cancel_interrupts_a_stream_sent_from_cpp(served: Served) -> None:
    client = flight.connect(served.uri)
    info = client.get_flight_info(_query("SELECT id, v FROM nums"))
    reader = client.do_get(info.endpoints[0].ticket)
    rows = reader.read_chunk().data.num_rows
    assert len(served.server.running_queries) == 1
    request = fa.CancelFlightInfoRequest(info=info.serialize())
    _action(client, "CancelFlightInfo", request.SerializeToString())
    # What was already on its way still arrives; then the engine's interruption ends the call.
    with pytest.raises(flight.FlightError, match="(?i)interrupt"):
        while True:
            rows += reader.read_chunk().data.num_rows
    assert rows < NUMS_ROWS
    assert _wait(lambda: len(served.server.running_queries) == 0)
    with pytest.raises(flight.FlightCancelledError):
        client.do_get(info.endpoints[0].ticket).read_all()


def test_shutdown_interrupts_streams_sent_from_cpp(served: Served) -> None:
    server, serving = _serve(served.catalog)
    reader = flight.connect(f"grpc://127.0.0.1:{server.port}").do_get(
        _ticket(f"grpc://127.0.0.1:{server.port}", "SELECT id, v FROM nums")
    )
    rows = shutdown_while_reading(server, serving, reader, flight.FlightError)
    assert rows < NUMS_ROWS


def test_compression_applies_to_streams_sent_from_cpp(served: Served) -> None:
    sql = "SELECT id % 10 AS digit FROM nums"
    server, serving = _serve(served.catalog, compression="zstd")
    try:
        compressed_ticket = _ticket(f"grpc://127.0.0.1:{server.port}", sql)
        compressed = _wire_bytes(server.port, compressed_ticket.ticket)
        table = flight.connect(f"grpc://127.0.0.1:{server.port}").do_get(compressed_ticket)
        assert table.read_all().column("digit").to_pylist()[:12] == [*range(10), 0, 1]
    finally:
        server.shutdown()
        serving.join(timeout=10)
    plain = _wire_bytes(served.server.port, _ticket(served.uri, sql).ticket)
    assert plain > 8 * NUMS_ROWS
    assert compressed < plain / 10


def test_a_column_added_after_prepare_is_returned(served: Served) -> None:
    sql = "SELECT * FROM evolving WHERE id = ?"
    with flightsql_dbapi.connect(served.uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.adbc_prepare(sql)
        cur.execute(sql, (1,))
        assert cur.fetch_arrow_table().schema.names == ["id", "name"]
        # The sync evolves a table as the runtime does: the engine's table, then its spec.
        with served.accelerator.cursor() as engine:
            engine.execute("ALTER TABLE evolving ADD COLUMN score DOUBLE")
            engine.execute("UPDATE evolving SET score = id * 1.5")
        evolved = EVOLVING.append(pa.field("score", pa.float64()))
        handle = served.catalog.handles["evolving"]
        served.catalog.add(TableInfo("evolving", evolved, ("id",), "duckdb"), handle)
        cur.execute(sql, (1,))
        table = cur.fetch_arrow_table()
    assert table.to_pylist() == [{"id": 1, "name": "n-1", "score": 1.5}]


def test_executions_of_a_prepared_statement_reuse_its_schema(env: Env, conn) -> None:
    sql = "SELECT id, customer, amount FROM orders WHERE id = ? AND amount > 1"
    before = len(env.duck_handle.executed)
    with conn.cursor() as cur:
        for key in (1, 2, 3, 4):
            cur.execute(sql, (key,))
            assert len(cur.fetchall()) == 1
    ran = env.duck_handle.executed[before:]
    assert sum(text.endswith("LIMIT 0") for text in ran) == 1  # the probe at prepare
    assert len(ran) == 5


def test_results_typed_by_their_parameters_follow_each_binding(conn) -> None:
    with conn.cursor() as cur:
        for value in (1, 2**40, "text", 2.5):
            cur.execute("SELECT ? AS x", (value,))
            assert cur.fetchall() == [(value,)]


def _run(served: Served, sql: str, max_batch_bytes: int = 4 << 20) -> tuple[object, pa.Table]:
    """What :class:`QueryRunner` hands the server for ``sql``, and the rows it streams."""
    runner = QueryRunner(served.catalog, Namespace(CATALOG_NAME, SCHEMA_NAME), max_batch_bytes)
    plan = runner.plan(sql)
    statement = Statement(sql)
    stop = StopFlag()
    schema = runner.result_schema(plan, statement, stop)
    result = runner.run(plan, statement, schema, stop)
    if isinstance(result, Direct):
        try:
            return result, result.query.reader.read_all()
        finally:
            result.query.close()
    return result, pa.Table.from_batches(list(result), schema)


def test_a_small_string_result_is_sent_from_cpp(served: Served) -> None:
    result, table = _run(served, "SELECT id, w FROM words WHERE id = 7")
    assert isinstance(result, Direct)
    assert table.to_pylist() == [{"id": 7, "w": "w-7"}]


def test_large_string_results_lose_no_batch_on_the_python_path(served: Served) -> None:
    # The first batches are read to tell a small result from a large one; they must still be
    # sent, once, in order.
    result, table = _run(served, "SELECT id, w FROM words ORDER BY id")
    assert not isinstance(result, Direct)
    assert table.column("id").to_pylist() == list(range(500_000))
    # One batch, but over the size limit: split on the Python path too.
    result, table = _run(served, "SELECT id, w FROM words WHERE id < 1000", 4096)
    assert not isinstance(result, Direct)
    assert table.column("w").to_pylist() == [f"w-{i}" for i in range(1000)]
