"""DatasetSync against the emulator over HTTP: bootstrap, streaming, restart, every engine."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest

from sync.pipeline import DatasetSync
from sync.status import State
from tests.dynamo import Emulator, create_table, random_item
from tests.harness import (
    ENGINES,
    assert_mirror_equals_source,
    caught_up,
    mirror_rows,
    mutate,
    settings_for,
    start,
    wait_for,
)

ENGINE_MODES = [(e, m) for e in ENGINES for m in ("memory", "file")] + [("postgres", "file")]


@pytest.mark.slow  # a bootstrap racing a writer, per engine
@pytest.mark.parametrize("engine, mode", ENGINE_MODES)
def test_bootstrap_then_changes_during_and_after_converge(
    emulator: Emulator,
    ddb: Any,
    table_name: str,
    engine: str,
    mode: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    running: list[DatasetSync],
) -> None:
    create_table(ddb, table_name)
    rng = random.Random(f"{engine}-{mode}")
    for i in range(1500):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))

    changes = {"n": 0}
    stop_writer = threading.Event()

    def writer() -> None:
        while not stop_writer.is_set() and changes["n"] < 400:
            changes["n"] += 1
            mutate(ddb, table_name, rng, 1800, changes["n"])

    thread = threading.Thread(target=writer)
    thread.start()  # changes start before, and continue during, the bootstrap scan
    connection = request.getfixturevalue("pg_connection") if engine == "postgres" else None
    settings = settings_for(emulator.url, table_name, engine, mode, tmp_path, connection)
    sync = start(settings, running)
    wait_for(lambda: sync.status().state is State.READY, what="Ready")
    during = changes["n"]
    thread.join()
    for version in range(changes["n"] + 1, changes["n"] + 201):
        mutate(ddb, table_name, rng, 1800, version)
    wait_for(caught_up(sync, ddb, table_name), what="mirror to catch up")
    assert_mirror_equals_source(sync, ddb, table_name)
    status = sync.status()
    assert status.records_consumed >= 200
    assert during > 0 and changes["n"] + 200 >= 500
    assert status.state is State.READY and status.error is None


@pytest.mark.slow  # restarts per engine
@pytest.mark.parametrize("engine", [*ENGINES, "postgres"])
def test_file_mode_restart_resumes_without_rescan(
    emulator: Emulator,
    ddb: Any,
    table_name: str,
    engine: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    running: list[DatasetSync],
) -> None:
    create_table(ddb, table_name)
    rng = random.Random(7)
    for i in range(300):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))
    connection = request.getfixturevalue("pg_connection") if engine == "postgres" else None
    settings = settings_for(emulator.url, table_name, engine, "file", tmp_path, connection)
    first = start(settings, running)
    wait_for(lambda: first.status().state is State.READY, what="Ready")
    assert first.status().bootstraps == 1
    first.stop()
    first.accelerator.close()

    for version in range(1, 151):  # made while the runtime is down
        mutate(ddb, table_name, rng, 350, version)

    second = start(settings, running)
    wait_for(caught_up(second, ddb, table_name), what="catch up after restart")
    assert_mirror_equals_source(second, ddb, table_name)
    status = second.status()
    assert status.bootstraps == 0, "a file-mode restart must resume, not scan again"
    assert status.records_consumed >= 150


def test_memory_mode_restart_bootstraps_again(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path, running: list[DatasetSync]
) -> None:
    create_table(ddb, table_name)
    ddb.put_item(TableName=table_name, Item=random_item(random.Random(1), "k1", 0))
    settings = settings_for(emulator.url, table_name, "duckdb", "memory", tmp_path)
    for _ in range(2):
        sync = start(settings, running)
        wait_for(lambda s=sync: s.status().state is State.READY, what="Ready")
        assert sync.status().bootstraps == 1
        assert list(mirror_rows(sync)) == ["k1"]
        sync.stop()


def test_range_key_and_new_attributes_during_streaming(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path, running: list[DatasetSync]
) -> None:
    create_table(ddb, table_name, range_key=True)
    ddb.put_item(TableName=table_name, Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"N": "1"}})
    sync = start(settings_for(emulator.url, table_name, "duckdb", "memory", tmp_path), running)
    wait_for(lambda: sync.status().state is State.READY, what="Ready")
    ddb.put_item(
        TableName=table_name,
        Item={
            "pk": {"S": "a"},
            "sk": {"N": "2"},
            "v": {"N": "2.5"},  # widens v from BIGINT to DOUBLE
            "tags": {"SS": ["x", "y"]},  # a new attribute: a new column
            "doc": {"M": {"n": {"N": "1"}, "l": {"L": [{"S": "z"}, {"BOOL": True}]}}},
        },
    )
    ddb.delete_item(TableName=table_name, Key={"pk": {"S": "a"}, "sk": {"N": "1"}})

    def rows() -> list[dict[str, Any]]:
        q = 'SELECT * FROM "mirror" ORDER BY pk, sk'
        return sync.accelerator.query_handle().execute(q).read_all().to_pylist()

    wait_for(lambda: len(rows()) == 1 and rows()[0]["sk"] == 2, what="changes applied")
    row = rows()[0]
    assert row["v"] == 2.5
    # DuckDB holds sets as LIST and maps as STRUCT; a list of mixed kinds unifies to text.
    assert sorted(row["tags"]) == ["x", "y"]
    assert row["doc"] == {"n": 1, "l": ["z", "true"]}
    assert sync.spec is not None and sync.spec.key == ("pk", "sk")


@pytest.mark.parametrize(
    "view_type, expected",
    [(None, "has no stream enabled"), ("KEYS_ONLY", "view type KEYS_ONLY")],
)
def test_missing_or_wrong_stream_is_an_error_saying_how_to_fix(
    emulator: Emulator,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    running: list[DatasetSync],
    view_type: str | None,
    expected: str,
) -> None:
    create_table(ddb, table_name, view_type=view_type)
    sync = start(settings_for(emulator.url, table_name, "duckdb", "memory", tmp_path), running)
    wait_for(lambda: sync.status().state is State.ERROR, what="error state")
    error = sync.status().error or ""
    assert expected in error
    assert "aws dynamodb update-table" in error and "StreamViewType=NEW_AND_OLD_IMAGES" in error
