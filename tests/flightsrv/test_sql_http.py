"""``POST /v1/sql`` on a runtime process, as curl uses it: every format, API keys, the
refusals and their statuses, the limits, and a large result streamed in bounded memory."""

from __future__ import annotations

import csv
import http.client
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.dynamo import Emulator, create_table, random_item
from tests.runtime_process import RuntimeProcess, dataset_entry

pytestmark = pytest.mark.slow  # a runtime process

KEY = "sql-over-http-key"
ITEMS = 50


@pytest.fixture(scope="module")
def runtime(
    emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    import random

    ddb = emulator.client()
    table = "sql_http_orders"
    create_table(ddb, table)
    rng = random.Random(4)
    for i in range(ITEMS):
        ddb.put_item(TableName=table, Item=random_item(rng, f"k{i:02}", i))
    workdir = tmp_path_factory.mktemp("sqlhttp")
    missing = dataset_entry("gone", "sql_http_no_such_table", emulator.url, mode="memory")
    missing["params"]["error_retry_interval"] = "1h"
    process = RuntimeProcess(
        workdir,
        [dataset_entry("orders", table, emulator.url, mode="memory"), missing],
        runtime={
            "auth": {"api-key": {"enabled": True, "keys": [KEY]}},
            "query": {"timeout": "10s", "max_statement_size": "1KiB"},
        },
        views=[
            {"name": "early", "sql": "SELECT pk, version FROM orders WHERE version < 3"},
            {"name": "earliest", "sql": "SELECT pk FROM early WHERE version = 0"},
        ],
        api_key=KEY,
    ).start()
    try:
        process.wait_http()
        deadline_ok = _wait_orders(process)
        assert deadline_ok, process.log.read_text()[-3000:]
        yield process
    finally:
        process.kill()


def _wait_orders(process: RuntimeProcess) -> bool:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = {d["name"]: d["status"] for d in process.datasets()}
        if states.get("orders") == "ready":
            return True
        time.sleep(0.1)
    return False


def post(
    runtime: RuntimeProcess, sql: str | bytes, accept: str | None = None, key: str | None = KEY
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", runtime.http_port, timeout=30)
    headers = {"Content-Type": "text/plain"}
    if accept:
        headers["Accept"] = accept
    if key:
        headers["X-API-Key"] = key
    body = sql.encode() if isinstance(sql, str) else sql
    connection.request("POST", "/v1/sql", body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    found = {k.lower(): v for k, v in response.getheaders()}
    connection.close()
    return response.status, found, data


QUERY = "SELECT pk, version FROM orders WHERE version < 3 ORDER BY pk"
EXPECTED = [{"pk": f"k{i:02}", "version": i} for i in range(3)]


def test_json_is_the_default_an_array_of_objects(runtime: RuntimeProcess) -> None:
    for accept in (None, "*/*", "application/json"):
        status, headers, body = post(runtime, QUERY, accept)
        assert status == 200, body
        assert headers["content-type"] == "application/json"
        assert headers["transfer-encoding"] == "chunked"
        assert json.loads(body) == EXPECTED
    status, _, body = post(runtime, "SELECT pk FROM orders WHERE false")
    assert (status, json.loads(body)) == (200, [])


def test_csv_text_and_arrow_stream(runtime: RuntimeProcess) -> None:
    status, headers, body = post(runtime, QUERY, "text/csv")
    assert (status, headers["content-type"]) == (200, "text/csv")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [{"pk": r["pk"], "version": int(r["version"])} for r in rows] == EXPECTED

    status, headers, body = post(runtime, QUERY, "text/plain")
    assert (status, headers["content-type"]) == (200, "text/plain")
    lines = body.decode().splitlines()
    assert lines[1].split("|")[1:3] == [" pk  ", " version "]
    assert lines[3].split("|")[1:3] == [" k00 ", " 0       "]
    assert lines[-1] == "(3 rows)"

    status, headers, body = post(runtime, QUERY, "application/vnd.apache.arrow.stream")
    assert (status, headers["content-type"]) == (200, "application/vnd.apache.arrow.stream")
    table = pa.ipc.open_stream(body).read_all()
    assert table.to_pylist() == EXPECTED
    assert table.schema.field("version").type == pa.int64()

    # Preference order and weights are honoured; nothing served is a 406.
    assert post(runtime, QUERY, "image/png;q=1, text/csv;q=0.5")[1]["content-type"] == "text/csv"
    status, _, body = post(runtime, QUERY, "image/png")
    assert status == 406 and "text/csv" in json.loads(body)["error"]


def test_nested_values_and_types_in_each_format(runtime: RuntimeProcess) -> None:
    sql = (
        "SELECT {'a': 1, 'b': [1, 2]} AS s, DATE '2026-01-02' AS d, "
        "CAST(1.25 AS DECIMAL(10, 2)) AS m, NULL AS n"
    )
    status, _, body = post(runtime, sql)
    assert status == 200, body
    assert json.loads(body) == [
        {"s": {"a": 1, "b": [1, 2]}, "d": "2026-01-02", "m": "1.25", "n": None}
    ]
    status, _, body = post(runtime, sql, "text/csv")
    assert status == 200, body
    (row,) = list(csv.DictReader(io.StringIO(body.decode())))
    assert json.loads(row["s"]) == {"a": 1, "b": [1, 2]} and row["d"] == "2026-01-02"


def test_api_keys_are_required(runtime: RuntimeProcess) -> None:
    assert post(runtime, QUERY, key=None)[0] == 401
    assert post(runtime, QUERY, key="wrong")[0] == 401


@pytest.mark.parametrize(
    "sql, status, message",
    [
        ("SELEC pk FROM orders", 400, ""),
        ("SELECT 1/", 400, ""),
        ("DROP TABLE orders", 403, "only queries"),
        ("INSERT INTO orders (pk) VALUES ('x')", 403, "only queries"),
        ("SELECT read_text('/etc/passwd')", 403, "read_text() is not allowed"),
        ("SELECT * FROM customers", 404, "table 'customers' not found"),
        ("SELECT * FROM gone", 503, "gone"),
        ("", 400, "the request body is empty"),
        (b"\xff\xfe", 400, ""),
        ("SELECT sum(hash(range)) FROM range(100000000000)", 504, "timeout"),
    ],
)
def test_refusals_are_json_with_their_status(
    runtime: RuntimeProcess, sql: str | bytes, status: int, message: str
) -> None:
    got, headers, body = post(runtime, sql)
    assert got == status, body
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert message in error and "Traceback" not in error and "/work" not in error
    assert "\n" not in error


def test_a_statement_over_the_size_limit_is_refused_unread(runtime: RuntimeProcess) -> None:
    status, _, body = post(runtime, "SELECT 1 " + " " * 2000)
    assert status == 413 and b"1024 bytes" in body


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_large_result_streams_in_bounded_memory(runtime: RuntimeProcess) -> None:
    assert runtime.proc is not None
    before = _peak_rss_kb(runtime.proc.pid)
    connection = http.client.HTTPConnection("127.0.0.1", runtime.http_port, timeout=60)
    sql = "SELECT range AS i, 'row-' || range AS label FROM range(1500000)"
    connection.request("POST", "/v1/sql", body=sql, headers={"X-API-Key": KEY})
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Transfer-Encoding") == "chunked"
    total, chunks, tail = 0, 0, b""
    while True:
        chunk = response.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        chunks += 1
        tail = (tail + chunk)[-64:]
    connection.close()
    assert total > 30_000_000 and tail.endswith(b'{"i":1499999,"label":"row-1499999"}]')
    grown_mb = (_peak_rss_kb(runtime.proc.pid) - before) / 1024
    # The whole answer as Python objects would take about a gigabyte; batch by batch,
    # the runtime grows by a few batches at most.
    assert grown_mb < 150, grown_mb
    assert _count(runtime) == 1500000


def _count(runtime: RuntimeProcess) -> Any:
    status, _, body = post(runtime, "SELECT count(*) AS n FROM range(1500000)")
    assert status == 200
    return json.loads(body)[0]["n"]


def test_views_are_served_as_read_only_tables(runtime: RuntimeProcess) -> None:
    import adbc_driver_flightsql.dbapi as flightsql

    status, _, body = post(runtime, "SELECT * FROM early ORDER BY pk")
    assert (status, json.loads(body)) == (200, EXPECTED)
    status, _, body = post(runtime, "SELECT e.pk FROM earliest AS e JOIN orders USING (pk)")
    assert (status, json.loads(body)) == (200, [{"pk": "k00"}])
    assert post(runtime, "DELETE FROM early")[0] == 403
    uri = f"grpc://127.0.0.1:{runtime.flight_port}"
    with flightsql.connect(
        uri, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {KEY}"}
    ) as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        tables = {
            t["table_name"]: t["table_type"]
            for catalog in objects
            for schema in catalog["catalog_db_schemas"]
            for t in schema["db_schema_tables"]
        }
        assert tables["early"] == "VIEW" and tables["orders"] == "TABLE"
        schema = conn.adbc_get_table_schema("early")
        assert schema.names == ["pk", "version"]
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) AS n FROM early")
            assert cur.fetchall() == [(3,)]
