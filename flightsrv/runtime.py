"""The runtime: one process wiring datasets, accelerators, Flight SQL and HTTP together."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from flightsrv.catalog_impl import DatasetCatalog
from flightsrv.config import RuntimeConfig
from flightsrv.http import HttpServer
from sync.accelerators.base import Accelerator, open_accelerator
from sync.pipeline import DatasetSync
from sync.settings import AccelerationSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    flight: tuple[str, int]
    http: tuple[str, int]


class Runtime:
    """Starts every dataset's sync and both servers; :meth:`stop` shuts them down in order:
    servers first (no new queries), then syncs (in-flight batches commit or roll back), then
    the engines."""

    def __init__(self, config: RuntimeConfig, endpoints: Endpoints) -> None:
        from flightsrv.flightsql.server import FlightSqlServer

        self.config = config
        self._accelerators: dict[str, Accelerator] = {}
        self.datasets: list[DatasetSync] = []
        for settings in config.datasets:
            # Datasets with one location (engine + file, or engine in memory) share a
            # database, so queries can join them.
            location = settings.acceleration.location
            if location not in self._accelerators:
                self._accelerators[location] = open_accelerator(settings.acceleration)
            self.datasets.append(DatasetSync(settings, self._accelerators[location]))
        self._scratch = open_accelerator(AccelerationSettings("duckdb", "memory"))
        self.catalog = DatasetCatalog(self.datasets, self._scratch)
        host, port = endpoints.flight
        self.flight = FlightSqlServer(f"grpc://{host}:{port}", self.catalog)
        self.http = HttpServer(*endpoints.http, self.datasets)
        self._flight_thread = threading.Thread(target=self.flight.serve, name="flight")

    def start(self) -> None:
        for dataset in self.datasets:
            dataset.start()
        self.http.start()
        self._flight_thread.start()

    def stop(self) -> None:
        self.flight.shutdown()
        self.http.stop()
        for dataset in self.datasets:
            dataset.stop()
        for accelerator in [*self._accelerators.values(), self._scratch]:
            accelerator.close()
