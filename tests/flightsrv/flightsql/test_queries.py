"""Queries through the real ADBC Flight SQL client: results, parameters, big results."""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest
from google.protobuf import any_pb2

from flightsrv.flightsql import FlightSqlServer
from flightsrv.proto import FlightSql_pb2 as pb
from tests.flightsrv.flightsql.engines import BIG_ROWS, ORDERS, Env, shutdown_while_reading


def _any(message: object) -> bytes:
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper.SerializeToString()


def test_select_fetchall(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT id, customer, amount, paid, note, payload FROM orders ORDER BY id")
        rows = cur.fetchall()
    assert rows == [tuple(r.values()) for r in ORDERS.to_pylist()]


def test_select_fetch_arrow_table_keeps_types(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM orders ORDER BY id")
        table = cur.fetch_arrow_table()
    assert table.schema.equals(ORDERS.schema)
    assert table.equals(ORDERS)


def test_instants_are_utc_at_every_depth(conn) -> None:
    # DuckDB names its session zone (Etc/UTC, or the host's); the catalog and README say UTC.
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TIMESTAMPTZ '2026-01-02 03:04:05+00' AS t, [TIMESTAMPTZ '2026-01-02'] AS l, "
            "{'at': TIMESTAMPTZ '2026-01-02'} AS s"
        )
        table = cur.fetch_arrow_table()
    instant = pa.timestamp("us", "UTC")
    assert table.schema.field("t").type == instant
    assert table.schema.field("l").type.value_type == instant
    assert table.schema.field("s").type.field("at").type == instant
    assert table.column("t")[0].value == 1767323045000000


def test_qualified_names_and_joins(conn) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT o.customer, count(*) AS n FROM dynamirror.public.orders o "
            "JOIN public.items i ON i.order_id = o.id GROUP BY o.customer ORDER BY o.customer"
        )
        assert cur.fetchall() == [("ada", 4), ("bob", 2), ("cy", 2), ("dee", 2)]


