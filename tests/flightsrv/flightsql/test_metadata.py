"""Catalog metadata through the ADBC client, and the raw Flight SQL metadata commands."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2

from flightsrv.flightsql import metadata
from flightsrv.proto import FlightSql_pb2 as pb
from tests.flightsrv.flightsql.engines import ORDERS_SCHEMA, Env


def _fetch(env: Env, command: object) -> pa.Table:
    wrapper = any_pb2.Any()
    wrapper.Pack(command)
    client = env.flight_client()
    info = client.get_flight_info(flight.FlightDescriptor.for_command(wrapper.SerializeToString()))
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.schema.equals(info.schema, check_metadata=True)
    return table


def test_get_objects_lists_tables_and_columns(conn) -> None:
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    assert [c["catalog_name"] for c in objects] == ["dynamirror"]
    schemas = objects[0]["catalog_db_schemas"]
    assert [s["db_schema_name"] for s in schemas] == ["public"]
    tables = {t["table_name"]: t for t in schemas[0]["db_schema_tables"]}
    assert sorted(tables) == ["big", "events", "items", "orders", "pending"]
    orders = tables["orders"]
    assert orders["table_type"] == "TABLE"
    columns = [(c["column_name"], c["xdbc_type_name"]) for c in orders["table_columns"]]
    assert columns == [
        ("id", "BIGINT"),
        ("customer", "VARCHAR"),
        ("amount", "DOUBLE"),
        ("paid", "BOOLEAN"),
        ("note", "VARCHAR"),
        ("payload", "BLOB"),
    ]
    assert [c["ordinal_position"] for c in orders["table_columns"]] == [1, 2, 3, 4, 5, 6]


def test_get_objects_at_each_depth_and_with_filters(conn) -> None:
    catalogs = conn.adbc_get_objects(depth="catalogs").read_all().to_pylist()
    assert [c["catalog_name"] for c in catalogs] == ["dynamirror"]
    schemas = conn.adbc_get_objects(depth="db_schemas").read_all().to_pylist()
    assert [s["db_schema_name"] for s in schemas[0]["catalog_db_schemas"]] == ["public"]
    tables = conn.adbc_get_objects(depth="tables", table_name_filter="o%").read_all()
    listed = tables.to_pylist()[0]["catalog_db_schemas"][0]["db_schema_tables"]
    assert [t["table_name"] for t in listed] == ["orders"]
    assert listed[0]["table_columns"] in (None, [])
    columns = conn.adbc_get_objects(
        depth="columns", table_name_filter="orders", column_name_filter="pa%"
    ).read_all()
    listed = columns.to_pylist()[0]["catalog_db_schemas"][0]["db_schema_tables"]
    assert [c["column_name"] for c in listed[0]["table_columns"]] == ["paid", "payload"]


def test_get_table_schema_is_the_served_schema(conn) -> None:
    schema = conn.adbc_get_table_schema("orders")
    assert schema.equals(ORDERS_SCHEMA)  # types, names, nullability; metadata aside
    assert schema.field("id").metadata[b"ARROW:FLIGHT:SQL:TYPE_NAME"] == b"BIGINT"
    assert schema.field("id").metadata[b"ARROW:FLIGHT:SQL:TABLE_NAME"] == b"orders"


def test_get_table_schema_of_unknown_table(conn) -> None:
    import adbc_driver_manager

    try:
        conn.adbc_get_table_schema("nope")
    except adbc_driver_manager.Error as e:
        assert e.status_code == adbc_driver_manager.AdbcStatusCode.NOT_FOUND
    else:
        raise AssertionError("no error for an unknown table")


def test_get_table_types(conn) -> None:
    assert conn.adbc_get_table_types() == ["TABLE", "VIEW"]


def test_get_info_names_the_server(conn) -> None:
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "dynamirror"
    assert info["vendor_version"] == metadata.server_version()
    assert info["vendor_arrow_version"] == pa.__version__


def test_sql_info_says_read_only(env: Env) -> None:
    table = _fetch(env, pb.CommandGetSqlInfo())
    assert table.schema.equals(metadata.SQL_INFO_SCHEMA, check_metadata=True)
    values = {row["info_name"]: row["value"] for row in table.to_pylist()}
    assert values[pb.FLIGHT_SQL_SERVER_NAME] == "dynamirror"
    assert values[pb.FLIGHT_SQL_SERVER_READ_ONLY] is True
    assert values[pb.FLIGHT_SQL_SERVER_ARROW_VERSION] == pa.__version__
    assert values[pb.FLIGHT_SQL_SERVER_VERSION] == metadata.server_version()
    assert values[pb.SQL_IDENTIFIER_QUOTE_CHAR] == '"'
    assert values[pb.SQL_DDL_TABLE] is False
    asked = _fetch(env, pb.CommandGetSqlInfo(info=[pb.FLIGHT_SQL_SERVER_READ_ONLY, 10_123]))
    assert asked.to_pylist() == [{"info_name": 3, "value": True}]


def test_catalogs_schemas_tables_commands(env: Env) -> None:
    assert _fetch(env, pb.CommandGetCatalogs()).to_pylist() == [{"catalog_name": "dynamirror"}]
    assert _fetch(env, pb.CommandGetDbSchemas(db_schema_filter_pattern="pub%")).to_pylist() == [
        {"catalog_name": "dynamirror", "db_schema_name": "public"}
    ]
    assert _fetch(env, pb.CommandGetDbSchemas(catalog="other")).num_rows == 0
    tables = _fetch(env, pb.CommandGetTables(table_name_filter_pattern="%e%"))
    assert tables.schema.equals(metadata.TABLES_SCHEMA, check_metadata=True)
    assert tables.column("table_name").to_pylist() == ["events", "items", "orders", "pending"]
    assert _fetch(env, pb.CommandGetTables(table_types=["VIEW"])).num_rows == 0
    with_schema = _fetch(
        env, pb.CommandGetTables(table_name_filter_pattern="orders", include_schema=True)
    )
    assert with_schema.schema.equals(metadata.TABLES_WITH_SCHEMA_SCHEMA, check_metadata=True)
    served = pa.ipc.read_schema(pa.py_buffer(with_schema.column("table_schema")[0].as_py()))
    assert served.equals(ORDERS_SCHEMA)
    assert _fetch(env, pb.CommandGetTableTypes()).to_pylist() == [
        {"table_type": "TABLE"},
        {"table_type": "VIEW"},
    ]


def test_primary_keys_command(env: Env) -> None:
    keys = _fetch(env, pb.CommandGetPrimaryKeys(table="orders"))
    assert keys.schema.equals(metadata.PRIMARY_KEYS_SCHEMA, check_metadata=True)
    assert keys.to_pylist() == [
        {
            "catalog_name": "dynamirror",
            "db_schema_name": "public",
            "table_name": "orders",
            "column_name": "id",
            "key_sequence": 1,
            "key_name": "orders_pkey",
        }
    ]
    assert _fetch(env, pb.CommandGetPrimaryKeys(table="orders", db_schema="x")).num_rows == 0
    assert _fetch(env, pb.CommandGetExportedKeys(table="orders")).num_rows == 0


def test_xdbc_type_info_command(env: Env) -> None:
    types = _fetch(env, pb.CommandGetXdbcTypeInfo())
    assert types.schema.equals(metadata.XDBC_TYPE_INFO_SCHEMA, check_metadata=True)
    data_types = types.column("data_type").to_pylist()
    assert data_types == sorted(data_types)
    assert "BIGINT" in types.column("type_name").to_pylist()
    only = _fetch(env, pb.CommandGetXdbcTypeInfo(data_type=pb.XDBC_BIGINT))
    assert only.column("type_name").to_pylist() == ["BIGINT"]
