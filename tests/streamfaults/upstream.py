"""Plain HTTP access to the emulator, and the feed that copies its single stream shard
into the virtual streams."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .errors import StreamError

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
STREAMS_PREFIX = "DynamoDBStreams_20120810"
DYNAMODB_PREFIX = "DynamoDB_20120810"


class Upstream:
    """Forwards raw requests to the emulator and makes the proxy's own JSON calls to it."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.netloc = parts.netloc
        self.timeout = timeout
        self.authorization: dict[str, str] = {}  # region -> last client Authorization header

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            out = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            out["Host"] = self.netloc
            out["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=out)
            resp = conn.getresponse()
            data = resp.read()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            return resp.status, kept, data
        finally:
            conn.close()

    def call(self, region: str, target: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One JSON call; a non-200 answer is raised as the StreamError it carries."""
        auth = self.authorization.get(region) or (
            f"AWS4-HMAC-SHA256 Credential=test/20200101/{region}/dynamodb/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-target, Signature=0"
        )
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": target,
            "Authorization": auth,
        }
        status, _, data = self.request("POST", "/", headers, json.dumps(payload).encode())
        if status != 200:
            try:
                err = json.loads(data)
                code = str(err.get("__type", "")).rsplit("#", 1)[-1] or "InternalServerError"
                message = str(err.get("message") or err.get("Message") or "")
            except ValueError:
                code, message = "InternalServerError", data[:200].decode(errors="replace")
            raise StreamError(code, message, status)
        return json.loads(data) if data else {}


def arn_region(arn: str) -> str:
    return arn.split(":")[3]


def arn_table(arn: str) -> str:
    """Table name from a table, stream or iterator ARN."""
    return arn.split(":", 5)[5].split("/")[1].split("|")[0]


class Feed:
    """The emulator's stream for one table (its real ARN), read incrementally.

    The emulator's iterators never expire and pin the shard they were made for, so the
    feed keeps one and resumes from it; records go to the stream currently enabled."""

    def __init__(self, upstream: Upstream, arn: str, description: dict[str, Any]) -> None:
        self.upstream = upstream
        self.arn = arn
        self.region = arn_region(arn)
        self.table = arn_table(arn)
        self.description = description
        self.shard_id: str = description["Shards"][0]["ShardId"]
        self.start_seq = int(
            description["Shards"][0]["SequenceNumberRange"]["StartingSequenceNumber"]
        )
        self.last_seq: int | None = None
        self.dead = False
        self._iterator: str | None = None

    def next_seq(self) -> int:
        return self.last_seq + 1 if self.last_seq is not None else self.start_seq

    def _target(self, op: str) -> str:
        return f"{STREAMS_PREFIX}.{op}"

    def catch_up(self, deliver: Callable[[dict[str, Any], float], None]) -> int:
        """Read every record the emulator has past the last one seen; returns how many."""
        if self.dead:
            return 0
        if self._iterator is None:
            self._iterator = self.upstream.call(
                self.region,
                self._target("GetShardIterator"),
                {
                    "StreamArn": self.arn,
                    "ShardId": self.shard_id,
                    "ShardIteratorType": "TRIM_HORIZON",
                },
            )["ShardIterator"]
        total = 0
        while True:
            page = self.upstream.call(
                self.region,
                self._target("GetRecords"),
                {"ShardIterator": self._iterator, "Limit": 1000},
            )
            records = page.get("Records", [])
            for record in records:
                seq = int(record["dynamodb"]["SequenceNumber"])
                if self.last_seq is not None and seq <= self.last_seq:
                    continue
                self.last_seq = seq
                created = record["dynamodb"].get("ApproximateCreationDateTime")
                deliver(record, float(created) if created is not None else time.time())
                total += 1
            if page.get("NextShardIterator"):
                self._iterator = page["NextShardIterator"]
            if not records:
                return total

    def check_alive(self) -> bool:
        """False once the emulator no longer has this stream as the table's latest one."""
        if self.dead:
            return False
        try:
            desc = self.upstream.call(
                self.region, self._target("DescribeStream"), {"StreamArn": self.arn}
            )["StreamDescription"]
        except StreamError as exc:
            if exc.code != "ResourceNotFoundException":
                raise
            self.dead = True
            return False
        if desc.get("StreamLabel") != self.description.get("StreamLabel"):
            self.dead = True
        return not self.dead