def test_table_less_query_and_cte(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 AS one, 'a' AS letter")
        assert cur.fetchall() == [(1, "a")]
        cur.execute(
            "WITH big_spenders AS (SELECT customer FROM orders WHERE amount > 15) "
            "SELECT DISTINCT customer FROM big_spenders ORDER BY customer"
        )
        assert cur.fetchall() == [("ada",), ("bob",)]


def test_duplicate_output_names_survive(conn) -> None:
    # The schema probe must not rename duplicate columns (a wrapping subquery would).
    with conn.cursor() as cur:
        cur.execute("SELECT id AS a, amount AS a FROM orders WHERE id = 1")
        table = cur.fetch_arrow_table()
    assert table.column_names == ["a", "a"]
    assert table.column(0).to_pylist() == [1]
    assert table.column(1).to_pylist() == [10.5]


@pytest.mark.parametrize(
    ("value", "arrow_type"),
    [
        (42, pa.int64()),
        (1.5, pa.float64()),
        ("héllo", pa.string()),
        (True, pa.bool_()),
        (b"\x00\x01\xff", pa.binary()),
    ],
)
def test_parameter_types_round_trip(conn, value: object, arrow_type: pa.DataType) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT ? AS v", (value,))
        table = cur.fetch_arrow_table()
    assert table.column("v").to_pylist() == [value]
    assert table.schema.field("v").type in (arrow_type, pa.int32())


def test_null_parameter(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM orders WHERE note IS NOT DISTINCT FROM ?", (None,))
        assert cur.fetchall() == [(2,)]


def test_parameters_filter_rows(conn) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM orders WHERE customer = ? AND amount > ? AND paid = ? ORDER BY id",
            ("ada", 5.0, True),
        )
        assert cur.fetchall() == [(1,), (4,)]
        cur.execute("SELECT id FROM orders WHERE payload = ?", (b"\xff",))
        assert cur.fetchall() == [(4,)]


def test_numbered_parameters(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT $2 AS second, $1 AS first", ("a", "b"))
        assert cur.fetchall() == [("b", "a")]


def test_prepared_statement_reuse(conn) -> None:
    with conn.cursor() as cur:
        sql = "SELECT customer FROM orders WHERE id = ?"
        results = []
        for key in (1, 2, 5, 2):
            cur.execute(sql, (key,))
            results.append(cur.fetchall())
    assert results == [[("ada",)], [("bob",)], [("dee",)], [("bob",)]]


def test_parameter_schema_at_prepare_time(conn) -> None:
    with conn.cursor() as cur:
        schema = cur.adbc_prepare("SELECT * FROM orders WHERE id = ? AND customer = ? AND ? > 0")
    assert schema is not None
    assert schema.types == [pa.int64(), pa.string(), pa.int64()]  # ? > 0: like the literal


def test_several_parameter_rows_concatenate_results(conn) -> None:
    params = pa.record_batch({"0": pa.array([1, 3, 5], pa.int64())})
    with conn.cursor() as cur:
        cur.execute("SELECT id, customer FROM orders WHERE id = ?", params)
        assert cur.fetchall() == [(1, "ada"), (3, "cy"), (5, "dee")]


def test_sqlite_engine_gets_transpiled_sql(conn) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT kind, count(*) AS n FROM events WHERE ok IS NOT DISTINCT FROM ? "
            "GROUP BY kind ORDER BY kind",
            (True,),
        )
        assert cur.fetchall() == [("click", 2)]
        cur.execute("SELECT id, kind, ok FROM events ORDER BY id LIMIT ?", (2,))
        table = cur.fetch_arrow_table()
    assert table.schema.types == [pa.int64(), pa.string(), pa.bool_()]
    assert table.to_pylist() == [
        {"id": 1, "kind": "click", "ok": True},
        {"id": 2, "kind": "view", "ok": False},
    ]


def test_big_result_streams_completely(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT id, v, s FROM big")
        reader = cur.fetch_record_batch()
        rows = 0
        total = 0
        for batch in reader:
            rows += batch.num_rows
            total += pc.sum(batch.column("id")).as_py() or 0
    assert rows == BIG_ROWS
    assert total == BIG_ROWS * (BIG_ROWS - 1) // 2


def test_wide_rows_are_rechunked_under_the_message_limit(env: Env, conn) -> None:
    # One engine batch of ~64 MiB: sent whole, it would exceed the driver's 16 MiB cap.
    sql = "SELECT range AS id, repeat('x', 1024) AS s FROM range(65536)"
    with conn.cursor() as cur:
        cur.execute(sql)
        table = cur.fetch_arrow_table()
    assert table.num_rows == 65536
    info = env.flight_client().get_flight_info(
        flight.FlightDescriptor.for_command(_any(pb.CommandStatementQuery(query=sql)))
    )
    reader = env.flight_client().do_get(info.endpoints[0].ticket)
    sizes = [chunk.data.nbytes for chunk in reader]
    assert len(sizes) > 1
    assert max(sizes) <= 16 * 1024 * 1024


def test_statement_query_without_prepare(env: Env) -> None:
    client = env.flight_client()
    descriptor = flight.FlightDescriptor.for_command(
        _any(pb.CommandStatementQuery(query="SELECT id FROM orders WHERE paid ORDER BY id"))
    )
    info = client.get_flight_info(descriptor)
    assert info.schema.names == ["id"]
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.column("id").to_pylist() == [1, 3, 4]
    assert client.get_schema(descriptor).schema.equals(info.schema)


def test_flight_info_does_not_run_the_query(env: Env) -> None:
    client = env.flight_client()
    before = len(env.duck_handle.executed)
    client.get_flight_info(
        flight.FlightDescriptor.for_command(
            _any(pb.CommandStatementQuery(query="SELECT * FROM big ORDER BY v DESC"))
        )
    )
    ran = env.duck_handle.executed[before:]
    assert ran and all(sql.endswith("LIMIT 0") for sql in ran)


def test_tickets_are_self_contained(env: Env) -> None:
    # A ticket from one server is served by another: no state lives between the calls.
    info = env.flight_client().get_flight_info(
        flight.FlightDescriptor.for_command(
            _any(pb.CommandStatementQuery(query="SELECT count(*) AS n FROM orders"))
        )
    )
    with FlightSqlServer("grpc://127.0.0.1:0", env.catalog) as other:
        client = flight.connect(f"grpc://127.0.0.1:{other.port}")
        assert client.do_get(info.endpoints[0].ticket).read_all().to_pylist() == [{"n": 5}]


def test_shutdown_cuts_running_streams_short(env: Env) -> None:
    server = FlightSqlServer("grpc://127.0.0.1:0", env.catalog, max_batch_bytes=64 * 1024)
    serving = threading.Thread(target=server.serve, daemon=True)
    serving.start()
    client = flight.connect(f"grpc://127.0.0.1:{server.port}")
    info = client.get_flight_info(
        flight.FlightDescriptor.for_command(_any(pb.CommandStatementQuery(query="FROM big")))
    )
    reader = client.do_get(info.endpoints[0].ticket)
    rows = shutdown_while_reading(
        server, serving, reader, flight.FlightUnavailableError, match="shutting down"
    )
    assert rows < BIG_ROWS


def test_transactions_and_autocommit_both_work(env: Env) -> None:
    # DB-API connections leave autocommit; transactions are read-only, commit and rollback
    # change nothing.
    with env.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders WHERE id > ?", (2,))
        assert cur.fetchall() == [(3,)]
        conn.commit()
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchall() == [(5,)]
        conn.rollback()
    with env.connect(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchall() == [(1,)]
