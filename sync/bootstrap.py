"""Applying a source's initial load to an accelerator table, batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sync.accelerators.base import Accelerator
from sync.changes import ChangeBatch, Checkpoint, ShardPosition
from sync.schema import TableSpec
from sync.source import LoadBatch, LoadProgress


def apply_load(
    accelerator: Accelerator,
    dataset: str,
    spec: TableSpec,
    load: Iterable[LoadBatch | LoadProgress],
    progress: Callable[[int], None] = lambda items: None,
    checkpoint: Callable[[tuple[ShardPosition, ...]], Checkpoint] | None = None,
) -> tuple[TableSpec, int]:
    """Apply ``load`` (see :meth:`sync.source.Source.load`) to the empty table ``spec``; return
    the grown spec and the number of rows applied.

    Each batch is applied as it comes, in its own transaction; ``progress`` gets the running
    total of items read each time the load reports it. A batch with a position is committed
    with the checkpoint ``checkpoint`` makes of it, stored under ``dataset`` (the load's own
    name, the staging table's: the table is swapped in with the served checkpoint when the
    load is complete); other batches carry none.
    """
    applied = 0
    for item in load:
        if isinstance(item, LoadProgress):
            progress(item.items)
            continue
        batch = item.batch
        if checkpoint is not None and item.position is not None:
            batch = ChangeBatch(batch.rows, checkpoint(item.position), batch.records, load=True)
        accelerator.apply(dataset, item.spec, batch)
        spec = item.spec
        applied += item.batch.rows.num_rows
    return spec, applied
