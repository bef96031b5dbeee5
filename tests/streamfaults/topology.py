"""A virtual DynamoDB Streams topology (shard lineage, trimming, positions) over the records
of the emulator's single shard. Pure data: no I/O, times are passed in."""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

HASH_SPACE = 1 << 32


def key_hash(keys: dict[str, Any], hash_key: str | None) -> int:
    """Stable position of an item in the hash space: by its partition key, as DynamoDB does,
    so one item (and one partition) always lands in the same branch of the lineage."""
    value = keys.get(hash_key) if hash_key else None
    text = json.dumps(value if value is not None else keys, sort_keys=True)
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:4], "big")


@dataclass
class Record:
    seq: int
    created: float  # ApproximateCreationDateTime, epoch seconds; drives trimming
    body: dict[str, Any]


@dataclass
class Shard:
    shard_id: str
    parent_id: str | None
    lo: int  # hash range [lo, hi) this shard receives while open
    hi: int
    start_seq: int
    created: float
    end_seq: int | None = None
    closed: float | None = None
    records: list[Record] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.end_seq is None

    def to_json(self) -> dict[str, Any]:
        rng = {"StartingSequenceNumber": str(self.start_seq)}
        if self.end_seq is not None:
            rng["EndingSequenceNumber"] = str(self.end_seq)
        out: dict[str, Any] = {"ShardId": self.shard_id, "SequenceNumberRange": rng}
        if self.parent_id:
            out["ParentShardId"] = self.parent_id
        return out

    def index_at(self, pos: int) -> int:
        """Index of the first record a reader at position `pos` gets next."""
        return bisect.bisect_left(self.seqs, pos)

    def trimmed_at(self, pos: int, cutoff: float) -> bool:
        """Whether the next record for a reader at `pos` has already been trimmed."""
        i = self.index_at(pos)
        return i < len(self.records) and self.records[i].created < cutoff

    def horizon(self, cutoff: float) -> int:
        """Position of the oldest untrimmed record (or just past the last one)."""
        i = bisect.bisect_left(self.records, cutoff, key=lambda r: r.created)
        if i < len(self.records):
            return self.records[i].seq
        return self.records[-1].seq + 1 if self.records else self.start_seq

    def vanished(self, cutoff: float) -> bool:
        """Closed longer than the retention and holding nothing readable: AWS drops it."""
        if self.closed is None or self.closed >= cutoff:
            return False
        return not self.records or self.records[-1].created < cutoff


class Stream:
    """One stream ARN: its description and its tree of shards."""

    def __init__(
        self,
        arn: str,
        description: dict[str, Any],
        start_seq: int,
        now: float,
        hash_key: str | None,
    ) -> None:
        self.arn = arn
        self.label = arn.rsplit("/", 1)[-1]
        self.description = description
        self.hash_key = hash_key
        self.enabled = True
        self.created = now
        self.last_seq: int | None = None
        self.shards: list[Shard] = []
        self.by_id: dict[str, Shard] = {}
        self._last_ms = 0
        self._new_shard(None, 0, HASH_SPACE, start_seq, now)

    def _new_shard(self, parent: str | None, lo: int, hi: int, start: int, now: float) -> Shard:
        # Milliseconds strictly increase per stream, so ids sort in creation order as on AWS.
        self._last_ms = max(int(now * 1000), self._last_ms + 1)
        suffix = hashlib.sha1(f"{self.arn}#{len(self.shards)}".encode()).hexdigest()[:8]
        shard = Shard(f"shardId-{self._last_ms:020d}-{suffix}", parent, lo, hi, start, now)
        self.shards.append(shard)
        self.by_id[shard.shard_id] = shard
        return shard

    def open_shards(self) -> list[Shard]:
        return [s for s in self.shards if s.is_open]

    def add(self, body: dict[str, Any], created: float) -> None:
        """Route one emulator record to the open shard owning its key's hash."""
        seq = int(body["dynamodb"]["SequenceNumber"])
        self.last_seq = seq
        h = key_hash(body["dynamodb"].get("Keys", {}), self.hash_key)
        for shard in self.open_shards():
            if shard.lo <= h < shard.hi:
                shard.records.append(Record(seq, created, body))
                shard.seqs.append(seq)
                return
        raise AssertionError(f"no open shard of {self.arn} covers hash {h}")

    def _end(self, shard: Shard) -> int:
        return max(shard.start_seq, self.last_seq if self.last_seq is not None else 0)

    def split(self, children: int, now: float, shard_ids: list[str] | None = None) -> list[str]:
        """Close the given (default: all) open shards at the current end of the stream and
        open 1 or 2 children each, splitting the parent's hash range between them."""
        if children not in (1, 2):
            raise ValueError("children must be 1 or 2")
        if not self.enabled:
            raise ValueError(f"stream {self.arn} is disabled")
        targets = [s for s in self.open_shards() if shard_ids is None or s.shard_id in shard_ids]
        start = (self.last_seq + 1) if self.last_seq is not None else None
        created: list[str] = []
        for parent in targets:
            parent.end_seq, parent.closed = self._end(parent), now
            child_start = start if start is not None else parent.end_seq
            bounds = [parent.lo, parent.hi]
            if children == 2 and parent.hi - parent.lo > 1:
                bounds = [parent.lo, (parent.lo + parent.hi) // 2, parent.hi]
            for lo, hi in zip(bounds, bounds[1:], strict=False):
                created.append(self._new_shard(parent.shard_id, lo, hi, child_start, now).shard_id)
        return created

    def disable(self, now: float) -> None:
        """Disabling a stream closes every shard; the stream stays readable until trimmed."""
        for shard in self.open_shards():
            shard.end_seq, shard.closed = self._end(shard), now
        self.enabled = False

    def visible(self, cutoff: float) -> list[Shard]:
        return [s for s in self.shards if not s.vanished(cutoff)]
