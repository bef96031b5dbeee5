"""Fixtures: one Flight SQL server per session over real engines, one ADBC connection per test."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import adbc_driver_flightsql.dbapi as flightsql_dbapi
import pytest

from flightsrv.flightsql import FlightSqlServer
from tests.flightsrv.flightsql.engines import Env, build_catalog


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    catalog, duck_handle, accelerators = build_catalog(tmp_path_factory.mktemp("flightsql"))
    server = FlightSqlServer("grpc://127.0.0.1:0", catalog)
    thread = threading.Thread(target=server.serve, name="flightsql-test", daemon=True)
    thread.start()
    try:
        yield Env(server, catalog, duck_handle, accelerators)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        for accelerator in accelerators:
            accelerator.close()


@pytest.fixture
def conn(env: Env) -> Iterator[flightsql_dbapi.Connection]:
    with env.connect() as connection:
        yield connection
