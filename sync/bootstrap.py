"""Applying a source's initial load to an accelerator table, batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sync.accelerators.base import Accelerator
from sync.schema import TableSpec
from sync.source import LoadBatch, LoadProgress


def apply_load(
    accelerator: Accelerator,
    dataset: str,
    spec: TableSpec,
    load: Iterable[LoadBatch | LoadProgress],
    progress: Callable[[int], None] = lambda items: None,
) -> tuple[TableSpec, int]:
    """Apply ``load`` (see :meth:`sync.source.Source.load`) to the empty table ``spec``; return
    the grown spec and the number of rows applied.

    Each batch is applied as it comes, in its own transaction and without a checkpoint (the
    table is swapped in with one when the load is complete); ``progress`` gets the running
    total of items read each time the load reports it.
    """
    applied = 0
    for item in load:
        if isinstance(item, LoadProgress):
            progress(item.items)
            continue
        accelerator.apply(dataset, item.spec, item.batch)
        spec = item.spec
        applied += item.batch.rows.num_rows
    return spec, applied
