"""Shared fixtures: one DynamoDB emulator server (moto, over HTTP) for the session."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest

from sync.pipeline import DatasetSync
from tests.dynamo import Emulator, start_emulator
from tests.runtime_process import RuntimeProcess

_names = itertools.count()


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = start_emulator()
    yield emu
    emu.server.stop()


@pytest.fixture
def ddb(emulator: Emulator) -> Any:
    return emulator.client("dynamodb")


@pytest.fixture
def table_name(request: pytest.FixtureRequest) -> str:
    """A table name unique within the session (the emulator is shared)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"t{next(_names)}_{request.node.name}")[:200]


@pytest.fixture
def running() -> Iterator[list[DatasetSync]]:
    """DatasetSyncs started by a test (see tests.harness.start), stopped and closed after."""
    started: list[DatasetSync] = []
    yield started
    for sync in started:
        sync.stop()
        sync.accelerator.close()


@pytest.fixture
def pg_connection() -> Iterator[dict[str, str]]:
    """A fresh schema on the real PostgreSQL server (see tests.harness.postgres_schema)."""
    from tests.harness import postgres_schema

    with postgres_schema() as connection:
        yield connection


@pytest.fixture
def runtimes() -> Iterator[list[RuntimeProcess]]:
    """``flightsrv run`` subprocesses started by a test, killed after it."""
    started: list[RuntimeProcess] = []
    yield started
    for runtime in started:
        runtime.kill()
