"""The DynamoDB Streams operations served from the virtual topology."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import StreamError
from .faults import FaultInjector
from .topology import Shard, Stream
from .upstream import STREAMS_PREFIX, Feed, Upstream, arn_region, arn_table

ORDERS = ("parents_first", "children_first", "hashed")


@dataclass
class Settings:
    """Knobs of the virtual stream service; AWS defaults unless a test changes them."""

    iterator_ttl: float = 900.0  # seconds until ExpiredIteratorException
    retention: float = 86400.0  # seconds a record stays readable
    max_page_size: int = 100  # DescribeStream shards per page, on top of Limit
    describe_order: str = "parents_first"  # or children_first / hashed
    empty_pages: int = 0  # empty GetRecords pages per fresh iterator on an open shard
    max_records_per_page: int = 1000  # GetRecords cap below the caller's Limit


def _order_key(order: str) -> Callable[[str], Any]:
    if order == "hashed":
        return lambda shard_id: hashlib.sha1(shard_id.encode()).hexdigest()
    return lambda shard_id: shard_id


def _not_found(what: str) -> StreamError:
    return StreamError("ResourceNotFoundException", f"Requested resource not found: {what}")


def _trimmed() -> StreamError:
    return StreamError(
        "TrimmedDataAccessException", "The data you are trying to access has been trimmed."
    )


def _invalid(message: str) -> StreamError:
    return StreamError("ValidationException", message)


def _seq_param(params: dict[str, Any]) -> int:
    value = params.get("SequenceNumber")
    if not isinstance(value, str) or not value.isdigit() or not 21 <= len(value) <= 40:
        raise StreamError("ValidationException", f"Invalid SequenceNumber: {value!r}")
    return int(value)


class StreamsService:
    """Virtual streams keyed by ARN, each fed from the emulator's shard for its table."""

    def __init__(
        self,
        upstream: Upstream,
        faults: FaultInjector,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.upstream = upstream
        self.faults = faults
        self.settings = settings
        self.clock = clock
        self.lock = threading.RLock()
        self.streams: dict[str, Stream] = {}
        self.feed_of: dict[str, Feed] = {}  # any stream ARN -> its feed
        self.feeds: dict[str, Feed] = {}  # emulator stream ARN -> feed
        self.lineage: dict[str, list[Stream]] = {}  # emulator stream ARN -> streams, oldest first

    # ---- registry -------------------------------------------------------------------

    def register(self, arn: str) -> Stream:
        """The virtual stream for `arn`, created on first sight from the emulator's view."""
        with self.lock:
            if arn in self.streams:
                return self.streams[arn]
            if not isinstance(arn, str) or arn.count(":") < 5 or "/stream/" not in arn:
                raise StreamError("ValidationException", f"Invalid StreamArn: {arn!r}")
            desc = self.upstream.call(
                arn_region(arn), f"{STREAMS_PREFIX}.DescribeStream", {"StreamArn": arn}
            )["StreamDescription"]
            if desc.get("StreamLabel") != arn.rsplit("/", 1)[-1] or not desc.get("Shards"):
                raise _not_found(f"Stream: {arn} not found")
            feed = Feed(self.upstream, arn, desc)
            stream = Stream(arn, desc, feed.start_seq, self.clock(), self._hash_key(desc))
            stream.created = float(desc.get("CreationRequestDateTime") or stream.created)
            self.feeds[arn] = feed
            self.feed_of[arn] = feed
            self.streams[arn] = stream
            self.lineage[arn] = [stream]
            return stream

    @staticmethod
    def _hash_key(desc: dict[str, Any]) -> str | None:
        for key in desc.get("KeySchema", []):
            if key.get("KeyType") == "HASH":
                return str(key["AttributeName"])
        return None

    def current(self, table: str, region: str) -> Stream:
        """The table's latest virtual stream (enabled or not)."""
        with self.lock:
            table_desc = self.upstream.call(
                region, "DynamoDB_20120810.DescribeTable", {"TableName": table}
            )["Table"]
            real = table_desc.get("LatestStreamArn")
            if not real:
                raise ValueError(f"table {table} has no stream")
            self.register(real)
            stream = self.lineage[real][-1]
            self.sync(stream)
            return stream

    def sync(self, stream: Stream) -> None:
        """Bring every stream sharing `stream`'s feed up to the emulator's current end."""
        with self.lock:
            feed = self.feed_of[stream.arn]
            latest = self.lineage[feed.arn][-1]

            def deliver(body: dict[str, Any], created: float) -> None:
                if latest.enabled:  # records written while disabled are never streamed
                    latest.add(body, created)

            feed.catch_up(deliver)

    def _check_feed(self, stream: Stream) -> None:
        feed = self.feed_of[stream.arn]
        if not feed.check_alive():
            now = self.clock()
            for s in self.lineage[feed.arn]:
                if s.enabled:
                    s.disable(now)

    # ---- control ----------------------------------------------------------------------

    def disable(self, table: str, region: str) -> Stream:
        with self.lock:
            stream = self.current(table, region)
            if stream.enabled:
                stream.disable(self.clock())
            return stream

    def enable(self, table: str, region: str) -> Stream:
        """A new stream (new label and ARN) over the same emulator shard; the old one stays
        readable, closed, as AWS keeps a disabled stream for 24 hours."""
        with self.lock:
            old = self.current(table, region)
            if old.enabled:
                raise ValueError(f"stream of {table} is already enabled")
            feed = self.feed_of[old.arn]
            now = self.clock()
            label = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
            while any(s.label == label for s in self.lineage[feed.arn]):
                now += 0.000001
                label = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
            arn = f"{old.arn.rsplit('/', 1)[0]}/{label}"
            desc = dict(
                feed.description, StreamArn=arn, StreamLabel=label, CreationRequestDateTime=now
            )
            stream = Stream(arn, desc, feed.next_seq(), now, old.hash_key)
            self.streams[arn] = stream
            self.feed_of[arn] = feed
            self.lineage[feed.arn].append(stream)
            return stream

    # ---- operations -------------------------------------------------------------------

    def handle(self, op: str, params: dict[str, Any], empty_page: bool = False) -> dict[str, Any]:
        with self.lock:
            if op == "DescribeStream":
                return self.describe_stream(params)
            if op == "GetShardIterator":
                return self.get_shard_iterator(params)
            if op == "GetRecords":
                return self.get_records(params, empty_page)
            raise StreamError("UnknownOperationException", f"Unknown operation {op}")

    def describe_stream(self, params: dict[str, Any]) -> dict[str, Any]:
        stream = self.register(params.get("StreamArn", ""))
        self._check_feed(stream)
        self.sync(stream)
        limit = params.get("Limit")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise StreamError("ValidationException", "Limit must be at least 1")
        page_size = min(limit or 100, 100, max(1, self.settings.max_page_size))
        shards = stream.visible(self.clock() - self.settings.retention)
        flt = params.get("ShardFilter")
        if flt is not None:
            if flt.get("Type") != "CHILD_SHARDS" or not flt.get("ShardId"):
                raise StreamError(
                    "ValidationException", "ShardFilter needs Type CHILD_SHARDS and a ShardId"
                )
            shards = [s for s in shards if s.parent_id == flt["ShardId"]]
        order = self.settings.describe_order
        if order not in ORDERS:
            raise ValueError(f"describe_order must be one of {ORDERS}")
        key = _order_key(order)
        reverse = order == "children_first"
        shards.sort(key=lambda s: key(s.shard_id), reverse=reverse)
        start = params.get("ExclusiveStartShardId")
        if start:
            mark = key(start)
            shards = [
                s for s in shards if (key(s.shard_id) < mark if reverse else key(s.shard_id) > mark)
            ]
        page = shards[:page_size]
        desc = dict(
            self.feed_of[stream.arn].description,
            StreamArn=stream.arn,
            StreamLabel=stream.label,
            StreamStatus="ENABLED" if stream.enabled else "DISABLED",
            CreationRequestDateTime=stream.created,
            Shards=[s.to_json() for s in page],
        )
        if page and len(page) == page_size:  # as on AWS, may also be set on the last page
            desc["LastEvaluatedShardId"] = page[-1].shard_id
        return {"StreamDescription": desc}

    def _shard(self, stream: Stream, shard_id: Any) -> Shard:
        shard = stream.by_id.get(shard_id) if isinstance(shard_id, str) else None
        if shard is None or shard.vanished(self.clock() - self.settings.retention):
            raise _not_found(f"Shard: {shard_id} in Stream: {stream.arn} not found")
        return shard

    def _latest(self, stream: Stream, shard: Shard) -> int:
        if shard.end_seq is not None:
            return shard.end_seq + 1
        return self.feed_of[stream.arn].next_seq()

    def get_shard_iterator(self, params: dict[str, Any]) -> dict[str, Any]:
        stream = self.register(params.get("StreamArn", ""))
        self.sync(stream)
        shard = self._shard(stream, params.get("ShardId"))
        now = self.clock()
        cutoff = now - self.settings.retention
        kind = params.get("ShardIteratorType")
        if kind == "TRIM_HORIZON":
            pos = shard.horizon(cutoff)
        elif kind == "LATEST":
            pos = self._latest(stream, shard)
        elif kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            seq = _seq_param(params)
            if seq < shard.start_seq or (shard.end_seq is not None and seq > shard.end_seq):
                raise StreamError(
                    "ValidationException",
                    f"Invalid SequenceNumber {seq} for shard {shard.shard_id}",
                )
            i = shard.index_at(seq)
            if i < len(shard.seqs) and shard.seqs[i] == seq and shard.records[i].created < cutoff:
                raise _trimmed()
            pos = seq if kind == "AT_SEQUENCE_NUMBER" else seq + 1
            if shard.trimmed_at(pos, cutoff):
                raise _trimmed()
        elif kind == "AT_TIMESTAMP":
            ts = params.get("Timestamp")
            if not isinstance(ts, int | float):
                raise StreamError("ValidationException", "AT_TIMESTAMP needs a Timestamp")
            if ts > now + 1:
                raise StreamError("ValidationException", "Timestamp is in the future")
            if ts < cutoff:
                pos = shard.horizon(cutoff)
            else:
                later = [r.seq for r in shard.records if r.created >= ts]
                pos = later[0] if later else self._latest(stream, shard)
        else:
            raise StreamError("ValidationException", f"Invalid ShardIteratorType: {kind!r}")
        empty = self.settings.empty_pages if shard.is_open else 0
        return {"ShardIterator": self.encode(stream, shard, pos, now, empty)}

    def encode(self, stream: Stream, shard: Shard, pos: int, now: float, empty: int) -> str:
        state = [shard.shard_id, pos, round(now, 3), empty, os.urandom(4).hex()]
        token = base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")
        return f"{stream.arn}|1|{token}"

    def decode(self, iterator: Any) -> tuple[Stream, str, int, float, int]:
        try:
            arn, version, token = iterator.split("|")
            state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            shard_id, pos, issued, empty, _ = state
            if version != "1" or not isinstance(pos, int):
                raise ValueError(version)
        except (AttributeError, ValueError, TypeError, binascii.Error) as exc:
            raise StreamError("ValidationException", "Invalid ShardIterator") from exc
        stream = self.streams.get(arn)
        if stream is None:
            raise _not_found(f"Stream: {arn} not found")
        return stream, shard_id, pos, float(issued), int(empty)

    def get_records(self, params: dict[str, Any], empty_page: bool = False) -> dict[str, Any]:
        limit = params.get("Limit", 1000)
        if not isinstance(limit, int) or limit < 1:
            raise StreamError("ValidationException", "Limit must be at least 1")
        if limit > 1000:
            raise StreamError("LimitExceededException", "GetRecords Limit must not exceed 1000")
        stream, shard_id, pos, issued, empty = self.decode(params.get("ShardIterator"))
        now = self.clock()
        ttl = self.settings.iterator_ttl
        if now - issued > ttl:
            self.faults.count("GetRecords", "expired_iterator")
            raise StreamError(
                "ExpiredIteratorException",
                f"Iterator expired. The iterator was created at time {issued:.3f} while right now "
                f"it is {now:.3f} which is further in the future than the tolerated delay of "
                f"{int(ttl * 1000)} milliseconds.",
            )
        self.sync(stream)
        shard = stream.by_id.get(shard_id)
        if shard is None:
            raise _not_found(f"Shard: {shard_id} not found")
        cutoff = now - self.settings.retention
        if shard.trimmed_at(pos, cutoff):
            self.faults.count("GetRecords", "trimmed_data_access")
            raise _trimmed()
        i = shard.index_at(pos)
        pending = i < len(shard.records)
        if (empty > 0 and shard.is_open) or (empty_page and pending):
            if pending:
                self.faults.count("GetRecords", "empty_page")
            return {
                "Records": [],
                "NextShardIterator": self.encode(stream, shard, pos, now, max(0, empty - 1)),
            }
        cap = min(limit, max(1, self.settings.max_records_per_page))
        records = shard.records[i : i + cap]
        out: dict[str, Any] = {"Records": [r.body for r in records]}
        at_end = not shard.is_open and i + len(records) >= len(shard.records)
        if not at_end:
            next_pos = records[-1].seq + 1 if records else pos
            out["NextShardIterator"] = self.encode(stream, shard, next_pos, now, 0)
        return out

    # ---- rewriting of passed-through answers ------------------------------------------

    def _history(self, real_arn: str) -> list[Stream] | None:
        """The table's streams when they differ from what the emulator reports, else None."""
        streams = self.lineage.get(real_arn)
        if not streams or (len(streams) == 1 and streams[0].enabled):
            return None
        return streams

    def rewrite_describe_table(self, body: dict[str, Any]) -> bool:
        with self.lock:
            table = body.get("Table", {})
            streams = self._history(table.get("LatestStreamArn", ""))
            if streams is None:
                return False
            latest = streams[-1]
            table["LatestStreamArn"], table["LatestStreamLabel"] = latest.arn, latest.label
            if not latest.enabled:
                table.pop("StreamSpecification", None)
            return True

    def rewrite_list_streams(self, body: dict[str, Any]) -> bool:
        with self.lock:
            changed, out = False, []
            for entry in body.get("Streams", []):
                streams = self._history(entry.get("StreamArn", ""))
                if streams is None:
                    out.append(entry)
                    continue
                changed = True
                out.extend(
                    {"StreamArn": s.arn, "TableName": arn_table(s.arn), "StreamLabel": s.label}
                    for s in reversed(streams)
                )
            body["Streams"] = out
            return changed
