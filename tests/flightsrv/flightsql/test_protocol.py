"""Protocol features real clients rely on: sessions, cancellation, compression, prepare results,
SqlInfo. Driven by the real ADBC client, and by raw Flight calls where ADBC hides the wire."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import adbc_driver_flightsql.dbapi as flightsql_dbapi
import adbc_driver_manager
import grpc
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from adbc_driver_manager import AdbcStatusCode
from google.protobuf import any_pb2

from flightsrv.flightsql import FlightSqlServer, metadata
from flightsrv.proto import FlightActions_pb2 as fa
from flightsrv.proto import FlightSql_pb2 as pb
from tests.flightsrv.flightsql.engines import BIG_ROWS, Env


def _any(message: object) -> bytes:
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper.SerializeToString()


def _query(sql: str) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(_any(pb.CommandStatementQuery(query=sql)))


def _action(client: flight.FlightClient, name: str, body: bytes) -> list[bytes]:
    return [r.body.to_pybytes() for r in client.do_action(flight.Action(name, body))]


def _wait(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def small_batches(env: Env) -> Iterator[FlightSqlServer]:
    """A server sending small messages, so that a big result is many batches."""
    server = FlightSqlServer("grpc://127.0.0.1:0", env.catalog, max_batch_bytes=64 * 1024)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(timeout=10)


# --- sessions -------------------------------------------------------------------------------


def test_current_catalog_and_schema_through_adbc(conn) -> None:
    assert conn.adbc_current_catalog == "dynamirror"
    assert conn.adbc_current_db_schema == "public"
    conn.adbc_connection.set_options(
        **{"adbc.connection.catalog": "dynamirror", "adbc.connection.db_schema": "public"}
    )
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchall() == [(5,)]
    with pytest.raises(adbc_driver_manager.Error) as caught:
        conn.adbc_connection.set_options(**{"adbc.connection.db_schema": "other"})
    assert caught.value.status_code == AdbcStatusCode.INVALID_ARGUMENT
    assert "schema" in str(caught.value) and "invalid value" in str(caught.value)


def test_session_actions_on_the_wire(env: Env) -> None:
    client = env.flight_client()
    (raw,) = _action(client, "GetSessionOptions", fa.GetSessionOptionsRequest().SerializeToString())
    options = fa.GetSessionOptionsResult.FromString(raw).session_options
    assert {k: v.string_value for k, v in options.items()} == {
        "catalog": "dynamirror",
        "schema": "public",
    }
    request = fa.SetSessionOptionsRequest()
    request.session_options["catalog"].string_value = "dynamirror"
    request.session_options["schema"].string_value = "nope"
    request.session_options["time_zone"].string_value = "UTC"
    (raw,) = _action(client, "SetSessionOptions", request.SerializeToString())
    errors = fa.SetSessionOptionsResult.FromString(raw).errors
    assert {k: v.value for k, v in errors.items()} == {
        "schema": fa.SetSessionOptionsResult.INVALID_VALUE,
        "time_zone": fa.SetSessionOptionsResult.INVALID_NAME,
    }
    (raw,) = _action(client, "CloseSession", fa.CloseSessionRequest().SerializeToString())
    assert fa.CloseSessionResult.FromString(raw).status == fa.CloseSessionResult.CLOSED


# --- cancellation ---------------------------------------------------------------------------


def test_cancel_flight_info_stops_the_running_stream(small_batches: FlightSqlServer) -> None:
    uri = f"grpc://127.0.0.1:{small_batches.port}"
    reader_client, other_client = flight.connect(uri), flight.connect(uri)
    info = reader_client.get_flight_info(_query("SELECT id, s FROM big"))
    twin = other_client.get_flight_info(_query("SELECT id, s FROM big"))  # same SQL, not cancelled
    reader = reader_client.do_get(info.endpoints[0].ticket)
    twin_reader = other_client.do_get(twin.endpoints[0].ticket)
    rows = reader.read_chunk().data.num_rows
    twin_reader.read_chunk()
    assert len(small_batches.running_queries) == 2

    request = fa.CancelFlightInfoRequest(info=info.serialize())
    (raw,) = _action(other_client, "CancelFlightInfo", request.SerializeToString())
    assert fa.CancelFlightInfoResult.FromString(raw).status == fa.CANCEL_STATUS_CANCELLED
    with pytest.raises(flight.FlightCancelledError, match="cancelled"):
        while True:
            rows += reader.read_chunk().data.num_rows
    assert rows < BIG_ROWS
    assert _wait(lambda: len(small_batches.running_queries) == 1)
    # The identical query of the other client goes on to its end.
    assert twin_reader.read_all().num_rows + 0 > 0
    assert _wait(lambda: len(small_batches.running_queries) == 0)
    # A cancelled ticket stays cancelled.
    with pytest.raises(flight.FlightCancelledError):
        reader_client.do_get(info.endpoints[0].ticket).read_all()


def test_cancel_flight_info_stops_a_query_still_computing_in_the_engine(env: Env) -> None:
    # An aggregate produces no batch for hours: only an interrupt in the engine stops it.
    client = env.flight_client()
    info = client.get_flight_info(
        _query("SELECT count(*) FROM range(100000000) a, range(100000000) b")
    )
    failed: list[BaseException] = []

    def read() -> None:
        try:
            client.do_get(info.endpoints[0].ticket).read_all()
        except flight.FlightError as e:
            failed.append(e)

    reading = threading.Thread(target=read, daemon=True)
    reading.start()
    assert _wait(lambda: any(q["call"] == "DoGet" for q in env.server.running_queries.snapshot()))
    request = fa.CancelFlightInfoRequest(info=info.serialize())
    started = time.monotonic()
    _action(env.flight_client(), "CancelFlightInfo", request.SerializeToString())
    reading.join(5)
    assert not reading.is_alive() and time.monotonic() - started < 2
    assert isinstance(failed[0], flight.FlightCancelledError)
    assert _wait(lambda: len(env.server.running_queries) == 0)


def test_cancel_query_action_of_older_clients(env: Env) -> None:
    client = env.flight_client()
    info = client.get_flight_info(_query("SELECT 1 AS one"))
    body = _any(pb.ActionCancelQueryRequest(info=info.serialize()))
    (raw,) = _action(client, "CancelQuery", body)
    result = any_pb2.Any.FromString(raw)
    cancelled = pb.ActionCancelQueryResult()
    assert result.Unpack(cancelled)
    assert cancelled.result == pb.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED
    with pytest.raises(flight.FlightCancelledError):
        client.do_get(info.endpoints[0].ticket).read_all()


def test_client_that_goes_away_frees_the_engine(env: Env) -> None:
    # ADBC cancels the call when a reader is closed before its end: the server must stop
    # asking the engine for batches and close the cursor.
    pulled_before = env.duck_handle.batches_read
    with flightsql_dbapi.connect(env.uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, v, s FROM big")
        reader = cur.fetch_record_batch()
        assert reader.read_next_batch().num_rows > 0
        reader.close()
    assert _wait(lambda: len(env.server.running_queries) == 0)
    engine_batches = -(-BIG_ROWS // 65536)
    assert env.duck_handle.batches_read - pulled_before < engine_batches


# --- compression ----------------------------------------------------------------------------

_WIDE = "SELECT range AS id, repeat('abc', 200) AS s FROM range(20000)"


def _wire_bytes(port: int, ticket: bytes) -> int:
    """Bytes of the FlightData messages of a DoGet, as they cross the wire."""
    length, out = len(ticket), bytearray()
    while True:
        out.append((length & 0x7F) | (0x80 if length > 0x7F else 0))
        length >>= 7
        if not length:
            break
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        do_get = channel.unary_stream(
            "/arrow.flight.protocol.FlightService/DoGet",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        return sum(len(m) for m in do_get(b"\x0a" + bytes(out) + ticket))


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_results_read_by_adbc(env: Env, codec: str) -> None:
    with FlightSqlServer("grpc://127.0.0.1:0", env.catalog, compression=codec) as server:
        threading.Thread(target=server.serve, daemon=True).start()
        with flightsql_dbapi.connect(f"grpc://127.0.0.1:{server.port}") as conn:
            with conn.cursor() as cur:
                cur.execute(_WIDE)
                table = cur.fetch_arrow_table()
        assert table.num_rows == 20000 and table.column("s")[7].as_py() == "abc" * 200
        info = flight.connect(f"grpc://127.0.0.1:{server.port}").get_flight_info(_query(_WIDE))
        compressed = _wire_bytes(server.port, info.endpoints[0].ticket.ticket)
    plain_info = env.flight_client().get_flight_info(_query(_WIDE))
    plain = _wire_bytes(env.server.port, plain_info.endpoints[0].ticket.ticket)
    assert plain > 12_000_000  # uncompressed by default, what JDBC clients can read
    assert compressed < plain / 20


def test_unknown_compression_is_refused(env: Env) -> None:
    with pytest.raises(ValueError, match="zstd"):
        FlightSqlServer("grpc://127.0.0.1:0", env.catalog, compression="gzip")


# --- prepared statements: result and parameter schemas --------------------------------------


def _prepare(env: Env, sql: str) -> pb.ActionCreatePreparedStatementResult:
    body = _any(pb.ActionCreatePreparedStatementRequest(query=sql))
    (raw,) = _action(env.flight_client(), "CreatePreparedStatement", body)
    result = pb.ActionCreatePreparedStatementResult()
    assert any_pb2.Any.FromString(raw).Unpack(result)
    return result


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM orders WHERE id = ?",
        "SELECT * FROM orders WHERE customer LIKE ? LIMIT ?",
        "SELECT ? AS anything",
        "SELECT * FROM range(?)",
        "DESCRIBE orders",
        "SELECT id, kind FROM events ORDER BY id LIMIT ?",  # SQLite refuses LIMIT NULL
    ],
)
def test_prepared_queries_announce_a_result_schema(env: Env, sql: str) -> None:
    # JDBC takes its update path when dataset_schema is empty: every statement served is a
    # query, so the schema is never empty, and parameter types are plain Arrow types.
    result = _prepare(env, sql)
    dataset = pa.ipc.read_schema(pa.py_buffer(result.dataset_schema))
    assert len(dataset) > 0
    params = pa.ipc.read_schema(pa.py_buffer(result.parameter_schema))
    assert len(params) == sql.count("?")
    assert not any(pa.types.is_union(t) or pa.types.is_nested(t) for t in params.types)


def test_parameter_types_are_inferred_from_their_context(env: Env) -> None:
    result = _prepare(env, "SELECT * FROM orders WHERE customer LIKE ? AND amount > ? LIMIT ?")
    params = pa.ipc.read_schema(pa.py_buffer(result.parameter_schema))
    assert params.types == [pa.string(), pa.float64(), pa.int64()]


def test_writes_are_refused_at_prepare(env: Env) -> None:
    with pytest.raises(flight.FlightUnauthorizedError, match="read-only"):
        _prepare(env, "DELETE FROM orders WHERE id = ?")


# --- SqlInfo --------------------------------------------------------------------------------


def test_sql_info_has_what_clients_read(env: Env) -> None:
    client = env.flight_client()
    info = client.get_flight_info(flight.FlightDescriptor.for_command(_any(pb.CommandGetSqlInfo())))
    values = {
        r["info_name"]: r["value"]
        for r in client.do_get(info.endpoints[0].ticket).read_all().to_pylist()
    }
    # flightsql-dbapi's SQLAlchemy dialect reads 0, 2, 3 and 504 on connect.
    assert values[pb.FLIGHT_SQL_SERVER_NAME] == metadata.SERVER_NAME
    assert values[pb.FLIGHT_SQL_SERVER_ARROW_VERSION] == pa.__version__
    assert values[pb.FLIGHT_SQL_SERVER_READ_ONLY] is True
    assert values[pb.SQL_IDENTIFIER_QUOTE_CHAR] == '"'
    # ADBC reads transaction and cancel support on connect; read-only transactions let DB-API
    # connections leave autocommit without a warning.
    assert values[pb.FLIGHT_SQL_SERVER_TRANSACTION] == pb.SQL_SUPPORTED_TRANSACTION_TRANSACTION
    assert values[pb.FLIGHT_SQL_SERVER_CANCEL] is True
    assert values[pb.SQL_TRANSACTIONS_SUPPORTED] is True
    assert "QUALIFY" in values[pb.SQL_KEYWORDS]
