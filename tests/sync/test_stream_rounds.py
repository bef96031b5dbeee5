"""A poll round reads a shard with a backlog several times, up to its record budget, and
carries the shard positions of exactly the pages it holds."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

from sync.dynamodb.client import make_clients
from sync.dynamodb.rawparse import RecordsPage
from sync.dynamodb.stream import StreamReader
from tests.dynamo import Emulator, create_table, random_item
from tests.harness import settings_for, wait_for
from tests.streamfaults import StreamFaultProxy

PAGE = 10


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[StreamFaultProxy]:
    with StreamFaultProxy(emulator.url) as p:
        yield p


@pytest.fixture
def reader(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Path
) -> Iterator[StreamReader]:
    create_table(ddb, table_name)
    source = settings_for(proxy.url, table_name, "duckdb", "memory", tmp_path).source
    arn = ddb.describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
    stream = StreamReader(make_clients(source), arn, threading.Event(), lambda e: None, 30.0, PAGE)
    stream.start_at_latest()
    try:
        yield stream
    finally:
        stream.close()


def write(ddb: Any, table: str, count: int) -> None:
    rng = random.Random(7)
    for i in range(count):
        ddb.put_item(TableName=table, Item=random_item(rng, f"k{i:03d}", i))


def keys(pages: list[RecordsPage]) -> list[str]:
    """The ``pk`` of every record, in the order the pages hold them."""
    out: list[str] = []
    for page in pages:
        assert page.records is not None
        dynamodb = pc.struct_field(page.records, "dynamodb")
        out += pc.struct_field(dynamodb, "Keys").to_pylist()
    return [k["pk"]["S"] for k in out]


def last_sequence(page: RecordsPage) -> str:
    assert page.records is not None
    dynamodb = pc.struct_field(page.records, "dynamodb")
    return str(pc.struct_field(dynamodb, "SequenceNumber")[-1])


def test_a_backlog_is_read_in_one_round_until_a_page_is_not_full(
    reader: StreamReader, ddb: Any, table_name: str
) -> None:
    write(ddb, table_name, 35)
    poll = reader.poll(max_records=1000)
    assert [p.count for p in poll.pages] == [PAGE, PAGE, PAGE, 5]
    assert keys(poll.pages) == [f"k{i:03d}" for i in range(35)]
    assert not poll.caught_up
    (position,) = poll.positions
    assert position.sequence_number == last_sequence(poll.pages[-1])
    assert reader.poll().records == 0


def test_a_round_stops_at_its_budget_and_keeps_its_own_positions(
    reader: StreamReader, ddb: Any, table_name: str
) -> None:
    write(ddb, table_name, 35)
    first = reader.poll(max_records=2 * PAGE)
    second = reader.poll(max_records=2 * PAGE)
    assert [p.count for p in first.pages] == [PAGE, PAGE]
    assert [p.count for p in second.pages] == [PAGE, 5]
    assert keys(first.pages + second.pages) == [f"k{i:03d}" for i in range(35)]
    # The first round's checkpoint still points at its own last record, not the reader's.
    assert first.checkpoint(None).shards[0].sequence_number == last_sequence(first.pages[-1])
    assert second.checkpoint(None).shards[0].sequence_number == last_sequence(second.pages[-1])
    assert first.positions != second.positions


def test_rounds_read_ahead_only_after_a_round_with_records(
    reader: StreamReader, proxy: StreamFaultProxy, ddb: Any, table_name: str
) -> None:
    rounds = reader.rounds()
    try:
        assert next(rounds).records == 0
        idle = proxy.requests["GetRecords"]
        time.sleep(0.5)
        assert proxy.requests["GetRecords"] == idle  # an idle stream waits for the caller
        write(ddb, table_name, 15)
        busy = next(rounds)
        assert busy.records == 15
        wait_for(lambda: proxy.requests["GetRecords"] > idle + 2, 5, "the read-ahead round")
        assert next(rounds).records == 0
    finally:
        rounds.close()
