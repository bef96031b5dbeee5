"""The loopback HTTP proxy: table requests go to the emulator untouched, stream requests
are answered from the virtual topology, and faults are injected on demand."""

from __future__ import annotations

import json
import math
import socket
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from .errors import StreamError, json_headers
from .faults import STREAMS, FaultInjector
from .service import Settings, StreamsService
from .upstream import DYNAMODB_PREFIX, STREAMS_PREFIX, Upstream, arn_table

_DEFAULT_MESSAGES = {
    "AccessDeniedException": "User is not authorized to perform this operation on the resource",
    "ResourceNotFoundException": "Requested resource not found",
    "LimitExceededException": "Too many requests are reading the same shard",
    "ThrottlingException": "Rate of requests exceeds the allowed throughput.",
    "ProvisionedThroughputExceededException": (
        "The level of configured provisioned throughput for the table was exceeded."
    ),
    "InternalServerError": "Internal server error",
    "ServiceUnavailable": "Service unavailable",
}


# DynamoDB charges a strongly consistent Scan one read capacity unit per 4 KB of the items it
# read (their sizes summed over the page, rounded up).
CAPACITY_UNIT_BYTES = 4096


@dataclass(frozen=True)
class ScanAnswer:
    """One Scan answered 200: when (``time.monotonic()``), how many items, and the read
    capacity units its ``ConsumedCapacity`` said (None when not asked for)."""

    at: float
    items: int
    capacity_units: float | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, proxy: StreamFaultProxy) -> None:
        self.proxy = proxy
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__((proxy.host, proxy.port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that stopped waiting for a held answer (its read timeout) leaves a closed
        # socket behind: not the proxy's error.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects
    timeout = 60
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle plus delayed ACKs
        # add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def do_POST(self) -> None:
        self.server.proxy._serve(self)

    do_GET = do_PUT = do_DELETE = do_HEAD = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(
        self, status: int, headers: list[tuple[str, str]] | dict[str, str], body: bytes
    ) -> None:
        self.send_response(status)
        items = headers.items() if isinstance(headers, dict) else headers
        for key, value in items:
            if key.lower() not in ("content-length", "server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reset(self) -> None:
        """Drop the connection with a TCP reset and no response at all."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


class StreamFaultProxy:
    """DynamoDB + DynamoDB Streams endpoint over an emulator, with a virtual shard lineage,
    iterator expiry, trimming and injected faults, controlled in-process by the test."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        **settings: Any,
    ) -> None:
        self.host, self.port = host, port
        self.upstream = Upstream(upstream)
        self.faults = FaultInjector(seed)
        self.settings = Settings()
        self.configure(**settings)
        self.service = StreamsService(self.upstream, self.faults, self.settings)
        self.requests: Counter[str] = Counter()  # received requests per operation
        self._requests_lock = threading.Lock()
        self._slow_scans: tuple[float, int] | None = None  # (seconds, above this Limit)
        self._capacity_by_size = False
        self.scans: list[ScanAnswer] = []  # every Scan answered 200, in order
        self._hold_exports = False
        self._cut_objects: list[int] = []  # S3 GET answers left to cut: bytes sent of each
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("proxy not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StreamFaultProxy:
        if self._server is None:
            self._server = _Server(self)
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with server.connections_lock:
            for conn in list(server.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StreamFaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- control ----------------------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Change Settings fields (iterator_ttl, retention, max_page_size, describe_order,
        empty_pages, max_records_per_page) while running."""
        known = {f.name for f in fields(Settings)}
        unknown = set(settings) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        for key, value in settings.items():
            setattr(self.settings, key, value)

    def set_fault_rates(self, op: str = STREAMS, **rates: float) -> None:
        """Random faults for `op` ("GetRecords", "Scan", ... or "*" for all streams ops)."""
        self.faults.set_rates(op, **rates)

    def force_error(
        self,
        op: str,
        code: str,
        table: str | None = None,
        times: int | None = None,
        message: str = "",
    ) -> None:
        """Answer `op` with error `code` (e.g. AccessDeniedException), `times` times or
        until clear_faults()."""
        self.faults.force_error(op, code, table, times, message)

    def clear_faults(self) -> None:
        self.faults.clear()
        self._slow_scans = None

    def hold_exports(self, hold: bool = True) -> None:
        """Answer DescribeExport with ExportStatus IN_PROGRESS whatever the emulator says: an
        export that takes as long as a real one (minutes at least)."""
        self._hold_exports = hold

    def cut_objects(self, *sent: int) -> None:
        """Cut the next S3 object downloads (GET answered 200 or 206) after ``sent[i]`` bytes
        of the body, then reset the connection: a download lost mid-object."""
        self._cut_objects.extend(sent)

    def slow_scans(self, seconds: float, above_limit: int) -> None:
        """Hold every Scan asking for more than `above_limit` items (or no Limit) `seconds`
        before answering it: a server whose page time grows with the page size."""
        self._slow_scans = (seconds, above_limit)

    def charge_capacity_by_size(self, on: bool = True) -> None:
        """Rewrite the ``ConsumedCapacity`` of Scan answers as DynamoDB charges a strongly
        consistent read (one unit per 4 KB of items, the page rounded up) instead of the
        emulator's flat 1.0 per request."""
        self._capacity_by_size = on

    @property
    def scanned_items(self) -> int:
        """Items answered by every Scan so far."""
        with self._requests_lock:
            return sum(answer.items for answer in self.scans)

    @property
    def fault_counts(self) -> Counter[str]:
        """Injected faults by kind: limit_exceeded, throttling, throughput_exceeded, http_500,
        http_503, reset, latency, empty_page, expired_iterator, trimmed_data_access and
        forced:<Code>."""
        return self.faults.counts

    def sync(self, table: str, region: str = "us-east-1") -> None:
        """Read the emulator's stream for `table` up to its current end."""
        self.service.current(table, region)

    def stream_arn(self, table: str, region: str = "us-east-1") -> str:
        return self.service.current(table, region).arn

    def split(
        self,
        table: str,
        children: int = 2,
        shard_ids: list[str] | None = None,
        region: str = "us-east-1",
    ) -> list[str]:
        """Close the open shards (or just `shard_ids`) at the current end of the stream and
        continue each in 1 or 2 children; returns the new shard ids."""
        with self.service.lock:
            stream = self.service.current(table, region)
            return stream.split(children, time.time(), shard_ids)

    def shards(self, table: str, region: str = "us-east-1") -> list[dict[str, Any]]:
        """Every shard ever created for the table's current stream, AWS-shaped, parents first."""
        with self.service.lock:
            return [s.to_json() for s in self.service.current(table, region).shards]

    def disable_stream(self, table: str, region: str = "us-east-1") -> str:
        """Close the table's stream (DISABLED); later writes are not streamed."""
        return self.service.disable(table, region).arn

    def enable_stream(self, table: str, region: str = "us-east-1") -> str:
        """Start a new stream (new label and ARN) for a disabled table; returns its ARN."""
        return self.service.enable(table, region).arn

    def reenable_stream(self, table: str, region: str = "us-east-1") -> str:
        """Disable then enable at once: the old ARN closes, a new ARN takes over."""
        with self.service.lock:
            self.disable_stream(table, region)
            return self.enable_stream(table, region)

    # ---- request path -----------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        target = handler.headers.get("X-Amz-Target", "")
        prefix, _, op = target.partition(".")
        streams = prefix == STREAMS_PREFIX
        with self._requests_lock:
            self.requests[op or handler.command] += 1
        auth = handler.headers.get("Authorization", "")
        if "Credential=" in auth:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            if len(scope) >= 3:
                self.upstream.authorization[scope[2]] = auth
        params: dict[str, Any] = {}
        if prefix in (STREAMS_PREFIX, DYNAMODB_PREFIX) and body:
            try:
                params = json.loads(body)
            except ValueError:
                params = {}
        decision, message = self.faults.decide(op, self._table_of(params), streams)
        if decision.delay:
            time.sleep(decision.delay)
        slow = self._slow_scans
        if slow and op == "Scan" and params.get("Limit", float("inf")) > slow[1]:
            time.sleep(slow[0])
        if decision.kind == "reset":
            handler.reset()
            return
        if decision.code:
            err = StreamError(decision.code, message or _DEFAULT_MESSAGES.get(decision.code, ""))
            self._send_error(handler, err)
            return
        try:
            if streams and op in ("DescribeStream", "GetShardIterator", "GetRecords"):
                result = self.service.handle(op, params, empty_page=decision.kind == "empty_page")
                self._send_json(handler, result)
                return
            status, headers, data = self.upstream.request(
                handler.command, handler.path, dict(handler.headers.items()), body
            )
        except StreamError as err:
            self._send_error(handler, err)
            return
        except OSError as exc:
            self._send_error(handler, StreamError("InternalServerError", f"upstream: {exc}"))
            return
        if handler.command == "GET" and status in (200, 206) and self._cut_objects and not op:
            sent = self._cut_objects.pop(0)
            handler.send_response(status)
            for key, value in headers:
                if key.lower() not in ("server", "date", "content-length"):
                    handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(data)))  # the whole body's
            handler.end_headers()
            handler.wfile.write(data[:sent])
            handler.wfile.flush()
            handler.reset()
            return
        if status == 200 and op == "Scan" and prefix == DYNAMODB_PREFIX:
            self._send_scan(handler, headers, data)
            return
        if status == 200 and self._hold_exports and op == "DescribeExport":
            answer = json.loads(data)
            answer["ExportDescription"]["ExportStatus"] = "IN_PROGRESS"
            self._send_json(handler, answer)
            return
        if status == 200 and target in (
            f"{DYNAMODB_PREFIX}.DescribeTable",
            f"{STREAMS_PREFIX}.ListStreams",
        ):
            answer = json.loads(data)
            rewrite = (
                self.service.rewrite_describe_table
                if op == "DescribeTable"
                else self.service.rewrite_list_streams
            )
            if rewrite(answer):
                self._send_json(handler, answer)
                return
        handler.reply(status, headers, data)

    def _send_scan(
        self, handler: _Handler, headers: list[tuple[str, str]] | dict[str, str], data: bytes
    ) -> None:
        answer = json.loads(data)
        items = answer.get("Items") or []
        consumed = answer.get("ConsumedCapacity")
        if isinstance(consumed, dict) and self._capacity_by_size:
            size = sum(len(json.dumps(item, separators=(",", ":"))) for item in items)
            consumed["CapacityUnits"] = float(max(1, math.ceil(size / CAPACITY_UNIT_BYTES)))
            data = json.dumps(answer).encode()
            headers = json_headers(data)
        units = consumed.get("CapacityUnits") if isinstance(consumed, dict) else None
        with self._requests_lock:
            self.scans.append(ScanAnswer(time.monotonic(), len(items), units))
        handler.reply(200, headers, data)

    @staticmethod
    def _table_of(params: dict[str, Any]) -> str | None:
        if isinstance(params.get("TableName"), str):
            return params["TableName"]
        for key in ("StreamArn", "ShardIterator"):
            value = params.get(key)
            if isinstance(value, str) and value.startswith("arn:"):
                try:
                    return arn_table(value)
                except IndexError:
                    return None
        return None

    @staticmethod
    def _send_json(handler: _Handler, result: dict[str, Any]) -> None:
        data = json.dumps(result).encode()
        handler.reply(200, json_headers(data), data)

    @staticmethod
    def _send_error(handler: _Handler, err: StreamError) -> None:
        data = err.body()
        handler.reply(err.status, json_headers(data), data)
