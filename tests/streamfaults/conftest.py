"""Fixtures for the stream fault layer: one emulator per session, a fresh proxy per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from .helpers import client
from .proxy import StreamFaultProxy


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def proxy(emulator_url: str) -> Iterator[StreamFaultProxy]:
    with StreamFaultProxy(emulator_url, seed=1234) as p:
        yield p


@pytest.fixture
def dynamodb(proxy: StreamFaultProxy) -> Iterator[Any]:
    c = client("dynamodb", proxy.url)
    yield c
    c.close()


@pytest.fixture
def streams(proxy: StreamFaultProxy) -> Iterator[Any]:
    c = client("dynamodbstreams", proxy.url)
    yield c
    c.close()


@pytest.fixture
def streams_no_retry(proxy: StreamFaultProxy) -> Iterator[Any]:
    c = client("dynamodbstreams", proxy.url, attempts=1)
    yield c
    c.close()
