"""The runtime as a user runs it: a subprocess, the emulator over HTTP, the real ADBC client."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from tests.dynamo import Emulator, create_table, normalise, random_item, scan_all
from tests.harness import mutate, wait_for
from tests.runtime_process import RuntimeProcess, dataset_entry


def query(uri: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with flightsql.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(sql, params or None)
        return list(cur.fetchall())


def mirror_versions(uri: str, table: str) -> dict[str, Any]:
    return dict(query(uri, f"SELECT pk, version FROM {table}"))


def source_versions(ddb: Any, table: str) -> dict[str, Any]:
    return {i["pk"]: normalise(i["version"]) for i in scan_all(ddb, table)}


# DuckDB's run stays in the quick subset; the other engines' are slow.
@pytest.mark.parametrize(
    "engine",
    [
        "duckdb",
        pytest.param("sqlite", marks=pytest.mark.slow),
        pytest.param("postgres", marks=pytest.mark.slow),
        pytest.param("cayenne", marks=pytest.mark.slow),
    ],
)
def test_serves_mirror_over_flight_sql_and_resumes_after_sigterm(
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
    rng = random.Random(engine)
    for i in range(400):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))
    runtime = RuntimeProcess(
        tmp_path, [dataset_entry("orders", table_name, emulator.url, engine, pg_connection=pg)]
    )
    runtimes.append(runtime.start())
    runtime.wait_ready()

    uri = runtime.flight_uri
    assert query(uri, "SELECT count(*) FROM orders") == [(400,)]
    assert query(uri, "SELECT pk, version FROM orders WHERE pk = ?", ("k7",)) == [("k7", 0)]
    with flightsql.connect(uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM orders ORDER BY pk")
        table = cur.fetch_arrow_table()
        assert table.num_rows == 400
        assert {"pk", "qty", "price", "status", "version", "active"} <= set(table.column_names)
        assert str(table.schema.field("qty").type) == "int64"
        assert str(table.schema.field("price").type) == "double"
        assert str(table.schema.field("active").type) == "bool"

    for version in range(1, 201):
        mutate(ddb, table_name, rng, 450, version)
    wait_for(
        lambda: mirror_versions(uri, "orders") == source_versions(ddb, table_name),
        what="changes to be served",
    )

    code, body = runtime.get("/v1/datasets")
    (status,) = json.loads(body)
    assert code == 200 and status["name"] == "orders" and status["status"] == "ready"
    assert status["engine"] == engine and status["mode"] == "file"
    assert status["rows"] == len(source_versions(ddb, table_name))
    assert status["lag_ms"] is not None and status["lag_ms"] < 2000 and status["error"] is None
    assert runtime.get("/health") == (200, "ok")

    started = time.monotonic()
    assert runtime.terminate() == 0
    assert time.monotonic() - started < 5, "SIGTERM must stop the runtime within 5 s"
    assert "stopped" in runtime.log.read_text()
    for version in range(201, 301):  # while the runtime is down
        mutate(ddb, table_name, rng, 450, version)
    restarted = RuntimeProcess(
        tmp_path, [dataset_entry("orders", table_name, emulator.url, engine, pg_connection=pg)]
    )
    runtimes.append(restarted.start())
    restarted.wait_ready()
    wait_for(
        lambda: mirror_versions(restarted.flight_uri, "orders") == source_versions(ddb, table_name),
        what="catch-up after restart",
    )
    assert "resuming from its checkpoint" in restarted.log.read_text()
    assert restarted.log.read_text().count("bootstrapping from table") == 1  # the first run's


@pytest.mark.slow  # a runtime process
def test_not_ready_dataset_and_unknown_table_get_clear_flight_errors(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path, runtimes: list[RuntimeProcess]
) -> None:
    create_table(ddb, table_name, view_type=None)  # no stream: the dataset goes to error
    runtime = RuntimeProcess(
        tmp_path, [dataset_entry("broken", table_name, emulator.url, mode="memory")]
    )
    runtimes.append(runtime.start())
    wait_for(lambda: runtime.datasets()[0]["status"] == "error", what="error status")
    (status,) = runtime.datasets()
    assert "update-table" in status["error"]
    code, body = runtime.get("/v1/ready")
    assert code == 503 and "broken" in body

    with pytest.raises(flightsql.Error) as raised:
        query(runtime.flight_uri, "SELECT * FROM broken")
    assert "in error" in str(raised.value) and "StreamViewType=NEW_AND_OLD_IMAGES" in str(
        raised.value
    )
    with pytest.raises(flightsql.Error) as raised:
        query(runtime.flight_uri, "SELECT * FROM no_such_table")
    assert "no_such_table" in str(raised.value)
    assert query(runtime.flight_uri, "SELECT 40 + 2") == [(42,)]
    started = time.monotonic()
    assert runtime.terminate() == 0
    assert time.monotonic() - started < 5


@pytest.mark.slow  # a runtime process bootstrapping twice
def test_refresh_endpoint_rebootstraps_while_serving(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path, runtimes: list[RuntimeProcess]
) -> None:
    create_table(ddb, table_name)
    rng = random.Random(5)
    for i in range(300):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))
    runtime = RuntimeProcess(tmp_path, [dataset_entry("orders", table_name, emulator.url)])
    runtimes.append(runtime.start())
    runtime.wait_ready()
    assert runtime.get("/v1/datasets/nope/acceleration/refresh", "POST")[0] == 404
    code, body = runtime.get("/v1/datasets/orders/acceleration/refresh", "POST")
    assert code == 201 and "refresh started" in body
    counts = []
    deadline = time.monotonic() + 30
    while runtime.log.read_text().count("bootstrap loaded") < 2 and time.monotonic() < deadline:
        counts.append(query(runtime.flight_uri, "SELECT count(*) FROM orders")[0][0])
    runtime.wait_ready()
    assert runtime.log.read_text().count("bootstrapping from table") == 2
    assert counts and set(counts) == {300}, "queries kept working on the old rows, never half"
