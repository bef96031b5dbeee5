"""A Scan as the initial load: pages batched into few INSERTs (``scan_batches``), the spec
growing between batches, applied by ``apply_load``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from sync.accelerators.base import open_accelerator
from sync.bootstrap import apply_load
from sync.dynamodb import load
from sync.dynamodb.load import ScanPositions, resumable_scan_batches, scan_batches
from sync.dynamodb.rawparse import parse_scan
from sync.dynamodb.scan import SegmentPage
from sync.dynamodb.typeoptions import TypeOptions
from sync.retry import Stopped
from sync.schema import Column, ColumnType, TableSpec
from sync.settings import AccelerationSettings
from sync.source import LoadBatch, LoadProgress

SPEC = TableSpec("t", (Column("pk", ColumnType.VARCHAR),), ("pk",))


def page(items: list[dict[str, Any]]) -> pa.StructArray:
    parsed = parse_scan(json.dumps({"Items": items, "Count": len(items)}).encode()).items
    assert parsed is not None
    return parsed


PAGES = [
    [{"pk": {"S": f"a{i}"}, "n": {"N": str(i)}} for i in range(3)],
    [{"pk": {"S": f"b{i}"}, "n": {"N": str(i)}, "extra": {"S": "x"}} for i in range(3)],
    [{"pk": {"S": f"c{i}"}, "n": {"N": "1.5"}} for i in range(2)],
]


@pytest.mark.parametrize("engine", ["duckdb", "sqlite"])
def test_pages_load_in_batches_and_grow_the_spec(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load, "BATCH_ITEMS", 100)
    progress: list[tuple[int, int]] = []
    with open_accelerator(AccelerationSettings(engine, "memory")) as acc:  # type: ignore[arg-type]
        acc.create_table(SPEC)
        types = TypeOptions(support=acc.type_support)
        pages = (page(p) for p in PAGES)

        def read(items: int) -> None:
            progress.append((items, acc.row_count("t")))

        spec, items = apply_load(acc, "t", SPEC, scan_batches(pages, SPEC, types, 10), read)
        rows = acc.query_handle().execute('SELECT * FROM "t" ORDER BY pk').read_all()
    assert items == 8
    # Items read, page by page; rows land one batch per spec: page 2 brings "extra", page 3
    # turns "n" into DOUBLE.
    assert progress == [(3, 0), (6, 3), (8, 6)]
    assert spec.column("extra") == Column("extra", ColumnType.VARCHAR)
    assert spec.column("n") == Column("n", ColumnType.DOUBLE)
    assert rows.column("pk").to_pylist() == [
        *(f"a{i}" for i in range(3)),
        *(f"b{i}" for i in range(3)),
        "c0",
        "c1",
    ]
    assert rows.column("extra").to_pylist() == [None] * 3 + ["x"] * 3 + [None] * 2
    assert rows.column("n").to_pylist() == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 1.5, 1.5]


def test_pages_of_one_spec_share_a_batch_until_it_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "BATCH_ITEMS", 4)
    progress: list[tuple[int, int]] = []
    same = [[{"pk": {"S": f"{p}-{i}"}} for i in range(3)] for p in range(3)]
    with open_accelerator(AccelerationSettings("duckdb", "memory")) as acc:
        acc.create_table(SPEC)
        pages = (page(p) for p in same)

        def read(items: int) -> None:
            progress.append((items, acc.row_count("t")))

        batches = scan_batches(pages, SPEC, TypeOptions(support=acc.type_support), 10)
        _, items = apply_load(acc, "t", SPEC, batches, read)
        assert acc.row_count("t") == 9
    assert items == 9
    # Every page read is reported; 3 + 3 items reach the batch size, the last page at the end.
    assert progress == [(3, 0), (6, 0), (9, 6)]


def segment_pages() -> list[SegmentPage]:
    """Two segments: segment 0 in two pages, segment 1 in one (then an empty last page)."""
    a, b, c = (page(p) for p in PAGES)
    return [
        SegmentPage(0, 2, a, {"pk": {"S": "a2"}}),
        SegmentPage(1, 2, c, {"pk": {"S": "c1"}}),
        SegmentPage(0, 2, b, None),
        SegmentPage(1, 2, None, None),
    ]


def test_a_resumable_scan_gives_each_batch_the_position_of_every_segment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(load, "BATCH_ITEMS", 4)
    types = TypeOptions()
    out = list(
        resumable_scan_batches(segment_pages(), ScanPositions("t", 2), SPEC, types, 10, False)
    )
    batches = [b for b in out if isinstance(b, LoadBatch)]
    assert [b.batch.rows.num_rows for b in batches] == [3, 2, 3]  # specs change at each page
    first, second, third = (ScanPositions.parse("t", b.position or ()) for b in batches)
    assert first.start == {0: {"pk": {"S": "a2"}}, 1: None} and first.done == set()
    assert second.start == {0: {"pk": {"S": "a2"}}, 1: {"pk": {"S": "c1"}}}
    assert third.done == {0, 1}  # the empty last page of segment 1 adds no row, moves it on
    assert all(b.position and b.position[0].stream_arn == "scan:t" for b in batches)


def test_a_resumed_scan_infers_no_columns_and_a_stopped_one_hands_over_what_it_read() -> None:
    grown = SPEC.with_columns([Column("n", ColumnType.VARCHAR)])  # as a first run stored it

    def stopped() -> Iterator[SegmentPage]:
        yield from segment_pages()[:1]
        raise Stopped

    positions = ScanPositions.parse("t", ScanPositions("t", 2).positions())
    out: list[LoadBatch | LoadProgress] = []
    with pytest.raises(Stopped):
        for item in resumable_scan_batches(stopped(), positions, grown, TypeOptions(), 10, True):
            out.append(item)
    batches = [b for b in out if isinstance(b, LoadBatch)]
    assert len(batches) == 1 and batches[0].batch.rows.num_rows == 3  # flushed at the stop
    assert batches[0].spec.column("n") == Column("n", ColumnType.VARCHAR)  # not re-inferred
    assert ScanPositions.parse("t", batches[0].position or ()).start[0] == {"pk": {"S": "a2"}}


def test_scan_positions_are_parsed_back_with_their_segment_count() -> None:
    positions = ScanPositions("t", 3, {1: {"pk": {"S": "x"}}}, {2})
    again = ScanPositions.parse("t", positions.positions())
    assert (again.segments, again.start, again.done) == (
        3,
        {0: None, 1: {"pk": {"S": "x"}}, 2: None},
        {2},
    )
    with pytest.raises(ValueError):
        ScanPositions.parse("other", positions.positions())
    with pytest.raises(ValueError):
        ScanPositions.parse("t", positions.positions()[:2])
