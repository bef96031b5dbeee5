"""Every DynamoDB type, end to end: items written to the emulator, mirrored by the runtime
process into each engine, read back through Flight SQL with the real ADBC client — then the
schema evolving while the stream runs."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pytest

from tests.dynamo import Emulator, create_table
from tests.harness import wait_for
from tests.runtime_process import RuntimeProcess, dataset_entry

pytestmark = pytest.mark.slow  # a runtime per engine

ITEMS: list[dict[str, Any]] = [
    {
        "pk": {"S": "a"},
        "n_int": {"N": "42"},
        "n_big": {"N": "12345678901234567890"},
        "n_frac": {"N": "-0.25"},
        "s": {"S": "héllo"},
        "ts": {"S": "2024-03-15T14:30:00.123+02:00"},
        "day": {"S": "2024-03-15"},
        "flag": {"BOOL": True},
        "raw": {"B": b"\x00\xffabc"},
        "nothing": {"NULL": True},
        "doc": {
            "M": {
                "city": {"S": "Paris"},
                "zip": {"N": "75001"},
                "geo": {"M": {"lat": {"N": "48.85"}}},
            }
        },
        "mixed": {"L": [{"S": "x"}, {"N": "1"}, {"BOOL": True}]},
        "lines": {"L": [{"M": {"sku": {"S": "s-1"}, "qty": {"N": "2"}}}]},
        "tags": {"SS": ["red", "blue"]},
        "scores": {"NS": ["1", "2.5"]},
        "blobs": {"BS": [b"\x01"]},
    },
    {
        "pk": {"S": "b"},
        "n_int": {"N": "-7"},
        "n_big": {"N": "1"},
        "n_frac": {"N": "3"},
        "ts": {"S": "2024-03-15T23:59:59Z"},
        "doc": {"M": {"city": {"S": "Berlin"}}},
        "mixed": {"L": []},
    },
]


def is_utc_microseconds(kind: pa.DataType) -> bool:
    return kind == pa.timestamp("us", "UTC")  # as GetTables says, whatever the engine


# What each engine serves: STRUCT / LIST in DuckDB and Cayenne, arrays of one scalar type in
# PostgreSQL, JSON text for the rest.
STRUCTS = {"duckdb", "cayenne"}
ARRAYS = {"duckdb", "postgres", "cayenne"}


def fetch(uri: str, sql: str) -> pa.Table:
    with flightsql.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def plain(value: Any, arrow: pa.DataType) -> Any:
    """JSON text parsed, so that every engine's value compares alike."""
    if pa.types.is_string(arrow) and isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


