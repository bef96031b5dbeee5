"""HTTP endpoints: ``/health``, ``/v1/ready``, ``/v1/datasets``."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sync.pipeline import DatasetSync
from sync.status import State

log = logging.getLogger(__name__)


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
    }


def _rows(dataset: DatasetSync) -> int | None:
    try:
        return dataset.row_count()
    except Exception:  # noqa: BLE001 - a table being rebuilt has no count yet
        return None


class HttpServer:
    """A small threaded HTTP server on its own thread."""

    def __init__(self, host: str, port: int, datasets: Sequence[DatasetSync]) -> None:
        routes: dict[str, Callable[[dict[str, list[str]]], tuple[int, str, str]]] = {
            "/health": lambda q: (200, "text/plain", "ok"),
            "/v1/ready": lambda q: self._ready(),
            "/v1/datasets": lambda q: (
                200,
                "application/json",
                json.dumps([dataset_json(d) for d in self._datasets]),
            ),
        }
        self._datasets = datasets

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urlsplit(self.path)
                route = routes.get(url.path.rstrip("/") or "/")
                if route is None:
                    code, ctype, body = 404, "text/plain", f"not found: {url.path}"
                else:
                    code, ctype, body = route(parse_qs(url.query))
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("http: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="http")

    def _ready(self) -> tuple[int, str, str]:
        statuses = [d.status() for d in self._datasets]
        waiting = [s.reason() for s in statuses if s.state is not State.READY]
        if waiting:
            return 503, "text/plain", "\n".join(waiting)
        return 200, "text/plain", "ready"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
