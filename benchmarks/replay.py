"""DynamoDB clients that answer from recorded response bodies, in process.

They stand where boto3's clients stand in :class:`sync.dynamodb.client.DynamoDBClients`, so
the product's own Scan and stream readers (threads, read-ahead, rounds) run unchanged on
replayed bodies, without an HTTP server competing for the machine's cores.
"""

from __future__ import annotations

import io
import json
from typing import Any

STREAM_ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/orders/stream/2026-11-24T00:00:00.000"
SHARD_ID = "shardId-00000001795520000000-bench0001"
_EMPTY_SCAN = b'{"Items": [], "Count": 0, "ScannedCount": 0}'


class ReplayScan:
    """``scan`` of a table whose pages are ``bodies``, dealt to segments in turn."""

    def __init__(self, bodies: list[bytes]) -> None:
        self._bodies = bodies
        # A body's LastEvaluatedKey names the page after it (in the same segment).
        self._after: dict[str, int] = {}
        for n, body in enumerate(bodies):
            last = json.loads(body).get("LastEvaluatedKey")
            if last is not None:
                self._after[json.dumps(last, sort_keys=True)] = n

    @property
    def pages(self) -> int:
        return len(self._bodies)

    def scan(self, **request: Any) -> dict[str, Any]:
        segment = request.get("Segment", 0)
        segments = request.get("TotalSegments", 1)
        start = request.get("ExclusiveStartKey")
        n = segment if start is None else self._after[json.dumps(start, sort_keys=True)] + segments
        return {"RawBody": self._bodies[n] if n < len(self._bodies) else _EMPTY_SCAN}


class ReplayS3:
    """``get_object`` of objects held in memory (``Range`` honoured), as an S3 client answers
    it: the export reader runs unchanged, without an HTTP server."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self._objects = objects

    def get_object(self, Bucket: str, Key: str, Range: str | None = None) -> dict[str, Any]:  # noqa: N803
        data = self._objects[Key]
        if Range is not None:
            data = data[int(Range.removeprefix("bytes=").rstrip("-")) :]
        return {"Body": io.BytesIO(data), "ContentLength": len(data)}


class ReplayStreams:
    """A stream of one open shard whose GetRecords pages are ``bodies``, then empty pages.

    Iterators are ``it-<page>``; each body's ``NextShardIterator`` is rewritten to the next.
    """

    def __init__(self, bodies: list[bytes]) -> None:
        self._bodies = [_with_next_iterator(body, n + 1) for n, body in enumerate(bodies)]

    def describe_stream(self, **request: Any) -> dict[str, Any]:
        shard = {"ShardId": SHARD_ID, "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
        return {"StreamDescription": {"StreamArn": STREAM_ARN, "Shards": [shard]}}

    def get_shard_iterator(self, **request: Any) -> dict[str, Any]:
        return {"ShardIterator": "it-0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803
        n = int(ShardIterator.removeprefix("it-"))
        if n < len(self._bodies):
            return {"RawBody": self._bodies[n]}
        return {"RawBody": json.dumps({"Records": [], "NextShardIterator": f"it-{n}"}).encode()}


def _with_next_iterator(body: bytes, n: int) -> bytes:
    page = json.loads(body)
    page["NextShardIterator"] = f"it-{n}"
    return json.dumps(page).encode()
