"""A table Scan as the initial load: pages grouped into batches of several pages."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from sync.changes import ChangeBatch, ShardPosition
from sync.dynamodb.infer import infer_columns
from sync.dynamodb.records import evolve_spec, image_rows, upserts
from sync.dynamodb.scan import SegmentPage
from sync.dynamodb.typeoptions import TypeOptions
from sync.retry import Stopped
from sync.schema import TableSpec
from sync.source import LoadBatch, LoadProgress

# Items per INSERT: an engine's cost per statement is paid once per batch instead of once per
# Scan page (a 1 MB page holds a few thousand items), which roughly doubles DuckDB's rate.
BATCH_ITEMS = 16_384

SCAN_POSITION_PREFIX = "scan:"


class ScanPositions:
    """Where each segment of a parallel Scan stands, as load positions (``ShardPosition``s).

    One position per segment: ``stream_arn`` is ``scan:<table>``, ``shard_id``
    ``<segment>/<segments>``, ``sequence_number`` the segment's last LastEvaluatedKey as JSON
    (None: not started), ``drained`` the segment is finished.
    """

    def __init__(
        self,
        table: str,
        segments: int,
        start: dict[int, dict[str, Any] | None] | None = None,
        done: set[int] | None = None,
    ) -> None:
        self.table = table
        self.segments = segments
        self.start: dict[int, dict[str, Any] | None] = dict(start or {})
        self.done: set[int] = set(done or ())
        self._keys = {s: self.start.get(s) for s in range(segments)}

    @classmethod
    def parse(cls, table: str, positions: Iterable[ShardPosition]) -> ScanPositions:
        """The positions a load committed, read back (their segment count, not a new one).

        Raises:
            ValueError: the positions are not those of a Scan of ``table``.
        """
        start: dict[int, dict[str, Any] | None] = {}
        done: set[int] = set()
        counts: set[int] = set()
        for p in positions:
            if p.stream_arn != f"{SCAN_POSITION_PREFIX}{table}":
                raise ValueError(f"{p.stream_arn} is not a Scan position of table {table}")
            segment, segments = (int(n) for n in p.shard_id.split("/"))
            counts.add(segments)
            start[segment] = json.loads(p.sequence_number) if p.sequence_number else None
            if p.drained:
                done.add(segment)
        if len(counts) != 1 or set(start) != set(range(next(iter(counts)))):
            raise ValueError(f"the Scan positions of table {table} are incomplete")
        return cls(table, counts.pop(), start, done)

    def advance(self, page: SegmentPage) -> tuple[ShardPosition, ...]:
        """Every segment's position once ``page`` is read."""
        self._keys[page.segment] = page.next_key
        if page.next_key is None:
            self.done.add(page.segment)
        return self.positions()

    def positions(self) -> tuple[ShardPosition, ...]:
        arn = f"{SCAN_POSITION_PREFIX}{self.table}"
        return tuple(
            ShardPosition(
                arn,
                f"{s}/{self.segments}",
                None,
                None if key is None else json.dumps(key, sort_keys=True),
                s in self.done,
            )
            for s, key in self._keys.items()
        )


def scan_batches(
    pages: Iterable[pa.StructArray],
    spec: TableSpec,
    types: TypeOptions,
    infer_max: int,
) -> Iterator[LoadBatch | LoadProgress]:
    """Scan ``pages`` as upsert batches into the empty table ``spec``, with progress.

    Columns are inferred from the first ``infer_max`` items, then grow with the attributes each
    page brings. Converted pages are batched while the spec stays the same (rows of one batch
    share one schema) up to ``BATCH_ITEMS``; a :class:`LoadProgress` with the running total of
    items read follows every page, so progress moves with the scan rather than in steps of a
    batch.
    """
    return _batches(((page, None) for page in pages), spec, types, infer_max)


def resumable_scan_batches(
    pages: Iterable[SegmentPage],
    positions: ScanPositions,
    spec: TableSpec,
    types: TypeOptions,
    infer_max: int,
    resumed: bool,
) -> Iterator[LoadBatch | LoadProgress]:
    """As :func:`scan_batches`, each batch with the position of every segment as of its last
    page (``positions`` is where the scan started). A ``resumed`` load goes on into ``spec``
    as the engine holds it: its columns are not inferred again (a sample of the rest of the
    table could not narrow what is stored), only grown."""
    positioned = ((page.items, positions.advance(page)) for page in pages)
    return _batches(positioned, spec, types, infer_max, infer=not resumed)


def _batches(
    pages: Iterable[tuple[pa.StructArray | None, tuple[ShardPosition, ...] | None]],
    spec: TableSpec,
    types: TypeOptions,
    infer_max: int,
    infer: bool = True,
) -> Iterator[LoadBatch | LoadProgress]:
    batch: list[pa.Table] = []
    batch_spec = spec
    pending = items = 0
    position: tuple[ShardPosition, ...] | None = None  # as of the last page read

    def flush() -> Iterator[LoadBatch]:
        nonlocal pending
        if batch:
            rows = pa.concat_tables(batch)
            yield LoadBatch(batch_spec, ChangeBatch(rows, None, rows.num_rows), position)
            batch.clear()
            pending = 0

    try:
        for page, after in pages:
            if page is None or len(page) == 0:
                position = after  # no rows: the next batch carries the position on
                continue
            if infer and items == 0:
                sample = page.slice(0, infer_max)
                spec = spec.with_columns(infer_columns(sample, options=types, key=spec.key))
            spec = evolve_spec(spec, page, types)
            if spec != batch_spec:
                yield from flush()
                batch_spec = spec
            batch.append(image_rows(spec, page, page, upserts(len(page)), types))
            position = after
            items += len(page)
            pending += len(page)
            yield LoadProgress(items)
            if pending >= BATCH_ITEMS:
                yield from flush()
    except Stopped:
        # Asked to stop: what was read is still committed, so a load resumed from its
        # position does not read it again.
        if position is not None:
            yield from flush()
        raise
    yield from flush()
