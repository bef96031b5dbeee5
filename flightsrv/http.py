"""HTTP endpoints: ``/health``, ``/v1/ready``, ``/v1/datasets``, ``/v1/status``, and
``POST /v1/sql`` (:mod:`flightsrv.sqlhttp`).

With API keys configured, every path but the public ones (``/health`` and ``/v1/ready``, for
probes) answers 401 unless the request carries a key (see :mod:`flightsrv.auth`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flightsrv import sqlhttp
from flightsrv.auth import ApiKeys, Headers
from sync.pipeline import DatasetSync, RefreshElsewhere
from sync.status import SCANNING, DatasetStatus, State

log = logging.getLogger(__name__)

DISTRIBUTION = "dynamirror"


def runtime_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def dataset_json(dataset: DatasetSync) -> dict[str, Any]:
    """One dataset as ``/v1/datasets`` shows it (Spice's keys first, then the sync's)."""
    status = dataset.status()
    settings = dataset.settings
    return {
        "from": f"dynamodb:{settings.source.table}",
        "name": settings.name,
        "replication_enabled": False,
        "acceleration_enabled": True,
        "status": status.state.value,
        "table": settings.source.table,
        "engine": settings.acceleration.engine,
        "mode": settings.acceleration.mode,
        "lag_ms": status.lag_ms,
        "rows": _rows(dataset),
        "error": status.error,
        "since": status.since,
        "shards_active": status.shards_active,
        "records_consumed": status.records_consumed,
        "errors_transient": status.errors_transient,
        "last_checkpoint_at": status.last_checkpoint_at,
        "bootstrap": status.to_json()["bootstrap"],
        **_sync_role(status),
    }


def _sync_role(status: DatasetStatus) -> dict[str, Any]:
    """Who syncs the dataset: this runtime, or (on a shared engine) which other one."""
    return {
        "role": status.role,
        "synced_by": status.synced_by,
        "synced_since": status.synced_since,
        "commits": status.commits,
    }


def status_json(status: DatasetStatus, rows: int | None) -> dict[str, Any]:
    """One dataset as ``/v1/status`` shows it: its state in words, progress and counters.

    ``reason`` is why the dataset is not Ready (None when it is); ``bootstrap`` is set only
    while it scans (a first bootstrap or a re-bootstrap), with ``percent`` of DescribeTable's
    approximate item count and ``eta_s`` (None until a rate is known).
    """
    bootstrap = None
    if status.state in SCANNING and status.bootstrap is not None:
        progress = status.bootstrap
        bootstrap = {
            "items": progress.items,
            "expected": progress.expected,
            "percent": round(progress.percent, 1),
            "rate_per_s": round(progress.rate_per_s, 1),
            "eta_s": None if progress.eta_s is None else round(progress.eta_s, 1),
            "started_at": progress.started_at,
        }
    return {
        "name": status.name,
        "from": f"dynamodb:{status.table}",
        "engine": status.engine,
        "mode": status.mode,
        "state": status.state.value,
        "since": status.since,
        "reason": None if status.state is State.READY else status.reason(),
        "error": status.error,
        "bootstrap": bootstrap,
        "lag_ms": status.lag_ms,
        "shards_active": status.shards_active,
        "rows": rows,
        "records_consumed": status.records_consumed,
        "errors_transient": status.errors_transient,
        "reinitializations": status.reinitializations,
        "bootstraps": status.bootstraps,
        "last_checkpoint_at": status.last_checkpoint_at,
        **_sync_role(status),
    }


def _rows(dataset: DatasetSync) -> int | None:
    try:
        return dataset.row_count()
    except Exception:  # noqa: BLE001 - a table being rebuilt has no count yet
        return None


@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, list[str]]
    headers: Headers
    body: bytes = b""


# A body given as chunks is sent as it comes (chunked transfer encoding).
Answer = tuple[int, str, str | bytes | Iterator[bytes]]
Route = Callable[[Request], Answer]
MAX_BODY = 1 << 20  # bytes a POST may carry unless the server says otherwise


class RouteServer:
    """A small threaded HTTP server on its own thread, answering GET on fixed paths.

    With ``api_keys``, paths not in ``public`` need a key (``X-API-Key`` or a Bearer token).
    """

    def __init__(
        self,
        host: str,
        port: int,
        routes: Mapping[str, Route],
        name: str,
        *,
        api_keys: ApiKeys | None = None,
        public: frozenset[str] = frozenset(),
        post: Route | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and chunked answers

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(routes.get)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(lambda path: post)

            def _answer(self, find: Callable[[str], Route | None]) -> None:
                url = urlsplit(self.path)
                path = url.path.rstrip("/") or "/"
                route = find(path)
                if (
                    api_keys is not None
                    and path not in public
                    and not api_keys.http_allowed(self.headers)
                ):
                    answer: Answer = 401, "text/plain", "Unauthorized: send X-API-Key"
                elif route is None:
                    answer = 404, "text/plain", f"not found: {url.path}"
                else:
                    body = self._body()
                    if isinstance(body, tuple):
                        answer = body
                    else:
                        answer = route(Request(path, parse_qs(url.query), self.headers, body))
                self._send(*answer)

            def _body(self) -> bytes | Answer:
                """The request body (up to ``max_body`` bytes), or the answer refusing it."""
                if self.command != "POST":
                    return b""
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    self.close_connection = True
                    return 411, "text/plain", "send the body with a Content-Length"
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0 or length > max_body:
                    self.close_connection = True  # the body is not read: drop the connection
                    return 413, "text/plain", f"the body is over {max_body} bytes"
                return self.rfile.read(length)

            def _send(self, code: int, ctype: str, body: str | bytes | Iterator[bytes]) -> None:
                self.send_response(code)
                if code == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="dynamirror"')
                self.send_header("Content-Type", ctype)
                if isinstance(body, str | bytes):
                    data = body.encode() if isinstance(body, str) else body
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in body:
                        if chunk:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                except Exception:  # noqa: BLE001 - the client sees the stream cut short
                    self.close_connection = True
                finally:
                    close = getattr(body, "close", None)
                    if close is not None:
                        close()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug(f"{name}: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=name)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port; also for a server never started."""
        if self._thread.ident is not None:  # shutdown() waits for serve_forever to end
            self._server.shutdown()
        self._server.server_close()


