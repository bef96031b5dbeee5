"""The ``Source`` protocol: where a dataset's rows and changes come from.

A source describes its table, loads it as upsert ``ChangeBatch``es, and produces change rounds
as ``ChangeBatch``es carrying their checkpoint and watermark. ``DatasetSync`` drives any source
the same way: it owns the lifecycle, the commits (data and checkpoint in one transaction),
readiness, retention behaviour and snapshots; the source owns its wire format, its requests and
their retries, and turns what it reads into Arrow rows and a ``TableSpec``.

Sources are found by kind in :mod:`sync.sources`. DynamoDB (Scan, then DynamoDB Streams) is
``sync/dynamodb/``; an S3 export load or a Kinesis Data Streams change source would be a module
behind these same protocols.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sync.changes import ChangeBatch, Checkpoint, ShardPosition
from sync.schema import Column, TableSpec


@dataclass(frozen=True)
class SourceTable:
    """What a source knows of its table before reading a row.

    ``columns`` are the columns known up front (at least the key, in key order; a source with a
    declared schema gives them all); the load and the change rounds add the columns they infer.
    ``item_count`` is the approximate number of items, for load progress. ``stream`` names the
    change log checkpoints belong to (a stream ARN), None if the source does not say.
    """

    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    item_count: int = 0
    stream: str | None = None

    def empty_spec(self, sql_name: str) -> TableSpec:
        """The mirrored table named ``sql_name`` with the columns known before loading."""
        return TableSpec(sql_name, self.columns, self.key)


@dataclass(frozen=True)
class LoadBatch:
    """Rows of the initial load: ``batch`` holds upserts only and no checkpoint; ``spec`` is the
    table they belong to (grown by the columns seen so far).

    ``position``, from a load that can resume, is where it stands once this batch is applied:
    opaque positions (one per part of the load, a Scan segment for instance) covering every row
    of this batch and of the batches before it. Committed with the batch, they are what
    :meth:`Source.load` takes as ``resume`` after a restart. None: the load cannot resume.
    """

    spec: TableSpec
    batch: ChangeBatch
    position: tuple[ShardPosition, ...] | None = None


@dataclass(frozen=True)
class LoadProgress:
    """How many items the load has read so far (not yet necessarily applied)."""

    items: int


@dataclass(frozen=True)
class ChangeRound:
    """One round of changes read from the change log.

    ``batch`` holds the round's rows (in change order: the last row of a key wins) and the
    checkpoint right after them, whose watermark is ``watermark``. ``spec`` is the table grown
    by the columns the rows bring. ``advances`` says the checkpoint moved (rows read, shards
    finished or found) and must be committed; a round that does not advance may still be
    committed to move the watermark forward. ``caught_up`` says every part of the change log
    was read to its tip: the mirror is current as of the round's start.
    """

    batch: ChangeBatch
    spec: TableSpec
    watermark: float | None  # epoch seconds the mirror is current up to
    caught_up: bool
    advances: bool

    @property
    def records(self) -> int:
        return self.batch.records


@dataclass(frozen=True)
class SourceHealth:
    """What a source reports for status and metrics: the shards (or partitions) being read,
    and the transient errors it retried since it was opened."""

    shards_active: int = 0
    errors_transient: int = 0


class ChangeStream(Protocol):
    """The change log of one table, read from a start position onwards.

    Ordering guarantees: rounds come one after another and never overlap; within a round, and
    from one round to the next, the changes of one key are in the order they were made (so the
    last row of a key wins). A checkpoint covers exactly the rows of the rounds before it: a
    stream resumed from it yields every later change at least once (replays are safe, the last
    writer wins).

    Used by one thread at a time; :meth:`close` is idempotent.
    """

    def capture(self, watermark: datetime | None, oldest: bool = False) -> Checkpoint:
        """Position at the log's tip, now, before a load starts; return that position.

        Every change made after this call comes in :meth:`rounds`, so changes made while the
        load runs are replayed on top of it. ``watermark`` is stored in the checkpoint. With
        ``oldest`` the position is the oldest change the log still holds (no load follows).
        """
        ...

    def resume(self, checkpoint: Checkpoint) -> Checkpoint:
        """Continue after ``checkpoint`` (the one stored with the data); return the position
        the log is read on from: ``checkpoint``, or a later one when the changes after it are
        kept (see :meth:`log_while_loading`; they come first in :meth:`rounds`).

        Raises:
            RetentionExceeded: the checkpoint cannot be continued (another change log, or
                changes after it were trimmed).
        """
        ...

    def log_while_loading(self, captured: Checkpoint) -> bool:
        """Keep reading the log, from ``captured``, while a load runs (on a thread of the
        source's), keeping what it reads with its positions so that no change can leave the
        log's retention before it is applied; the kept rounds come first in :meth:`rounds`.
        False: this source keeps nothing, and a load must end within the log's retention.
        """
        ...

    def rounds(self, spec: TableSpec, watermark: float | None) -> Iterator[ChangeRound]:
        """Change rounds, forever, until the stop event is set or an error is raised.

        ``spec`` is the table as the engine holds it now and ``watermark`` the last one
        reported; both are carried forward from round to round. An idle log still yields
        (empty) rounds, so the caller can wait between them and move its watermark.

        Raises:
            RetentionExceeded: the change log was replaced or trimmed past the position.
            SyncError: a permanent error, or a request still failing at its retry bound.
        """
        ...

    def close(self) -> None:
        """Release the readers and their threads, ending :meth:`rounds`."""
        ...


class Source(Protocol):
    """A table to mirror: its description, its initial load, its change log, its health.

    A source retries its own transient errors (counted in :meth:`health`) and raises
    :class:`~sync.errors.SyncError` subclasses for the rest.
    """

    def describe(self) -> SourceTable:
        """The table's key, the columns known before loading and its approximate size.

        Raises:
            SyncError: the table is missing, or not set up to be mirrored (the message says
                how to fix it).
        """
        ...

    def load(
        self,
        table: SourceTable,
        spec: TableSpec,
        stop: threading.Event,
        resume: tuple[ShardPosition, ...] | None = None,
    ) -> Iterator[LoadBatch | LoadProgress]:
        """The whole table as upsert batches into the empty table ``spec``, with progress.

        Batches come in the order they are to be applied; a key appears once. The spec of each
        batch includes every column of the earlier ones. Progress is reported as items are
        read (in this call), so it moves between batches.

        A load that can resume gives each batch a ``position``. ``resume`` is the position of
        the last batch applied by an earlier, interrupted load of the same table: the load
        continues strictly after it (no key already applied comes again) into ``spec``, the
        table holding what was applied, whose columns are not inferred again.

        Raises:
            Stopped: ``stop`` was set.
            SyncError: as :meth:`describe`.
        """
        ...

    def changes(
        self, table: SourceTable, stop: threading.Event, log_dir: Path | None = None
    ) -> ChangeStream:
        """The table's change log, not yet positioned: call :meth:`ChangeStream.capture` or
        :meth:`ChangeStream.resume` first. ``log_dir`` is where the changes read during a
        load may be kept (:meth:`ChangeStream.log_while_loading`)."""
        ...

    def health(self) -> SourceHealth:
        """Shards being read and transient errors so far; safe to call from any thread."""
        ...
