"""Metrics: each dataset's DynamoDB stream figures and the Flight SQL request figures.

Every figure is an OpenTelemetry SDK instrument on one ``MeterProvider`` per runtime. Two
readers share it: a Prometheus reader rendered at ``GET /metrics`` on the metrics listener, and,
when ``runtime.telemetry.otel_exporter`` is set, a periodic OTLP/HTTP push.

The stream figures are observable instruments whose callbacks read ``DatasetSync.status()``
at collection time, so nothing is counted twice and the sync carries no metrics code. Each is
opt-in per dataset (Spice's ``metrics:`` list) and exported as ``dataset_dynamodb_<name>``
with a ``dataset`` label; a figure no dataset enabled is absent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow.flight as flight
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from flightsrv.auth import ApiKeys
from flightsrv.config import OtelSettings
from flightsrv.http import Request, RouteServer, runtime_version
from sync.pipeline import DatasetSync
from sync.status import DatasetStatus

log = logging.getLogger(__name__)

METER_NAME = "flightsrv"
DATASET_PREFIX = "dataset_dynamodb_"
OTLP_TIMEOUT_S = 10.0
# The last push at shutdown gets this long: a collector that is down must not hold up the stop
# (the exporter's retries would otherwise run to OTLP_TIMEOUT_S).
SHUTDOWN_TIMEOUT_S = 2.0
# Seconds; Flight SQL requests range from sub-millisecond metadata calls to long scans.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class StreamMetric:
    kind: Literal["gauge", "counter"]  # counters are observable counters: monotonic totals
    description: str
    read: Callable[[DatasetStatus], int | None]  # None: not known yet, no point exported


# Keyed by config.DATASET_METRICS, the names a spicepod may enable.
# No unit on these instruments: the names carry it (``lag_ms``), and the Prometheus reader
# would append the unit again (``lag_ms_milliseconds``).
STREAM_METRICS: Mapping[str, StreamMetric] = {
    "shards_active": StreamMetric(
        "gauge", "Stream shards the dataset is reading", lambda s: s.shards_active
    ),
    "records_consumed_total": StreamMetric(
        "counter",
        "Stream records applied to the accelerator since the runtime started",
        lambda s: s.records_consumed,
    ),
    "lag_ms": StreamMetric(
        "gauge",
        "Milliseconds the mirror is behind its stream (absent until first known)",
        lambda s: s.lag_ms,
    ),
    "errors_transient_total": StreamMetric(
        "counter",
        "Transient errors retried (throttling, 5xx, expired iterators, engine errors)",
        lambda s: s.errors_transient,
    ),
    "reinitializations_on_lag_exceeds_shard_retention_total": StreamMetric(
        "counter",
        "Bootstraps started again because the checkpoint was beyond the stream's retention",
        lambda s: s.reinitializations,
    ),
}


def grpc_code(error: BaseException | None) -> str:
    """The gRPC status code name a Flight client sees for ``error`` raised by a handler.

    Follows pyarrow's conversion: Flight errors carry their code; other exceptions become an
    Arrow status (``ValueError`` Invalid, ``KeyError``, ``NotImplementedError``), then a code.
    """
    if error is None:
        return "OK"
    for kind, code in (
        (flight.FlightUnauthenticatedError, "UNAUTHENTICATED"),
        (flight.FlightUnauthorizedError, "PERMISSION_DENIED"),
        (flight.FlightTimedOutError, "DEADLINE_EXCEEDED"),
        (flight.FlightCancelledError, "CANCELLED"),
        (flight.FlightUnavailableError, "UNAVAILABLE"),
        (flight.FlightInternalError, "INTERNAL"),
        (flight.FlightServerError, "UNKNOWN"),
        (NotImplementedError, "UNIMPLEMENTED"),
        (KeyError, "NOT_FOUND"),
        (ValueError, "INVALID_ARGUMENT"),
    ):
        if isinstance(error, kind):
            return code
    return "UNKNOWN"


class QueryMetrics:
    """Flight SQL request figures: requests and errors by method and gRPC code, and latency.

    The Flight server calls :meth:`record` once per request (or wraps the handler in
    :meth:`track`). ``method`` is the Flight RPC or Flight SQL command (``GetFlightInfo``,
    ``DoGet``, ``CommandGetTables``…); keep it to a fixed set, it is a label.
    """

    def __init__(self, meter: Meter) -> None:
        self._requests = meter.create_counter(
            "flight_requests_total", description="Flight SQL requests, by method and gRPC code"
        )
        self._errors = meter.create_counter(
            "flight_request_errors_total",
            description="Flight SQL requests that failed, by method and gRPC code",
        )
        self._duration = meter.create_histogram(
            "flight_request_duration_seconds",
            unit="s",
            description="Flight SQL request latency, by method",
            explicit_bucket_boundaries_advisory=list(LATENCY_BUCKETS),
        )

    def record(self, method: str, code: str, seconds: float) -> None:
        """Count one finished request.

        Args:
            method: the RPC or command name.
            code: the gRPC status code name the client got (``OK``, ``INVALID_ARGUMENT``…).
            seconds: how long the request took.
        """
        self._requests.add(1, {"method": method, "code": code})
        if code != "OK":
            self._errors.add(1, {"method": method, "code": code})
        self._duration.record(seconds, {"method": method})


class QueryMetricsMiddleware(flight.ServerMiddlewareFactory):
    """Times every Flight call and records it with the status code the client got.

    Streaming calls (DoGet) complete when their last batch is sent, so their latency covers
    the whole result.
    """

    def __init__(self, queries: QueryMetrics) -> None:
        super().__init__()
        self._queries = queries

    def start_call(
        self, info: flight.CallInfo, headers: dict[str, list[str]]
    ) -> flight.ServerMiddleware:
        method = "".join(part.capitalize() for part in info.method.name.split("_"))
        return _CallTimer(self._queries, method)


class _CallTimer(flight.ServerMiddleware):
    def __init__(self, queries: QueryMetrics, method: str) -> None:
        super().__init__()
        self._queries = queries
        self._method = method
        self._started = time.perf_counter()

    def call_completed(self, exception: BaseException | None) -> None:
        self._queries.record(
            self._method, grpc_code(exception), time.perf_counter() - self._started
        )


class RuntimeMetrics:
    """The runtime's meter provider, its instruments and readers.

    Args:
        datasets: the syncs whose ``status()`` the stream instruments read.
        enabled: dataset name to the stream figures it enabled (``RuntimeConfig.metrics``).
        otel: where to push over OTLP/HTTP, or None.
    """

    def __init__(
        self,
        datasets: Sequence[DatasetSync],
        enabled: Mapping[str, frozenset[str]],
        otel: OtelSettings | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        readers: list[MetricReader] = [
            # A registry of our own: the process-wide default one would mix in every other
            # runtime's figures (tests run several) and prometheus_client's process collectors.
            PrometheusMetricReader(
                disable_target_info=True, scope_info_enabled=False, registry=self.registry
            )
        ]
        if otel is not None:
            exporter = OTLPMetricExporter(
                endpoint=otel.endpoint, headers=dict(otel.headers), timeout=OTLP_TIMEOUT_S
            )
            readers.append(
                PeriodicExportingMetricReader(
                    exporter,
                    export_interval_millis=otel.push_interval.total_seconds() * 1000,
                    export_timeout_millis=OTLP_TIMEOUT_S * 1000,
                )
            )
            log.info(
                "pushing metrics over OTLP/HTTP to %s every %s", otel.endpoint, otel.push_interval
            )
        resource = Resource.create(
            {"service.name": "flightsrv", "service.version": runtime_version()}
        )
        self._provider = MeterProvider(
            metric_readers=readers, resource=resource, shutdown_on_exit=False
        )
        meter = self._provider.get_meter(METER_NAME, runtime_version())
        self._install_stream_metrics(meter, datasets, enabled)
        self.queries = QueryMetrics(meter)
        self._render_lock = threading.Lock()
        self._shutdown = False

    @staticmethod
    def _install_stream_metrics(
        meter: Meter, datasets: Sequence[DatasetSync], enabled: Mapping[str, frozenset[str]]
    ) -> None:
        for name, metric in STREAM_METRICS.items():
            watched = [d for d in datasets if name in enabled.get(d.settings.name, ())]
            if not watched:
                continue  # no dataset asked for it: the instrument does not exist at all

            def observe(
                options: CallbackOptions,
                watched: list[DatasetSync] = watched,
                read: Callable[[DatasetStatus], int | None] = metric.read,
            ) -> Iterable[Observation]:
                for dataset in watched:
                    value = read(dataset.status())
                    if value is not None:
                        yield Observation(value, {"dataset": dataset.settings.name})

            create = (
                meter.create_observable_counter
                if metric.kind == "counter"
                else meter.create_observable_gauge
            )
            create(DATASET_PREFIX + name, [observe], description=metric.description)

    def render(self, accept: str | None = None) -> tuple[str, bytes]:
        """The Prometheus exposition of every figure, in the format ``accept`` prefers.

        Returns:
            ``(content type, body)``.
        """
        encoder, content_type = choose_encoder(accept or "")
        # One collection at a time: the Prometheus reader queues each collection's data and
        # a concurrent scrape would render both.
        with self._render_lock:
            return content_type, encoder(self.registry)

    def shutdown(self) -> None:
        """Push a last time (when pushing) and stop the readers; idempotent."""
        if self._shutdown:
            return
        self._shutdown = True
        try:
            self._provider.shutdown(timeout_millis=SHUTDOWN_TIMEOUT_S * 1000)
        except Exception as e:  # noqa: BLE001 - a collector gone at exit must not fail the stop
            log.warning("metrics: shutdown: %s", e)


class MetricsServer(RouteServer):
    """The metrics listener: ``GET /metrics`` in the Prometheus text format.

    With ``api_keys``, scrapes need a key too: ``X-API-Key``, or ``Authorization: Bearer`` (what
    Prometheus's ``authorization`` scrape setting sends).
    """

    def __init__(
        self, host: str, port: int, metrics: RuntimeMetrics, api_keys: ApiKeys | None = None
    ) -> None:
        def scrape(request: Request) -> tuple[int, str, bytes]:
            content_type, body = metrics.render(request.headers.get("Accept"))
            return 200, content_type, body

        super().__init__(host, port, {"/metrics": scrape}, "metrics", api_keys=api_keys)
