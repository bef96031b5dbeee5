"""Tailing a DynamoDB stream: shard lineage, iterators, GetRecords pages in bulk.

Ordering guarantees: a child shard is read only after its parent is drained, and one shard's
records come in sequence order. Shards being read at the same time are siblings with disjoint
key ranges, so the records of one poll round, concatenated, keep every key's order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import pyarrow.compute as pc

from sync.changes import Checkpoint, ShardPosition
from sync.dynamodb.client import DynamoDBClients
from sync.dynamodb.errors import classify
from sync.dynamodb.rawparse import RecordsPage, parse_get_records
from sync.errors import IteratorExpired, RetentionExceeded, SyncError
from sync.retry import UNBOUNDED, Backoff, RetryBound, retrying

log = logging.getLogger(__name__)

GET_RECORDS_LIMIT = 1000
MAX_PARALLEL_SHARDS = 8
# A page at one of GetRecords' limits (1,000 records or 1 MB of data, which is more than 1 MB
# of JSON) means the shard has a backlog: it is read again in the same round, up to this many
# records, so a lagging stream is applied in few large transactions instead of many small ones.
MAX_ROUND_RECORDS = 10_000
FULL_PAGE_BYTES = 1 << 20
# An open shard may answer empty pages before records that are already there (AWS does), so
# a shard counts as caught up only after this many empty pages in a row.
EMPTY_PAGES_CAUGHT_UP = 3


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    sequence_number: str | None = None  # last record read
    drained: bool = False
    start: str = "TRIM_HORIZON"  # iterator type while nothing has been read
    iterator: str | None = None
    empty_pages: int = 0  # consecutive empty pages: at the tip once EMPTY_PAGES_CAUGHT_UP

    def position(self, stream_arn: str) -> ShardPosition:
        return ShardPosition(
            stream_arn, self.shard_id, self.parent_id, self.sequence_number, self.drained
        )


@dataclass
class Poll:
    """One poll round: pages in lineage-safe order, whether the stream is caught up, and the
    shard positions right after the round (so a checkpoint matches exactly these pages even
    when the reader has moved on to the next round)."""

    stream_arn: str
    started: float  # epoch seconds: when the round began (the watermark when caught up)
    pages: list[RecordsPage] = field(default_factory=list)
    caught_up: bool = True
    drained_shards: int = 0
    topology_changed: bool = False  # shards found or forgotten: the checkpoint should follow
    positions: tuple[ShardPosition, ...] = ()
    active_shards: int = 0

    @property
    def records(self) -> int:
        return sum(p.count for p in self.pages)

    def checkpoint(self, watermark: datetime | None) -> Checkpoint:
        return Checkpoint(self.stream_arn, self.positions, watermark)


class StreamReader:
    """The shard-lineage state machine of one stream.

    Not thread-safe: one thread at a time drives it (the dataset's sync thread, or the
    read-ahead thread of :meth:`rounds`; GetRecords calls of one round run in a small pool).
    DescribeStream is rate-limited on AWS, so topology is refreshed on a schedule and when a
    shard closes, not on every poll.
    """

    def __init__(
        self,
        clients: DynamoDBClients,
        stream_arn: str,
        stop: threading.Event,
        on_transient: Callable[[SyncError], None],
        topology_refresh_s: float = 30.0,
        page_limit: int = GET_RECORDS_LIMIT,
        bound: RetryBound = UNBOUNDED,
    ) -> None:
        self._clients = clients
        self._bound = bound
        self._page_limit = page_limit
        self.stream_arn = stream_arn
        self._stop = stop
        self._on_transient = on_transient
        self._refresh_s = topology_refresh_s
        self._shards: dict[str, _Shard] = {}
        self._next_refresh = 0.0
        self._topology_changed = False
        self._pool = ThreadPoolExecutor(MAX_PARALLEL_SHARDS, thread_name_prefix="get-records")

    # -- positions ---------------------------------------------------------------------------

    def start_at_latest(self) -> None:
        """Position every open shard at its tip, now (before a bootstrap scan starts).

        Closed shards hold only records older than the scan: they count as drained. The
        LATEST iterators are taken at once so that nothing written after this call is missed.
        """
        for desc in self._describe():
            shard = _Shard(desc["ShardId"], desc.get("ParentShardId"))
            if _is_closed(desc):
                shard.drained = True
            else:
                shard.start = "LATEST"
                shard.iterator = self._get_iterator(shard)
            self._shards[shard.shard_id] = shard
        self._next_refresh = time.monotonic() + self._refresh_s

    def start_at_oldest(self) -> None:
        """Position every shard the stream holds, closed ones too, at its oldest record
        (TRIM_HORIZON): parents are read before their children, as always."""
        for desc in self._describe():
            self._shards[desc["ShardId"]] = _Shard(desc["ShardId"], desc.get("ParentShardId"))
        self._next_refresh = time.monotonic() + self._refresh_s

    def resume(self, checkpoint: Checkpoint) -> None:
        """Continue from a stored checkpoint.

        Raises:
            RetentionExceeded: the checkpoint belongs to another stream (disabled and
                re-enabled), or an undrained shard of it is no longer in the stream.
        """
        if checkpoint.stream_arn != self.stream_arn:
            raise RetentionExceeded(
                f"the checkpoint is for stream {checkpoint.stream_arn}, but the table's stream "
                f"is now {self.stream_arn} (the stream was disabled and re-enabled)"
            )
        for pos in checkpoint.shards:
            self._shards[pos.shard_id] = _Shard(
                pos.shard_id, pos.parent_shard_id, pos.sequence_number, pos.drained
            )
        live = {d["ShardId"] for d in self._describe()}
        lost = [
            s.shard_id for s in self._shards.values() if not s.drained and s.shard_id not in live
        ]
        if lost:
            raise RetentionExceeded(
                f"shards {', '.join(sorted(lost))} of the checkpoint are no longer in stream "
                f"{self.stream_arn}: their records were trimmed (older than the retention)"
            )
        self._refresh_topology()

    def checkpoint(self, watermark: datetime | None) -> Checkpoint:
        """Every shard's position now, current up to ``watermark``."""
        positions = tuple(s.position(self.stream_arn) for s in self._shards.values())
        return Checkpoint(self.stream_arn, positions, watermark)

    @property
    def active_shards(self) -> int:
        return sum(1 for s in self._shards.values() if not s.drained)

    # -- polling -----------------------------------------------------------------------------

    def rounds(self) -> Generator[Poll, None, None]:
        """Poll rounds, one after another. After a round that brought records the next one is
        read (and parsed, which releases the GIL) while the caller applies this one, so a
        lagging stream keeps the network and the engine busy at once; an idle stream is not
        polled ahead, so the caller's wait between rounds holds."""
        with ThreadPoolExecutor(1, thread_name_prefix="poll-ahead") as ahead:
            pending: Future[Poll] | None = None
            while True:
                poll = pending.result() if pending is not None else self.poll()
                pending = ahead.submit(self.poll) if poll.records else None
                yield poll

    def poll(self, max_records: int = MAX_ROUND_RECORDS) -> Poll:
        """Read a page from every readable shard (parents drained), in parallel; shards that
        answered a full page are read again until the round holds ``max_records``."""
        result = Poll(self.stream_arn, time.time())
        if time.monotonic() >= self._next_refresh:
            self._refresh_topology()
        readable = [s for s in self._shards.values() if not s.drained and self._parent_done(s)]
        while readable:
            pages = list(self._pool.map(self._read_shard, readable))
            for shard, page in zip(readable, pages, strict=True):
                shard.empty_pages = 0 if page.count else shard.empty_pages + 1
                if page.count:
                    result.pages.append(page)
                if shard.empty_pages < EMPTY_PAGES_CAUGHT_UP and not shard.drained:
                    result.caught_up = False
                if shard.drained:
                    result.drained_shards += 1
            if result.drained_shards or result.records >= max_records:
                break
            readable = [
                s
                for s, p in zip(readable, pages, strict=True)
                if self._is_full(p) and not s.drained
            ]
        if result.drained_shards:
            # A closed shard is drained: its children may have appeared.
            self._refresh_topology()
            result.caught_up = False
        result.topology_changed, self._topology_changed = self._topology_changed, False
        result.positions = tuple(s.position(self.stream_arn) for s in self._shards.values())
        result.active_shards = self.active_shards
        return result

    def _is_full(self, page: RecordsPage) -> bool:
        return page.count >= self._page_limit or page.nbytes >= FULL_PAGE_BYTES

    def _parent_done(self, shard: _Shard) -> bool:
        parent = self._shards.get(shard.parent_id) if shard.parent_id else None
        return parent is None or parent.drained

    def _read_shard(self, shard: _Shard) -> RecordsPage:
        while True:
            if shard.iterator is None:
                shard.iterator = self._get_iterator(shard)
            iterator = shard.iterator
            try:
                page = retrying(
                    partial(self._get_records, iterator, shard.shard_id),
                    self._stop,
                    self._on_transient,
                    Backoff(),
                    self._bound,
                )
            except IteratorExpired:
                log.info(
                    "shard %s: iterator expired, resuming after the checkpoint", shard.shard_id
                )
                shard.iterator = None
                if shard.sequence_number is None:
                    shard.start = "TRIM_HORIZON"  # replay is safe: last writer wins
                continue
            if page.records is not None and page.count:
                shard.sequence_number = _last_sequence_number(page)
            shard.iterator = page.next_shard_iterator
            if page.next_shard_iterator is None:
                shard.drained = True
                log.info("shard %s drained", shard.shard_id)
            return page

    def _get_records(self, iterator: str, shard_id: str) -> RecordsPage:
        try:
            body = self._clients.streams.get_records(
                ShardIterator=iterator, Limit=self._page_limit
            )["RawBody"]
        except Exception as e:  # noqa: BLE001 - every boto error is classified at this boundary
            raise classify(e, f"GetRecords {self.stream_arn} shard {shard_id}") from e
        return parse_get_records(body)

    def _get_iterator(self, shard: _Shard) -> str:
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard.shard_id}
        if shard.sequence_number is not None:
            kwargs.update(
                ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.sequence_number
            )
        else:
            kwargs["ShardIteratorType"] = shard.start

        def call() -> str:
            try:
                return str(self._clients.streams.get_shard_iterator(**kwargs)["ShardIterator"])
            except Exception as e:  # noqa: BLE001 - classified at this boundary
                raise classify(
                    e, f"GetShardIterator {self.stream_arn} shard {shard.shard_id}"
                ) from e

        return retrying(call, self._stop, self._on_transient, Backoff(), self._bound)

    # -- topology ----------------------------------------------------------------------------

    def _describe(self) -> list[dict[str, Any]]:
        """Every shard of the stream (DescribeStream, all pages)."""
        shards: list[dict[str, Any]] = []
        start: str | None = None
        while True:
            kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
            if start:
                kwargs["ExclusiveStartShardId"] = start

            def call(kw: dict[str, Any] = kwargs) -> dict[str, Any]:
                try:
                    return dict(self._clients.streams.describe_stream(**kw)["StreamDescription"])
                except Exception as e:  # noqa: BLE001 - classified at this boundary
                    raise classify(e, f"DescribeStream {self.stream_arn}") from e

            desc = retrying(call, self._stop, self._on_transient, Backoff(), self._bound)
            shards.extend(desc.get("Shards", []))
            start = desc.get("LastEvaluatedShardId")
            if not start:
                return shards

    def _refresh_topology(self) -> None:
        described = self._describe()
        live = {d["ShardId"] for d in described}
        for desc in described:
            if desc["ShardId"] not in self._shards:
                self._topology_changed = True
                self._shards[desc["ShardId"]] = _Shard(desc["ShardId"], desc.get("ParentShardId"))
                log.info("new shard %s (parent %s)", desc["ShardId"], desc.get("ParentShardId"))
        for shard_id in [s for s, st in self._shards.items() if st.drained and s not in live]:
            del self._shards[shard_id]  # drained and gone from the stream: forget it
            self._topology_changed = True
        self._next_refresh = time.monotonic() + self._refresh_s

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _is_closed(desc: dict[str, Any]) -> bool:
    return bool(desc.get("SequenceNumberRange", {}).get("EndingSequenceNumber"))


def _last_sequence_number(page: RecordsPage) -> str:
    assert page.records is not None
    dynamodb = pc.struct_field(page.records, "dynamodb")
    return str(pc.struct_field(dynamodb, "SequenceNumber")[-1].as_py())
