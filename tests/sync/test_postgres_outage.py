"""A PostgreSQL that is down at start-up or goes away mid-stream is a transient error: the
dataset retries, says so on its status, and loses nothing."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.pipeline import DatasetSync
from sync.status import State
from tests.dynamo import Emulator, create_table, random_item
from tests.harness import (
    assert_mirror_equals_source,
    caught_up,
    mutate,
    settings_for,
    start,
    wait_for,
)
from tests.tcpproxy import TcpProxy

pytestmark = pytest.mark.slow  # a PostgreSQL outage, waited out


@pytest.fixture
def pg_via_proxy(pg_connection: dict[str, str]) -> Iterator[tuple[TcpProxy, dict[str, str]]]:
    proxy = TcpProxy((pg_connection.get("host", "127.0.0.1"), int(pg_connection.get("port", 5432))))
    try:
        yield proxy, {**pg_connection, "host": "127.0.0.1", "port": str(proxy.port)}
    finally:
        proxy.down()


def test_postgres_down_at_start_then_gone_mid_stream_loses_nothing(
    emulator: Emulator,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list[DatasetSync],
    pg_via_proxy: tuple[TcpProxy, dict[str, str]],
) -> None:
    proxy, connection = pg_via_proxy
    rng = random.Random(13)
    create_table(ddb, table_name)
    for i in range(200):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))
    settings = settings_for(
        emulator.url,
        table_name,
        "postgres",
        "file",
        tmp_path,
        connection,
        error_retry=timedelta(milliseconds=300),
    )
    sync = start(settings, running)  # the server is unreachable: the proxy is down
    wait_for(lambda: sync.status().state is State.ERROR, what="error while PostgreSQL is down")
    assert "connection" in (sync.status().error or "").lower()
    proxy.up()
    wait_for(lambda: sync.status().state is State.READY, what="Ready once PostgreSQL is back")

    for version in range(1, 301):
        mutate(ddb, table_name, rng, 250, version)
        if version in (100, 200):
            proxy.down()  # PostgreSQL goes away mid-stream...
            time.sleep(0.5)
            proxy.up()  # ...and comes back
    wait_for(caught_up(sync, ddb, table_name), timeout=60, what="catch up after the outages")
    assert_mirror_equals_source(sync, ddb, table_name)
