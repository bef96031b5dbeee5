"""The runtime: one process wiring datasets, accelerators, Flight SQL, HTTP and metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pyarrow.flight as flight

from flightsrv.auth import ApiKeyMiddlewareFactory, ApiKeys, HandshakeHandler
from flightsrv.config import RuntimeConfig
from flightsrv.dataset_catalog import DatasetCatalog
from flightsrv.flightsql import FlightSqlServer
from flightsrv.http import HttpServer
from flightsrv.listeners import ListenerError, check_bindable
from flightsrv.metrics import MetricsServer, QueryMetricsMiddleware, RuntimeMetrics
from flightsrv.views import ViewCatalog
from flightsrv.workers import PortRelay, WorkerPool
from sync.fleet import DatasetFleet
from sync.status import QUERYABLE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    flight: tuple[str, int]
    http: tuple[str, int] | None  # None: a worker of --workers, serving Flight SQL only
    metrics: tuple[str, int] | None = None  # None: no metrics listener
    # True when the metrics address is the default one, not asked for: then a busy port
    # (9090 is also Prometheus's own) is logged and queries are served without metrics.
    metrics_optional: bool = False
    # --workers: every process listens on ``flight`` (see flightsrv.workers)
    shared_flight: bool = False


class Runtime:
    """Starts every dataset's sync and the servers; :meth:`stop` shuts them down in order:
    servers first (no new queries), then syncs (in-flight batches commit or roll back), then
    the metrics (a last OTLP push) and the engines.

    With ``follow_only`` it syncs nothing and serves what another process syncs (a worker
    of ``--workers``). ``config.tls`` serves Flight SQL over TLS (``grpc+tls``);
    ``config.api_keys`` requires a key on Flight calls and on HTTP endpoints but ``/health``
    and ``/v1/ready``; ``compression`` (``none``, ``zstd``, ``lz4``) compresses result messages.

    The datasets and their shared engines are a :class:`~sync.fleet.DatasetFleet`
    (:attr:`fleet`); the Flight SQL server reads them through a :class:`DatasetCatalog`.

    Raises:
        ListenerError: a listening address is busy or not bindable (checked before any
            dataset's engine is opened).
        SnapshotRestoreError: a snapshot could not be restored (``on_failure: retry``).
        Exception: anything else failing half-way (an engine that cannot be opened, a server
            that cannot bind); what was opened before is closed again first.
    """

    def __init__(
        self,
        config: RuntimeConfig,
        endpoints: Endpoints,
        compression: str = "none",
        follow_only: bool = False,
        workers: WorkerPool | None = None,
    ) -> None:
        self.config = config
        self.workers = workers
        self._follow_only = follow_only
        self._stopping = threading.Event()
        if not (endpoints.shared_flight and follow_only):  # a worker shares its parent's port
            check_bindable(endpoints.flight, "--flight")
        if endpoints.http is not None:
            check_bindable(endpoints.http, "--http")
        metrics_address = endpoints.metrics
        if metrics_address is not None:
            try:
                check_bindable(metrics_address, "--metrics")
            except ListenerError as e:
                if not endpoints.metrics_optional:
                    raise
                # Metrics are auxiliary: keep serving queries, say how to move the listener.
                log.error("metrics listener not started: %s", e)
                metrics_address = None
        self._endpoints = endpoints
        # Whatever is opened is closed again if a later step fails (an engine that cannot be
        # opened, a listener that cannot bind): no file, port or thread outlives the error.
        with ExitStack() as opened:
            self.fleet = opened.enter_context(
                DatasetFleet(
                    config.datasets,
                    None if follow_only else config.snapshots,
                    lease_timeout_s=config.lease_timeout.total_seconds(),
                    follow_only=follow_only,
                    followed=workers is not None,
                )
            )
            self.catalog = opened.enter_context(
                ViewCatalog(DatasetCatalog(self.fleet.datasets), config.views, config.query)
            )
            self.metrics = RuntimeMetrics(self.fleet.datasets, config.metrics, config.otel)
            opened.callback(self.metrics.shutdown)
            keys = ApiKeys(config.api_keys) if config.api_keys else None
            middleware: dict[str, flight.ServerMiddlewareFactory] = {
                "metrics": QueryMetricsMiddleware(self.metrics.queries)
            }
            security: dict[str, Any] = {}
            if keys is not None:
                middleware["auth"] = ApiKeyMiddlewareFactory(keys)
                security["auth_handler"] = HandshakeHandler()
            if config.tls is not None:
                security["tls_certificates"] = [config.tls.load()]
            self.flight_scheme = "grpc+tls" if config.tls is not None else "grpc"
            host, port = ("127.0.0.1", 0) if endpoints.shared_flight else endpoints.flight
            self.flight = FlightSqlServer(
                f"{self.flight_scheme}://{host}:{port}",
                self.catalog,
                compression=compression,
                limits=config.query,
                middleware=middleware,
                **security,
            )
            opened.callback(self.flight.shutdown)
            self.relay = None
            if endpoints.shared_flight:
                self.relay = PortRelay(endpoints.flight, ("127.0.0.1", self.flight.port))
                opened.callback(self.relay.close)
            self.metrics_server = (
                None
                if metrics_address is None
                else MetricsServer(*metrics_address, self.metrics, keys)
            )
            if self.metrics_server is not None:
                opened.callback(self.metrics_server.stop)
            self.http = (
                None
                if endpoints.http is None
                else HttpServer(
                    *endpoints.http,
                    self.fleet.datasets,
                    about=self._about,
                    api_keys=keys,
                    run_sql=self.flight.run_sql,
                    max_statement_bytes=config.query.max_statement_bytes,
                )
            )
            opened.pop_all()  # all opened: from here on, stop() closes them
        # Flight SQL answers from construction on. Its ``serve()`` is not called: it would take
        # SIGINT and SIGTERM over and wait for every call in flight before the process saw
        # them, which a query computing for hours holds forever (see flightsrv.signals).

    def start(self) -> None:
        self.fleet.start()
        if self.http is not None:
            self.http.start()
        if self.metrics_server is not None:
            self.metrics_server.start()
        if self.relay is not None and not self._follow_only:
            self.relay.start()
        if self.workers is not None:
            self.workers.start()

    def serve_when_ready(self, on_serving: Callable[[], None]) -> None:
        """A worker: take its share of the shared port once every dataset is Ready (until then
        the first process and the other workers answer), then call ``on_serving``."""
        relay = self.relay
        assert relay is not None

        def wait() -> None:
            while not all(d.status().state in QUERYABLE for d in self.fleet.datasets):
                if self._stopping.wait(0.1):
                    return
            relay.start()
            on_serving()

        threading.Thread(target=wait, name="serve-when-ready", daemon=True).start()

    def _about(self) -> dict[str, object]:
        """What ``/v1/status`` says of the process: its spicepod, listening addresses and the
        queries running in the engines (so an operator can see what holds a core)."""
        flight_host, flight_port = self._endpoints.flight
        if self.relay is None:
            flight_port = self.flight.port
        metrics = self.metrics_server
        return {
            "spicepod": self.config.name,
            "endpoints": {
                "flight": f"{self.flight_scheme}://{flight_host}:{flight_port}",
                "metrics": None
                if metrics is None
                else f"http://{metrics.host}:{metrics.port}/metrics",
            },
            "queries": self.flight.running_queries.snapshot(),
            # --workers: the processes answering Flight SQL besides this one
            "workers": [] if self.workers is None else self.workers.status(),
        }

    def stop(self) -> None:
        self._stopping.set()
        if self.workers is not None:
            self.workers.stop()
        if self.relay is not None:
            self.relay.close()
        self.flight.shutdown()
        if self.http is not None:
            self.http.stop()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self.fleet.stop()
        self.metrics.shutdown()
        self.fleet.close()
        self.catalog.close()