@pytest.mark.parametrize("engine", ["duckdb", "sqlite", "postgres", "cayenne"])
def test_every_type_is_served_with_its_arrow_type_and_the_schema_evolves_while_streaming(
    emulator: Emulator,
    ddb: Any,
    table_name: str,
    engine: str,
    tmp_path: Path,
    runtimes: list[RuntimeProcess],
    request: pytest.FixtureRequest,
) -> None:
    pg = request.getfixturevalue("pg_connection") if engine == "postgres" else None
    create_table(ddb, table_name)
    for item in ITEMS:
        ddb.put_item(TableName=table_name, Item=item)
    dataset = dataset_entry(
        "items", table_name, emulator.url, engine, pg_connection=pg, ttl_deletes="soft"
    )
    dataset["columns"] = [{"name": "n_frac", "type": "DECIMAL(10,2)", "description": "exact"}]
    runtime = RuntimeProcess(tmp_path, [dataset])
    runtimes.append(runtime.start())
    runtime.wait_ready()

    table = fetch(runtime.flight_uri, "SELECT * FROM items ORDER BY pk")
    types = {f.name: f.type for f in table.schema}
    with flightsql.connect(runtime.flight_uri) as conn:  # the catalog says the same
        catalog = conn.adbc_get_table_schema("items")
        conn.adbc_get_objects().read_all()
    assert {f.name: f.type for f in catalog} == types
    assert "nothing" not in types  # NULL alone makes no column
    assert types["n_int"] == pa.int64() and types["n_frac"] == pa.decimal128(10, 2)  # declared
    assert is_utc_microseconds(types["_deleted_at"])  # ttl_deletes: soft
    assert types["n_big"] == pa.decimal128(38, 0)  # beyond BIGINT: exact, not DOUBLE
    assert types["s"] == pa.string() and types["flag"] == pa.bool_()
    assert types["raw"] == pa.binary() and types["day"] == pa.date32()
    assert is_utc_microseconds(types["ts"])
    if engine in STRUCTS:
        assert pa.types.is_struct(types["doc"])
        assert types["doc"].field("geo").type == pa.struct([("lat", pa.float64())])
        assert pa.types.is_list(types["mixed"]) and types["mixed"].value_type == pa.string()
        assert pa.types.is_struct(types["lines"].value_type)
    else:  # JSON text (PostgreSQL jsonb)
        assert types["doc"] == types["mixed"] == types["lines"] == pa.string()
    if engine in ARRAYS:
        assert types["tags"].value_type == pa.string()
        assert types["scores"].value_type == pa.float64()
        assert types["blobs"].value_type == pa.binary()
    else:
        assert types["tags"] == types["scores"] == types["blobs"] == pa.string()

    a, b = ({k: plain(v, types[k]) for k, v in row.items()} for row in table.to_pylist())
    assert (a["n_int"], a["n_frac"], a["s"], a["flag"]) == (42, Decimal("-0.25"), "héllo", True)
    assert a["_deleted_at"] is None
    assert a["n_big"] == Decimal("12345678901234567890")
    assert a["ts"] == datetime(2024, 3, 15, 12, 30, 0, 123000, tzinfo=UTC)
    assert a["day"] == date(2024, 3, 15) and a["raw"] == b"\x00\xffabc"
    assert a["doc"] == {"city": "Paris", "geo": {"lat": 48.85}, "zip": 75001}
    assert a["mixed"] == (["x", "1", "true"] if engine in STRUCTS else ["x", 1, True])
    assert a["lines"] == [{"qty": 2, "sku": "s-1"}]
    assert sorted(a["tags"]) == ["blue", "red"] and sorted(a["scores"]) == [1, 2.5]
    assert a["blobs"] == ([b"\x01"] if engine in ARRAYS else ["AQ=="])
    if engine in STRUCTS:
        assert b["doc"] == {"city": "Berlin", "geo": None, "zip": None}
    else:
        assert b["doc"] == {"city": "Berlin"}  # no null for the keys this item lacks
    assert b["mixed"] == [] and b["tags"] is None and b["ts"].hour == 23

    # The schema evolves while the stream runs.
    ddb.put_item(
        TableName=table_name,
        Item={
            **ITEMS[0],
            "n_int": {"N": "3.5"},  # BIGINT → DOUBLE
            "doc": {"M": {"city": {"S": "Paris"}, "country": {"S": "FR"}}},  # a new field
            "added": {"S": "2025-01-01"},  # a new DATE column
        },
    )
    ddb.put_item(
        TableName=table_name, Item={"pk": {"S": "c"}, "prefs": {"M": {"dark": {"BOOL": True}}}}
    )

    def evolved() -> bool:
        try:
            rows = fetch(runtime.flight_uri, "SELECT * FROM items ORDER BY pk")
        except flightsql.OperationalError as e:
            # A query planned just before a column was added is told to run again.
            assert "run the query again" in str(e)
            return False
        return rows.num_rows == 3 and "added" in rows.column_names

    wait_for(evolved, what="the new attributes to be served")
    table = fetch(runtime.flight_uri, "SELECT * FROM items ORDER BY pk")
    types = {f.name: f.type for f in table.schema}
    assert types["n_int"] == pa.float64() and types["added"] == pa.date32()
    a, b, c = ({k: plain(v, types[k]) for k, v in row.items()} for row in table.to_pylist())
    assert (a["n_int"], b["n_int"], c["n_int"]) == (3.5, -7.0, None)
    assert a["added"] == date(2025, 1, 1)
    if engine in STRUCTS:
        assert [f.name for f in types["doc"]] == ["city", "geo", "zip", "country"]
        assert a["doc"] == {"city": "Paris", "geo": None, "zip": None, "country": "FR"}
        assert b["doc"]["country"] is None  # stored rows get the new field, null
        assert types["prefs"] == pa.struct([("dark", pa.bool_())])
    else:
        assert a["doc"] == {"city": "Paris", "country": "FR"}
    assert c["prefs"] == {"dark": True}
    assert runtime.terminate() == 0
