"""Loading a table scan into an accelerator table, in batches of several pages."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyarrow as pa

from sync.accelerators.base import Accelerator
from sync.changes import ChangeBatch
from sync.dynamodb.infer import infer_columns
from sync.dynamodb.records import evolve_spec, image_rows, upserts
from sync.dynamodb.typeoptions import TypeOptions
from sync.schema import TableSpec

# Items per INSERT: an engine's cost per statement is paid once per batch instead of once per
# Scan page (a 1 MB page holds a few thousand items), which roughly doubles DuckDB's rate.
BATCH_ITEMS = 16_384


def load_scan(
    accelerator: Accelerator,
    dataset: str,
    spec: TableSpec,
    pages: Iterable[pa.StructArray],
    types: TypeOptions,
    infer_max: int,
    progress: Callable[[int], None] = lambda items: None,
) -> tuple[TableSpec, int]:
    """Load Scan ``pages`` into the empty table ``spec``; return the grown spec and the number
    of items loaded.

    Columns are inferred from the first ``infer_max`` items, then grow with the attributes each
    page brings. Converted pages are batched while the spec stays the same; ``progress`` gets
    the running total of items read after every page, so it moves with the scan rather than in
    steps of a batch.
    """
    batch: list[pa.Table] = []
    batch_spec = spec
    loaded = items = 0

    def flush() -> None:
        nonlocal loaded
        if batch:
            rows = pa.concat_tables(batch)
            accelerator.apply(dataset, batch_spec, ChangeBatch(rows, None, rows.num_rows))
            loaded += rows.num_rows
            batch.clear()

    for page in pages:
        if items == 0:
            sample = page.slice(0, infer_max)
            spec = spec.with_columns(infer_columns(sample, options=types, key=spec.key))
        spec = evolve_spec(spec, page, types)
        if spec != batch_spec:
            flush()  # rows of one batch share one schema
            batch_spec = spec
        batch.append(image_rows(spec, page, page, upserts(len(page)), types))
        items += len(page)
        progress(items)
        if items - loaded >= BATCH_ITEMS:
            flush()
    flush()
    return spec, loaded
