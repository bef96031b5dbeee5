"""The runtime: one process wiring datasets, accelerators, Flight SQL, HTTP and metrics."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import pyarrow.flight as flight

from flightsrv.auth import ApiKeyMiddlewareFactory, ApiKeys, HandshakeHandler
from flightsrv.catalog_impl import DatasetCatalog
from flightsrv.config import RuntimeConfig
from flightsrv.flightsql import FlightSqlServer
from flightsrv.http import HttpServer
from flightsrv.metrics import MetricsServer, QueryMetricsMiddleware, RuntimeMetrics
from sync.accelerators.base import Accelerator, open_accelerator
from sync.pipeline import DatasetSync
from sync.settings import AccelerationSettings
from sync.snapshots import Snapshotter, SupportsSnapshot, open_store, restore_newest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    flight: tuple[str, int]
    http: tuple[str, int]
    metrics: tuple[str, int] | None = None  # None: no metrics listener


class Runtime:
    """Starts every dataset's sync and the servers; :meth:`stop` shuts them down in order:
    servers first (no new queries), then syncs (in-flight batches commit or roll back), then
    the metrics (a last OTLP push) and the engines.

    ``config.tls`` serves Flight SQL over TLS (``grpc+tls``); ``config.api_keys`` requires a key
    on Flight calls and on HTTP endpoints but ``/health`` and ``/v1/ready``; ``compression``
    (``none``, ``zstd``, ``lz4``) compresses result messages.
    """

    def __init__(
        self, config: RuntimeConfig, endpoints: Endpoints, compression: str = "none"
    ) -> None:
        self.config = config
        self._endpoints = endpoints
        self._accelerators: dict[str, Accelerator] = {}
        self._snapshotters: dict[str, Snapshotter] = {}
        store = open_store(config.snapshots) if config.snapshots else None
        self.datasets: list[DatasetSync] = []
        for settings in config.datasets:
            # Datasets with one location (engine + file, or engine in memory) share a
            # database, so queries can join them.
            location = settings.acceleration.location
            if location not in self._accelerators:
                file = settings.acceleration.file
                if store and config.snapshots and file and settings.snapshots.bootstraps:
                    if not file.exists():
                        restore_newest(store, file, config.snapshots.on_failure)
                self._accelerators[location] = open_accelerator(settings.acceleration)
            accelerator = self._accelerators[location]
            snapshotter = None
            if store and settings.snapshots.creates and isinstance(accelerator, SupportsSnapshot):
                assert settings.acceleration.file is not None
                snapshotter = self._snapshotters.setdefault(
                    location, Snapshotter(accelerator, settings.acceleration.file, store)
                )
            self.datasets.append(DatasetSync(settings, accelerator, snapshotter))
        self._scratch = open_accelerator(AccelerationSettings("duckdb", "memory"))
        self.catalog = DatasetCatalog(self.datasets, self._scratch)
        host, port = endpoints.flight
        self.metrics = RuntimeMetrics(self.datasets, config.metrics, config.otel)
        keys = ApiKeys(config.api_keys) if config.api_keys else None
        middleware: dict[str, flight.ServerMiddlewareFactory] = {
            "metrics": QueryMetricsMiddleware(self.metrics.queries)
        }
        security: dict[str, object] = {}
        if keys is not None:
            middleware["auth"] = ApiKeyMiddlewareFactory(keys)
            security["auth_handler"] = HandshakeHandler()
        if config.tls is not None:
            security["tls_certificates"] = [config.tls.load()]
        self.flight_scheme = "grpc+tls" if config.tls is not None else "grpc"
        self.flight = FlightSqlServer(
            f"{self.flight_scheme}://{host}:{port}",
            self.catalog,
            compression=compression,
            limits=config.query,
            middleware=middleware,
            **security,
        )
        self.metrics_server: MetricsServer | None = None
        if endpoints.metrics is not None:
            try:
                self.metrics_server = MetricsServer(*endpoints.metrics, self.metrics, keys)
            except OSError as e:
                # Metrics are auxiliary, and 9090 is also Prometheus's own default port: keep
                # serving queries, say how to move the listener.
                log.error(
                    "metrics listener not started on %s:%d: %s (choose another address with "
                    "--metrics HOST:PORT)",
                    *endpoints.metrics,
                    e.strerror or e,
                )
        self.http = HttpServer(*endpoints.http, self.datasets, about=self._about, api_keys=keys)
        self._flight_thread = threading.Thread(target=self.flight.serve, name="flight")

    def start(self) -> None:
        for dataset in self.datasets:
            dataset.start()
        self.http.start()
        if self.metrics_server is not None:
            self.metrics_server.start()
        self._flight_thread.start()

    def _about(self) -> dict[str, object]:
        """What ``/v1/status`` says of the process: its spicepod and listening addresses."""
        flight_host = self._endpoints.flight[0]
        metrics = self.metrics_server
        return {
            "spicepod": self.config.name,
            "endpoints": {
                "flight": f"{self.flight_scheme}://{flight_host}:{self.flight.port}",
                "metrics": None
                if metrics is None
                else f"http://{metrics.host}:{metrics.port}/metrics",
            },
        }

    def stop(self) -> None:
        self.flight.shutdown()
        self.http.stop()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        for dataset in self.datasets:
            dataset.stop()
        for snapshotter in self._snapshotters.values():
            snapshotter.wait()
        self.metrics.shutdown()
        for accelerator in [*self._accelerators.values(), self._scratch]:
            accelerator.close()
