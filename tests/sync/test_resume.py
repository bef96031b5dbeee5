"""A Scan bootstrap interrupted half-way resumes every segment where it stopped.

Each test drives real DatasetSyncs on a file DuckDB against the moto server through the fault
proxy, which counts the items every Scan answers: the second run must read little of what the
first one committed, and the mirror must then equal the table exactly."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from sync.accelerators.base import open_accelerator
from sync.pipeline import STAGING_SUFFIX, DatasetSync
from sync.settings import DatasetSettings
from sync.status import State
from tests.dynamo import Emulator, create_table, fill_table, scan_all
from tests.harness import assert_mirror_equals_source, caught_up, mutate, settings_for, wait_for
from tests.streamfaults import StreamFaultProxy

pytestmark = pytest.mark.slow  # a 30,000-item table scanned in real time

ITEMS = 30_000


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[StreamFaultProxy]:
    with StreamFaultProxy(emulator.url, seed=20261206) as p:
        yield p


def seed(ddb: Any, table: str, items: int) -> None:
    create_table(ddb, table)
    fill_table(ddb, table, items)


def interrupted(settings: DatasetSettings, running: list[DatasetSync], at: int) -> DatasetSync:
    """A sync stopped (its engine closed) once its bootstrap has read ``at`` items."""
    sync = DatasetSync(settings, open_accelerator(settings.acceleration))
    running.append(sync)
    sync.start()

    def read() -> int:
        progress = sync.status().bootstrap
        return progress.items if progress else 0

    wait_for(lambda: read() >= at, timeout=120, what=f"{at} items scanned")
    sync.stop(timeout=30)
    sync.accelerator.close()
    assert sync.status().bootstraps == 1
    return sync


def resumed(settings: DatasetSettings, running: list[DatasetSync]) -> DatasetSync:
    sync = DatasetSync(settings, open_accelerator(settings.acceleration))
    running.append(sync)
    sync.start()
    wait_for(lambda: sync.status().state is State.READY, timeout=180, what="Ready")
    return sync


def staged_rows(settings: DatasetSettings) -> int:
    with open_accelerator(settings.acceleration) as acc:
        return acc.row_count(f"{settings.name}{STAGING_SUFFIX}")


def test_an_interrupted_scan_resumes_each_segment_and_reads_little_again(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Any, running: list
) -> None:
    seed(ddb, table_name, ITEMS)
    settings = settings_for(proxy.url, table_name, "duckdb", "file", tmp_path, scan_segments=4)
    proxy.slow_scans(0.05, 0)  # every page a little slower: the stop lands mid-scan
    interrupted(settings, running, ITEMS // 2)
    first = proxy.scanned_items
    staged = staged_rows(settings)
    assert ITEMS // 3 <= staged < ITEMS, "the first run committed part of the table"
    rng = random.Random(3)
    for version in range(1, 201):  # changes made while no runtime runs
        mutate(ddb, table_name, rng, ITEMS + 100, version)
    proxy.clear_faults()
    sync = resumed(settings, running)
    wait_for(caught_up(sync, ddb, table_name), timeout=60, what="the changes replayed")
    assert_mirror_equals_source(sync, ddb, table_name)
    # Both runs together read the table once, plus at most a tenth of it again.
    assert proxy.scanned_items <= 1.1 * ITEMS, (first, staged, proxy.scanned_items)
    assert sync.status().bootstraps == 1


def test_a_staged_load_whose_stream_is_gone_loads_afresh(
    proxy: StreamFaultProxy, ddb: Any, table_name: str, tmp_path: Any, running: list
) -> None:
    items = ITEMS // 3
    seed(ddb, table_name, items)
    settings = settings_for(proxy.url, table_name, "duckdb", "file", tmp_path, scan_segments=2)
    proxy.slow_scans(0.05, 0)
    interrupted(settings, running, items // 2)
    assert staged_rows(settings) > 0
    first = proxy.scanned_items
    proxy.reenable_stream(table_name)  # the captured position means nothing any more
    rng = random.Random(4)
    for version in range(1, 51):
        mutate(ddb, table_name, rng, items + 50, version)
    proxy.clear_faults()
    sync = resumed(settings, running)
    wait_for(caught_up(sync, ddb, table_name), timeout=60, what="the changes replayed")
    assert_mirror_equals_source(sync, ddb, table_name)
    whole = len(scan_all(ddb, table_name))
    assert proxy.scanned_items - first >= whole, "the whole table is scanned again"
