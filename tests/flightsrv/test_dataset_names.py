"""Dataset names Spice allows: ``schema.table`` (served in that schema) and names SQL must
quote, through config, the statement check, Flight SQL metadata and every engine."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pytest

from flightsrv.flightsql import metadata
from flightsrv.flightsql.catalog import TableInfo
from flightsrv.flightsql.metadata import Namespace
from flightsrv.proto import FlightSql_pb2 as pb
from sync.accelerators import engine_spec
from tests.flightsrv.flightsql.test_parts import check
from tests.flightsrv.test_config import pod
from tests.flightsrv.test_spice_keys import error, parse

NAMES_ACCEPTED = ["orders", "sales.orders", "Order Items", "order-items", "Sales.Orders", "é"]


@pytest.mark.parametrize("name", NAMES_ACCEPTED)
def test_names_spice_allows_are_accepted(tmp_path: Path, name: str) -> None:
    assert parse(tmp_path, pod(name=name)).datasets[0].name == name


@pytest.mark.parametrize(
    "name, expected",
    [
        ("a.b.c", "name: 'a.b.c' is not a table name: write 'table' or 'schema.table'"),
        ("sales.", "name: 'sales.' is not a table name"),
        (" orders", "name: ' orders' is not a table name"),
        ("public.orders", "public is the default schema; write 'orders'"),
        ("a/b", "name: 'a/b' holds '/'"),
        ('say "hi"', "holds '\"'"),
        ("", "name: expected a table name, got ''"),
        (7, "name: expected a table name, got 7"),
    ],
)
def test_names_that_cannot_be_served_are_refused(tmp_path: Path, name: Any, expected: str) -> None:
    assert expected in error(tmp_path, pod(name=name))


def test_names_equal_but_for_case_are_one_name(tmp_path: Path) -> None:
    doc = pod(name="Sales.Orders")
    doc["datasets"].append({**doc["datasets"][0], "name": "sales.orders"})
    assert "duplicate dataset name" in error(tmp_path, doc)


@pytest.mark.parametrize(
    "sql, tables, engine_sql",
    [
        ("SELECT * FROM sales.orders", ("sales.orders",), 'SELECT * FROM "sales.orders" AS orders'),
        (
            "SELECT orders.pk, sales.orders.qty FROM dynamirror.SALES.Orders",
            ("sales.orders",),
            'SELECT orders.pk, orders.qty FROM "sales.orders" AS Orders',
        ),
        (
            'SELECT o.pk FROM "Sales"."Orders" AS o',
            ("Sales.Orders",),
            'SELECT o.pk FROM "Sales.Orders" AS o',
        ),
        ('SELECT * FROM "Order Items"', ("Order Items",), 'SELECT * FROM "Order Items"'),
        ("SELECT * FROM public.orders", ("orders",), "SELECT * FROM orders"),
    ],
)
def test_a_schema_qualified_name_becomes_the_engine_table(
    sql: str, tables: tuple[str, ...], engine_sql: str
) -> None:
    # Unquoted parts fold to lower case (as in PostgreSQL and Spice); quoted ones keep theirs.
    checked = check(sql)
    assert checked.tables == tables
    assert checked.sql("postgres") == engine_sql


def _info(name: str) -> TableInfo:
    return TableInfo(name, pa.schema([pa.field("pk", pa.utf8())]), ("pk",), "duckdb")


def test_metadata_lists_each_table_in_its_schema() -> None:
    ns = Namespace("dynamirror", "public")
    served = [_info("orders"), _info("sales.orders"), _info("sales.Order Items")]
    schemas = metadata.db_schemas(ns, served, pb.CommandGetDbSchemas())
    assert schemas.column("db_schema_name").to_pylist() == ["public", "sales"]
    only = metadata.db_schemas(ns, served, pb.CommandGetDbSchemas(db_schema_filter_pattern="s%"))
    assert only.column("db_schema_name").to_pylist() == ["sales"]
    listed = metadata.tables(ns, served, pb.CommandGetTables(include_schema=True))
    rows = [(r["db_schema_name"], r["table_name"]) for r in listed.to_pylist()]
    assert rows == [("public", "orders"), ("sales", "Order Items"), ("sales", "orders")]
    schema = pa.ipc.read_schema(pa.py_buffer(listed.column("table_schema")[2].as_py()))
    assert schema.field("pk").metadata[b"ARROW:FLIGHT:SQL:DB_SCHEMA_NAME"] == b"sales"
    assert schema.field("pk").metadata[b"ARROW:FLIGHT:SQL:TABLE_NAME"] == b"orders"
    filtered = metadata.tables(ns, served, pb.CommandGetTables(db_schema_filter_pattern="public"))
    assert filtered.column("table_name").to_pylist() == ["orders"]
    keys = metadata.primary_keys(
        ns, served, pb.CommandGetPrimaryKeys(db_schema="sales", table="orders")
    )
    assert keys.to_pylist()[0]["db_schema_name"] == "sales"
    assert keys.num_rows == 1


@pytest.mark.slow  # a runtime process per engine against the emulator
@pytest.mark.parametrize("engine", ["duckdb", "sqlite", "postgres", "cayenne"])
def test_each_engine_serves_qualified_and_quoted_names(
    tmp_path: Path, emulator: Any, pg_connection: dict[str, str], engine: str
) -> None:
    from tests.dynamo import create_table, random_item
    from tests.runtime_process import RuntimeProcess, dataset_entry

    ddb = emulator.client()
    rng = random.Random(3)
    counts = {}
    for table, n in ((f"names_{engine}_a", 30), (f"names_{engine}_b", 12)):
        create_table(ddb, table)
        for i in range(n):
            ddb.put_item(TableName=table, Item=random_item(rng, f"k{i}", 0))
        counts[table] = n
    first, second = counts
    pg = pg_connection if engine == "postgres" else None
    entries = [
        dataset_entry("sales.orders", first, emulator.url, engine, pg_connection=pg),
        dataset_entry("Order Items", second, emulator.url, engine, pg_connection=pg),
    ]
    file_param = engine_spec(engine).file_param
    for entry in entries if file_param else ():  # one database, so the two can be joined
        entry["acceleration"]["params"][file_param] = f"./data/both.{engine}"
    if engine == "duckdb":  # and one in another database, which cannot be
        entries.append(dataset_entry("apart", second, emulator.url, "sqlite"))
    runtime = RuntimeProcess(
        tmp_path,
        entries,
        views=[{"name": "reports.big", "sql": "SELECT pk FROM sales.orders WHERE qty > 0"}],
    )
    runtime.start()
    try:
        runtime.wait_ready()
        with flightsql.connect(runtime.flight_uri) as conn, conn.cursor() as cur:

            def one(sql: str) -> Any:
                cur.execute(sql)
                return cur.fetchall()[0][0]

            assert one("SELECT count(*) FROM sales.orders") == 30
            assert one("SELECT count(*) FROM dynamirror.Sales.ORDERS") == 30
            qualified = "SELECT count(orders.pk) FROM sales.orders WHERE sales.orders.qty >= 0"
            assert one(qualified) == 30
            assert one('SELECT count(*) FROM "Order Items"') == 12
            assert one('SELECT count(*) FROM public."Order Items"') == 12
            assert (
                one('SELECT count(*) FROM sales.orders o JOIN "Order Items" i ON o.pk = i.pk') == 12
            )
            big = sum(1 for r in ddb.scan(TableName=first)["Items"] if int(r["qty"]["N"]) > 0)
            assert one("SELECT count(*) FROM reports.big") == big
            if engine == "duckdb":
                with pytest.raises(flightsql.OperationalError, match="apart .sqlite.") as e:
                    cur.execute('SELECT * FROM apart JOIN "Order Items" USING (pk)')
                assert str(tmp_path) not in str(e.value)  # engines named, never server paths
            with pytest.raises(flightsql.ProgrammingError, match="'orders' not found"):
                cur.execute("SELECT * FROM orders")  # it is in schema sales, not public
            objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
            placed = {
                (s["db_schema_name"], t["table_name"], t["table_type"])
                for c in objects
                for s in c["catalog_db_schemas"]
                for t in s["db_schema_tables"]
            }
            assert placed - {("public", "apart", "TABLE")} == {
                ("sales", "orders", "TABLE"),
                ("public", "Order Items", "TABLE"),
                ("reports", "big", "VIEW"),
            }
        request = urllib.request.Request(
            f"http://127.0.0.1:{runtime.http_port}/v1/sql",
            data=b'SELECT count(*) AS n FROM "sales"."orders"',
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()) == [{"n": 30}]
    finally:
        runtime.kill()
