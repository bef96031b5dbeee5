"""``ChangeBatch``: the one currency between a source (:mod:`sync.source`) and the
accelerators."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

import pyarrow as pa

OP_COLUMN = "_op"


class Op(IntEnum):
    """Row operation; stored as int8 in the ``_op`` column."""

    UPSERT = 1  # INSERT and MODIFY: the row becomes the record's NewImage
    DELETE = 2  # REMOVE: the row with this key goes away


@dataclass(frozen=True)
class ShardPosition:
    """Where one shard of one stream has been read up to.

    ``sequence_number`` is the last record applied (None: nothing read yet, start at the
    shard's trim horizon); ``drained`` marks a closed shard read to its end.
    """

    stream_arn: str
    shard_id: str
    parent_shard_id: str | None
    sequence_number: str | None
    drained: bool = False


@dataclass(frozen=True)
class Checkpoint:
    """Every shard position of a dataset's stream; stored with the data in one transaction.

    ``watermark`` is the time the mirror is known current up to (newest applied record, or
    the last poll that found every shard at its tip). A checkpoint whose watermark is older
    than the stream's retention may have missed trimmed records.
    """

    stream_arn: str
    shards: tuple[ShardPosition, ...]
    watermark: datetime | None = None


@dataclass(frozen=True)
class ChangeBatch:
    """Rows to apply, in stream order, plus the checkpoint they advance to.

    ``rows`` has the ``_op`` column followed by the table's columns (value columns are null on
    deletes). Rows of one key are in sequence order, so the last row of a key wins.
    ``checkpoint`` is None for bootstrap (scan) batches, whose rows are all upserts; the
    stream watermark travels in it.

    ``load`` marks rows of an initial load: every key is new to the table, so rows are inserted
    without looking for an existing one, even when a checkpoint records the load's progress
    (a resumable load commits where each part of it stopped with its rows).
    """

    rows: pa.Table
    checkpoint: Checkpoint | None
    records: int = field(default=0)
    load: bool = False

    @property
    def inserts_only(self) -> bool:
        """The rows are upserts of keys the table does not hold yet: insert them as they are
        (no latest-per-key pass, no delete of an earlier row)."""
        return self.checkpoint is None or self.load

    def latest_per_key(self, key: tuple[str, ...]) -> pa.Table:
        """The last row of every key (last writer wins), in no particular order."""
        rows = self.rows
        if rows.num_rows == 0:
            return rows
        indexed = rows.select(list(key)).append_column("_i", pa.array(range(rows.num_rows)))
        winners = indexed.group_by(list(key), use_threads=False).aggregate([("_i", "max")])
        return rows.take(winners["_i_max"])
