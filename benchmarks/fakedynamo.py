"""A minimal DynamoDB + DynamoDB Streams endpoint for runs the emulator is too slow for.

It answers the six calls the runtime makes — DescribeTable, Scan (parallel segments),
DescribeStream, GetShardIterator, GetRecords, over the JSON protocol on HTTP — for tables
given on the command line. Scan pages are built from a few pre-serialised template pages of
:func:`benchmarks.bodies.item` items whose keys are rewritten per page, so a million-item scan
costs the endpoint almost nothing. Every table has one open shard whose GetRecords pages are
empty: the stream is idle. Run as its own process:

    python -m benchmarks.fakedynamo --port 5006 --table orders=1000000 --table t=0:id:N
"""

from __future__ import annotations

import argparse
import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from benchmarks.bodies import item

PAGE_ITEMS = 2000
TEMPLATES = 8
KEY = "order_id"
SHARD_ID = "shardId-00000001795520000000-bench0001"
SEQUENCE_NUMBER = "100000000000000000001"  # DynamoDB sequence numbers are 21+ digits
_MARK = b"QQQQQQ"  # six characters standing for the page number in a template's keys


def stream_arn(table: str) -> str:
    return f"arn:aws:dynamodb:us-east-1:000000000000:table/{table}/stream/2026-11-24T00:00:00.000"


def _templates() -> list[bytes]:
    """Serialised ``Items`` arrays whose keys read ``o-QQQQQQ-<n>``."""
    rng = random.Random(11)
    pages = []
    for _ in range(TEMPLATES):
        items = []
        for n in range(PAGE_ITEMS):
            value = item(rng, 0, 1)
            value[KEY] = {"S": f"o-{_MARK.decode()}-{n:04d}"}
            items.append(value)
        text = json.dumps(items).encode()
        assert text.count(_MARK) == PAGE_ITEMS
        pages.append(text)
    return pages


class FakeDynamo:
    def __init__(self, tables: dict[str, int], keys: dict[str, tuple[str, str]]) -> None:
        self.tables = tables  # name → item count (rounded up to whole pages when scanned)
        self.keys = keys  # name → (key attribute, its type S | N | B)
        self._templates: list[bytes] = []  # made on the first Scan
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}

    def pages(self, table: str) -> int:
        return -(-self.tables[table] // PAGE_ITEMS)

    def handle(self, operation: str, request: dict[str, Any]) -> dict[str, Any] | bytes:
        self.requests[operation] = self.requests.get(operation, 0) + 1
        if operation == "DescribeTable":
            return self._describe_table(request["TableName"])
        if operation == "Scan":
            return self._scan(request)
        if operation == "DescribeStream":
            table = request["StreamArn"].split("/")[1]
            key = self.keys.get(table, (KEY, "S"))[0]
            return {
                "StreamDescription": {
                    "StreamArn": request["StreamArn"],
                    "StreamLabel": "2026-11-24T00:00:00.000",
                    "StreamStatus": "ENABLED",
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                    "TableName": table,
                    "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                    "Shards": [
                        {
                            "ShardId": SHARD_ID,
                            "SequenceNumberRange": {"StartingSequenceNumber": SEQUENCE_NUMBER},
                        }
                    ],
                }
            }
        if operation == "GetShardIterator":
            return {"ShardIterator": f"{request['StreamArn']}|{request['ShardId']}"}
        if operation == "GetRecords":
            return {"Records": [], "NextShardIterator": request["ShardIterator"]}
        raise KeyError(operation)

    def _describe_table(self, name: str) -> dict[str, Any]:
        if name not in self.tables:
            raise LookupError(name)
        key, key_type = self.keys.get(name, (KEY, "S"))
        return {
            "Table": {
                "TableName": name,
                "TableStatus": "ACTIVE",
                "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": key, "AttributeType": key_type}],
                "ItemCount": self.tables[name],
                "TableSizeBytes": self.tables[name] * 700,
                "StreamSpecification": {
                    "StreamEnabled": True,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "LatestStreamArn": stream_arn(name),
                "LatestStreamLabel": "2026-11-24T00:00:00.000",
            }
        }

    def _scan(self, request: dict[str, Any]) -> bytes:
        table = request["TableName"]
        if table not in self.tables:
            raise LookupError(table)
        segments = int(request.get("TotalSegments", 1))
        start = request.get("ExclusiveStartKey")
        if start:
            page = int(re.match(r"o-(\d+)-", start[KEY]["S"]).group(1)) + segments  # type: ignore[union-attr]
        else:
            page = int(request.get("Segment", 0))
        if page >= self.pages(table):
            return b'{"Items": [], "Count": 0, "ScannedCount": 0}'
        with self._lock:
            if not self._templates:
                self._templates = _templates()
        items = self._templates[page % TEMPLATES].replace(_MARK, b"%06d" % page)
        last = b""
        if page + segments < self.pages(table):
            key = f"o-{page:06d}-{PAGE_ITEMS - 1:04d}"
            last = b', "LastEvaluatedKey": {"%s": {"S": "%s"}}' % (KEY.encode(), key.encode())
        count = b"%d" % PAGE_ITEMS
        return (
            b'{"Items": '
            + items
            + b', "Count": '
            + count
            + b', "ScannedCount": '
            + count
            + last
            + b"}"
        )


def serve(port: int, tables: dict[str, int], keys: dict[str, tuple[str, str]]) -> None:
    fake = FakeDynamo(tables, keys)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's pool expects

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            operation = self.headers.get("X-Amz-Target", ".").split(".", 1)[1]
            try:
                answer = fake.handle(operation, json.loads(body or b"{}"))
                status = 200
            except LookupError as e:
                answer = {
                    "__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException",
                    "message": f"Requested resource not found: {e}",
                }
                status = 400
            except KeyError as e:
                answer = {"__type": "UnknownOperationException", "message": str(e)}
                status = 400
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "bench")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--table",
        action="append",
        default=[],
        metavar="NAME=ITEMS[:KEY:TYPE]",
        help=f"a table to serve (key: {KEY}, a string, unless given)",
    )
    args = parser.parse_args()
    tables, keys = {}, {}
    for spec in args.table:
        name, _, rest = spec.partition("=")
        items, _, key = rest.partition(":")
        tables[name] = int(items or 0)
        if key:
            attribute, _, key_type = key.partition(":")
            keys[name] = (attribute, key_type or "S")
    serve(args.port, tables, keys)


if __name__ == "__main__":
    main()