class HttpServer(RouteServer):
    """The runtime's HTTP API.

    Args:
        about: what ``/v1/status`` says of the process besides its datasets: called on every
            request (ports bound later are known by then), it returns ``endpoints`` (name to
            URL) and any other keys to merge into the ``runtime`` object.
        api_keys: when set, every endpoint but ``/health`` and ``/v1/ready`` needs a key.
    """

    PUBLIC = frozenset({"/health", "/v1/ready"})

    def __init__(
        self,
        host: str,
        port: int,
        datasets: Sequence[DatasetSync],
        about: Callable[[], Mapping[str, Any]] | None = None,
        api_keys: ApiKeys | None = None,
        run_sql: sqlhttp.RunSql | None = None,
        max_statement_bytes: int = MAX_BODY,
    ) -> None:
        self._datasets = datasets
        self._about = about
        self._run_sql = run_sql
        self.started_at = time.time()
        super().__init__(
            host,
            port,
            {
                "/health": lambda r: (200, "text/plain", "ok"),
                "/v1/ready": lambda r: self._ready(),
                "/v1/datasets": self._datasets_list,
                "/v1/status": lambda r: (200, "application/json", json.dumps(self.status())),
            },
            "http",
            api_keys=api_keys,
            public=self.PUBLIC,
            post=self._post,
            max_body=max_statement_bytes,
        )

    def _post(self, request: Request) -> Answer:
        """``POST /v1/sql`` (see :mod:`flightsrv.sqlhttp`), and
        ``POST /v1/datasets/{name}/acceleration/refresh``: bootstrap again, serving the
        current rows until the fresh copy is swapped in."""
        if request.path == "/v1/sql" and self._run_sql is not None:
            return sqlhttp.answer(self._run_sql, request.body, request.headers.get("Accept"))
        parts = request.path.strip("/").split("/")
        if (
            len(parts) != 5
            or parts[:2] != ["v1", "datasets"]
            or parts[3:]
            != [
                "acceleration",
                "refresh",
            ]
        ):
            return 404, "text/plain", f"not found: {request.path}"
        for dataset in self._datasets:
            if dataset.settings.name.lower() == parts[2].lower():
                try:
                    dataset.request_refresh()
                except RefreshElsewhere as e:
                    return 409, "application/json", json.dumps({"error": str(e)})
                body = {"message": f"dataset {dataset.settings.name}: refresh started"}
                return 201, "application/json", json.dumps(body)
        return 404, "text/plain", f"dataset {parts[2]!r} not found"

    def _ready(self) -> Answer:
        statuses = [d.status() for d in self._datasets]
        waiting = [s.reason() for s in statuses if s.state is not State.READY]
        if waiting:
            return 503, "text/plain", "\n".join(waiting)
        return 200, "text/plain", "ready"

    def _datasets_list(self, request: Request) -> Answer:
        # Spice adds each dataset's status with ?status=true; ours always carries it.
        flag = request.query.get("status", ["false"])[-1].lower()
        if flag not in ("true", "false"):
            return 400, "text/plain", f"status: expected true or false, got {flag!r}"
        return 200, "application/json", json.dumps([dataset_json(d) for d in self._datasets])

    def status(self) -> dict[str, Any]:
        """The whole ``/v1/status`` document."""
        now = time.time()
        about = dict(self._about() if self._about is not None else {})
        endpoints = {"http": f"http://{self.host}:{self.port}", **about.pop("endpoints", {})}
        datasets = [status_json(d.status(), _rows(d)) for d in self._datasets]
        return {
            "runtime": {
                "version": runtime_version(),
                "started_at": self.started_at,
                "uptime_s": round(now - self.started_at, 3),
                "now": now,
                **about,
            },
            "endpoints": endpoints,
            "ready": all(d["state"] == State.READY.value for d in datasets),
            "datasets": datasets,
        }
