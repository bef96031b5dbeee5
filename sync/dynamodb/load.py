"""A table Scan as the initial load: pages grouped into batches of several pages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

from sync.changes import ChangeBatch
from sync.dynamodb.infer import infer_columns
from sync.dynamodb.records import evolve_spec, image_rows, upserts
from sync.dynamodb.typeoptions import TypeOptions
from sync.schema import TableSpec
from sync.source import LoadBatch, LoadProgress

# Items per INSERT: an engine's cost per statement is paid once per batch instead of once per
# Scan page (a 1 MB page holds a few thousand items), which roughly doubles DuckDB's rate.
BATCH_ITEMS = 16_384


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
    batch: list[pa.Table] = []
    batch_spec = spec
    pending = items = 0

    def flush() -> Iterator[LoadBatch]:
        nonlocal pending
        if batch:
            rows = pa.concat_tables(batch)
            yield LoadBatch(batch_spec, ChangeBatch(rows, None, rows.num_rows))
            batch.clear()
            pending = 0

    for page in pages:
        if items == 0:
            sample = page.slice(0, infer_max)
            spec = spec.with_columns(infer_columns(sample, options=types, key=spec.key))
        spec = evolve_spec(spec, page, types)
        if spec != batch_spec:
            yield from flush()
            batch_spec = spec
        batch.append(image_rows(spec, page, page, upserts(len(page)), types))
        items += len(page)
        pending += len(page)
        yield LoadProgress(items)
        if pending >= BATCH_ITEMS:
            yield from flush()
    yield from flush()
