"""Shared test harness: DatasetSync settings for the emulator, waiting, mirror comparison,
and a random workload of inserts, updates and deletes."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sync.accelerators.base import open_accelerator
from sync.pipeline import DatasetSync
from sync.settings import AccelerationSettings, DatasetSettings, SourceSettings
from tests.dynamo import CREDENTIALS, REGION, normalise, random_item, scan_all

ENGINES = ["duckdb", "sqlite"]
POSTGRES_SERVER = os.environ.get(
    "DYNAMIRROR_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
POSTGRES_DATABASE = "dynamirror_test"


@contextmanager
def postgres_schema() -> Iterator[dict[str, str]]:
    """libpq keywords for a fresh schema of the test database (dropped after), so tests that
    use the same dataset names never meet on the shared server."""
    import psycopg

    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as con:
        found = con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [POSTGRES_DATABASE])
        if found.fetchone() is None:
            con.execute(f"CREATE DATABASE {POSTGRES_DATABASE}")
    params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(POSTGRES_SERVER).items()}
    params["dbname"] = POSTGRES_DATABASE
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(**params, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    try:
        yield {**params, "options": f"-c search_path={schema}"}
    finally:
        with psycopg.connect(**params, autocommit=True) as con:
            con.execute(f"DROP SCHEMA {schema} CASCADE")


def settings_for(
    endpoint: str,
    table: str,
    engine: str,
    mode: str,
    tmp_path: Path,
    connection: dict[str, str] | None = None,
    **kw: Any,
) -> DatasetSettings:
    file = tmp_path / f"mirror.{engine}" if mode == "file" and engine != "postgres" else None
    return DatasetSettings(
        name="mirror",
        source=SourceSettings(
            table=table,
            region=REGION,
            auth="key",
            access_key_id=CREDENTIALS["aws_access_key_id"],
            secret_access_key=CREDENTIALS["aws_secret_access_key"],
            endpoint_url=endpoint,
        ),
        acceleration=AccelerationSettings(engine, mode, file, connection),  # type: ignore[arg-type]
        **{"scan_interval": timedelta(milliseconds=50), **kw},
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


def mirror_rows(sync: DatasetSync) -> dict[str, dict[str, Any]]:
    table = sync.accelerator.query_handle().execute('SELECT * FROM "mirror"').read_all()
    return {row["pk"]: row for row in table.to_pylist()}


def assert_mirror_equals_source(sync: DatasetSync, ddb: Any, table: str) -> None:
    """Full comparison, item by item and attribute by attribute."""
    source = {item["pk"]: item for item in scan_all(ddb, table)}
    mirror = mirror_rows(sync)
    assert sorted(mirror) == sorted(source)
    for pk, item in source.items():
        row = mirror[pk]
        for name, value in item.items():
            assert normalise(row[name]) == normalise(value), (pk, name)
        for name, value in row.items():
            if name not in item:
                assert value is None, (pk, name)


def caught_up(sync: DatasetSync, ddb: Any, table: str) -> Callable[[], bool]:
    def check() -> bool:
        source = {i["pk"]: normalise(i["version"]) for i in scan_all(ddb, table)}
        try:
            mirror = {pk: r["version"] for pk, r in mirror_rows(sync).items()}
        except Exception:  # noqa: BLE001 - table may not exist yet
            return False
        return mirror == source

    return check


def start(settings: DatasetSettings, running: list[DatasetSync]) -> DatasetSync:
    sync = DatasetSync(settings, open_accelerator(settings.acceleration))
    running.append(sync)
    sync.start()
    return sync


def mutate(ddb: Any, table: str, rng: random.Random, keys: int, version: int) -> None:
    """One random change: insert/overwrite (60 %), update of one attribute, or delete."""
    pk = f"k{rng.randrange(keys)}"
    roll = rng.random()
    if roll < 0.6:
        ddb.put_item(TableName=table, Item=random_item(rng, pk, version))
    elif roll < 0.8:
        ddb.update_item(
            TableName=table,
            Key={"pk": {"S": pk}},
            UpdateExpression="SET version = :v, #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":v": {"N": str(version)}, ":s": {"S": "updated"}},
        )
    else:
        ddb.delete_item(TableName=table, Key={"pk": {"S": pk}})
