"""Metrics: real syncs against the emulator, scraped over HTTP, pushed to a real OTLP receiver."""

from __future__ import annotations

import gzip
import json
import random
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.flight as flight
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from prometheus_client.parser import text_string_to_metric_families

from flightsrv.config import DATASET_METRICS, ConfigError, OtelSettings, parse_config
from flightsrv.metrics import (
    SHUTDOWN_TIMEOUT_S,
    STREAM_METRICS,
    MetricsServer,
    RuntimeMetrics,
    grpc_code,
)
from sync.accelerators.base import open_accelerator
from sync.pipeline import DatasetSync
from sync.status import State
from tests.dynamo import Emulator, create_table, random_item
from tests.harness import settings_for, wait_for
from tests.streamfaults import StreamFaultProxy

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana-dashboard.json"
ALL = frozenset(DATASET_METRICS)
SEEDED = 10
THROTTLED = 3  # GetRecords answers throttled once each, then retried
CHANGES = 30  # 10 inserts, 10 updates, 10 deletes: one stream record each
FAST = {
    "topology_refresh": timedelta(milliseconds=300),
    "error_retry": timedelta(milliseconds=300),
}


@dataclass
class Workload:
    orders: DatasetSync  # every metric enabled; read through the stream fault proxy
    audit: DatasetSync  # shards_active only

    @property
    def datasets(self) -> list[DatasetSync]:
        return [self.orders, self.audit]

    @property
    def enabled(self) -> dict[str, frozenset[str]]:
        return {"orders": ALL, "audit": frozenset({"shards_active"})}


def _sync(endpoint: str, table: str, name: str, mode: str, tmp: Path) -> DatasetSync:
    settings = replace(settings_for(endpoint, table, "duckdb", mode, tmp, **FAST), name=name)
    return DatasetSync(settings, open_accelerator(settings.acceleration))


def _ready(sync: DatasetSync) -> None:
    wait_for(lambda: sync.status().state is State.READY, what=f"{sync.settings.name} Ready")


@pytest.fixture(scope="module")
def workload(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    """``orders`` sees THROTTLED throttled reads, CHANGES stream records and a shard split into
    2; ``audit`` mirrors an idle table."""
    ddb = emulator.client("dynamodb")
    tmp = tmp_path_factory.mktemp("metrics")
    orders_table, audit_table = "metrics_orders", "metrics_audit"
    create_table(ddb, orders_table)
    create_table(ddb, audit_table)
    rng = random.Random(7)
    for i in range(SEEDED):
        ddb.put_item(TableName=orders_table, Item=random_item(rng, f"k{i}", 0))
    started: list[DatasetSync] = []
    with StreamFaultProxy(emulator.url, seed=7) as proxy:
        try:
            orders = _sync(proxy.url, orders_table, "orders", "memory", tmp)
            started.append(orders)
            orders.start()
            audit = _sync(emulator.url, audit_table, "audit", "memory", tmp)
            started.append(audit)
            audit.start()
            for sync in (orders, audit):
                _ready(sync)

            proxy.force_error(
                "GetRecords", "ProvisionedThroughputExceededException", times=THROTTLED
            )
            wait_for(lambda: orders.status().errors_transient == THROTTLED, what="retries")
            for i in range(SEEDED):
                ddb.put_item(TableName=orders_table, Item=random_item(rng, f"n{i}", 1))
                ddb.update_item(
                    TableName=orders_table,
                    Key={"pk": {"S": f"k{i}"}},
                    UpdateExpression="SET version = :v",
                    ExpressionAttributeValues={":v": {"N": "2"}},
                )
                ddb.delete_item(TableName=orders_table, Key={"pk": {"S": f"k{i}"}})
            wait_for(lambda: orders.status().records_consumed >= CHANGES, what="records")
            proxy.split(orders_table, children=2)
            wait_for(lambda: orders.status().shards_active == 2, what="two child shards")
            yield Workload(orders, audit)
        finally:
            for sync in started:
                sync.stop()
                sync.accelerator.close()


def scrape(url: str) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """GET the exposition; returns its content type and {(sample name, labels): value}."""
    with urllib.request.urlopen(url, timeout=5) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return content_type, samples


def stream_samples(samples: dict[Any, float], dataset: str) -> dict[str, float]:
    return {
        name.removeprefix("dataset_dynamodb_"): value
        for (name, labels), value in samples.items()
        if name.startswith("dataset_dynamodb_") and labels == (("dataset", dataset),)
    }


@pytest.fixture
def metrics_server() -> Iterator[list[tuple[RuntimeMetrics, MetricsServer]]]:
    started: list[tuple[RuntimeMetrics, MetricsServer]] = []
    yield started
    for metrics, server in started:
        server.stop()
        metrics.shutdown()


def serve(started: list[tuple[RuntimeMetrics, MetricsServer]], metrics: RuntimeMetrics) -> str:
    server = MetricsServer("127.0.0.1", 0, metrics)
    server.start()
    started.append((metrics, server))
    return f"http://127.0.0.1:{server.port}/metrics"


def test_scrape_has_the_five_stream_metrics_with_spice_names_and_workload_values(
    workload: Workload, metrics_server: list[tuple[RuntimeMetrics, MetricsServer]]
) -> None:
    url = serve(metrics_server, RuntimeMetrics(workload.datasets, workload.enabled))
    time.sleep(0.3)  # idle: the lag is one poll round, not the time since the last change
    content_type, samples = scrape(url)
    assert content_type.startswith("text/plain; version=0.0.4")

    orders = stream_samples(samples, "orders")
    assert sorted(orders) == sorted(DATASET_METRICS)
    assert orders["records_consumed_total"] == CHANGES
    assert orders["shards_active"] == 2
    assert 0 <= orders["lag_ms"] < 1000
    assert orders["errors_transient_total"] == THROTTLED
    assert orders["reinitializations_on_lag_exceeds_shard_retention_total"] == 0
    # audit enabled one metric: the others are absent for it, not zero
    assert stream_samples(samples, "audit") == {"shards_active": 1}

    # the exposed names are exactly Spice's, counters included (no doubled _total, no unit)
    names = {name for name, _ in samples}
    assert {f"dataset_dynamodb_{m}" for m in DATASET_METRICS} <= names
    assert not any(n.endswith(("_total_total", "_milliseconds")) for n in names)


def test_counters_are_counters_and_track_the_sync(
    workload: Workload, metrics_server: list[tuple[RuntimeMetrics, MetricsServer]]
) -> None:
    url = serve(metrics_server, RuntimeMetrics(workload.datasets, workload.enabled))
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types["dataset_dynamodb_records_consumed"] == "counter"
    assert types["dataset_dynamodb_errors_transient"] == "counter"
    assert types["dataset_dynamodb_shards_active"] == "gauge"
    assert types["dataset_dynamodb_lag_ms"] == "gauge"
    _, samples = scrape(url)
    status = workload.orders.status()
    assert stream_samples(samples, "orders")["records_consumed_total"] == status.records_consumed


def test_metric_no_dataset_enabled_is_absent_entirely(
    workload: Workload, metrics_server: list[tuple[RuntimeMetrics, MetricsServer]]
) -> None:
    metrics = RuntimeMetrics(workload.datasets, {"audit": frozenset({"lag_ms"})})
    _, samples = scrape(serve(metrics_server, metrics))
    stream = {name for name, _ in samples if name.startswith("dataset_dynamodb_")}
    assert stream == {"dataset_dynamodb_lag_ms"}
    assert stream_samples(samples, "orders") == {}


def test_query_metrics_count_requests_errors_by_code_and_latency(
    metrics_server: list[tuple[RuntimeMetrics, MetricsServer]],
) -> None:
    metrics = RuntimeMetrics([], {})
    url = serve(metrics_server, metrics)
    queries = metrics.queries
    queries.record("DoGet", "OK", 0.002)
    queries.record("DoGet", "OK", 0.2)
    queries.record("GetFlightInfo", "INVALID_ARGUMENT", 0.004)
    queries.record("CommandGetTables", "OK", 0.001)
    queries.record("DoGet", "UNAVAILABLE", 0.001)
    _, samples = scrape(url)

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("flight_requests_total", method="DoGet", code="OK") == 2
    assert value("flight_requests_total", method="DoGet", code="UNAVAILABLE") == 1
    assert value("flight_requests_total", method="GetFlightInfo", code="INVALID_ARGUMENT") == 1
    assert value("flight_requests_total", method="CommandGetTables", code="OK") == 1
    assert value("flight_request_errors_total", method="DoGet", code="UNAVAILABLE") == 1
    assert ("flight_request_errors_total", (("code", "OK"), ("method", "DoGet"))) not in samples
    assert value("flight_request_duration_seconds_count", method="DoGet") == 3
    assert value("flight_request_duration_seconds_sum", method="DoGet") >= 0.202
    assert (
        value("flight_request_duration_seconds_bucket", method="DoGet", le="0.0025") == 2
    )  # 0.002 s and 0.001 s
    assert value("flight_request_duration_seconds_bucket", method="DoGet", le="0.25") == 3


@pytest.mark.parametrize(
    "error, code",
    [
        (None, "OK"),
        (flight.FlightUnauthenticatedError("x"), "UNAUTHENTICATED"),
        (flight.FlightUnauthorizedError("x"), "PERMISSION_DENIED"),
        (flight.FlightTimedOutError("x"), "DEADLINE_EXCEEDED"),
        (flight.FlightCancelledError("x"), "CANCELLED"),
        (flight.FlightInternalError("x"), "INTERNAL"),
        (NotImplementedError("x"), "UNIMPLEMENTED"),
        (KeyError("x"), "NOT_FOUND"),
        (ValueError("x"), "INVALID_ARGUMENT"),
        (RuntimeError("x"), "UNKNOWN"),
    ],
)
def test_grpc_code(error: BaseException | None, code: str) -> None:
    assert grpc_code(error) == code


def test_config_and_instruments_name_the_same_metrics() -> None:
    assert tuple(STREAM_METRICS) == DATASET_METRICS


# -- OTLP push -----------------------------------------------------------------------------


class OtlpReceiver:
    """An OTLP/HTTP metrics receiver: decodes every ExportMetricsServiceRequest it is sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], ExportMetricsServiceRequest]] = []
        self.received = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportMetricsServiceRequest()
                request.ParseFromString(body)
                with receiver.received:
                    receiver.requests.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()}, request)
                    )
                    receiver.received.notify_all()
                answer = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/metrics"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def points(self, request: ExportMetricsServiceRequest) -> dict[tuple[str, str], Any]:
        """{(metric name, dataset attribute): (metric, data point)} of one request."""
        found = {}
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        attrs = {a.key: a.value.string_value for a in point.attributes}
                        found[(metric.name, attrs.get("dataset", ""))] = (metric, point)
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


def test_otlp_push_reaches_a_real_receiver(workload: Workload, receiver: OtlpReceiver) -> None:
    otel = OtelSettings(
        endpoint=receiver.url,
        push_interval=timedelta(milliseconds=200),
        headers=(("x-api-key", "k-123"),),
    )
    metrics = RuntimeMetrics(workload.datasets, workload.enabled, otel)
    try:
        metrics.queries.record("DoGet", "OK", 0.01)
        with receiver.received:
            assert receiver.received.wait_for(lambda: len(receiver.requests) >= 2, timeout=10)
    finally:
        metrics.shutdown()  # a last push, then the exporter stops
    pushes = len(receiver.requests)
    time.sleep(0.5)
    assert len(receiver.requests) == pushes, "no push after shutdown"

    path, headers, request = receiver.requests[-1]
    assert path == "/v1/metrics"
    assert headers.get("x-api-key") == "k-123"
    assert headers.get("content-type") == "application/x-protobuf"
    (resource_metrics,) = request.resource_metrics
    resource = {a.key: a.value.string_value for a in resource_metrics.resource.attributes}
    assert resource["service.name"] == "flightsrv"

    points = receiver.points(request)
    consumed, point = points[("dataset_dynamodb_records_consumed_total", "orders")]
    assert consumed.sum.is_monotonic
    assert consumed.sum.aggregation_temporality == AggregationTemporality.Value(
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    )
    assert point.as_int == CHANGES
    lag, point = points[("dataset_dynamodb_lag_ms", "orders")]
    assert lag.WhichOneof("data") == "gauge" and 0 <= point.as_int < 5000
    assert points[("dataset_dynamodb_shards_active", "orders")][1].as_int == 2
    assert points[("dataset_dynamodb_shards_active", "audit")][1].as_int == 1
    reinit = "dataset_dynamodb_reinitializations_on_lag_exceeds_shard_retention_total"
    assert points[(reinit, "orders")][1].as_int == 0
    assert points[("dataset_dynamodb_errors_transient_total", "orders")][1].as_int == THROTTLED
    assert ("dataset_dynamodb_lag_ms", "audit") not in points
    requests, point = points[("flight_requests_total", "")]
    assert point.as_int == 1
    duration, point = points[("flight_request_duration_seconds", "")]
    assert duration.unit == "s" and point.count == 1


def test_otlp_receiver_down_does_not_block_shutdown(workload: Workload) -> None:
    receiver = OtlpReceiver()
    url = receiver.url
    receiver.close()  # nothing listens there any more
    otel = OtelSettings(endpoint=url, push_interval=timedelta(milliseconds=100))
    metrics = RuntimeMetrics(workload.datasets, workload.enabled, otel)
    started = time.monotonic()
    metrics.shutdown()
    assert time.monotonic() - started < SHUTDOWN_TIMEOUT_S + 1


# -- spicepod keys -------------------------------------------------------------------------


def pod(metrics: Any = None, runtime: Any = None) -> dict[str, Any]:
    dataset: dict[str, Any] = {
        "from": "dynamodb:orders",
        "name": "orders",
        "acceleration": {"enabled": True, "engine": "duckdb", "refresh_mode": "changes"},
    }
    if metrics is not None:
        dataset["metrics"] = metrics
    doc: dict[str, Any] = {"version": "v1", "kind": "Spicepod", "name": "t", "datasets": [dataset]}
    if runtime is not None:
        doc["runtime"] = runtime
    return doc


def test_spicepod_metrics_and_otel_exporter_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTLP_KEY_FOR_TEST", "s3cr3t")
    config = parse_config(
        pod(
            metrics=[{"name": m} for m in DATASET_METRICS] + [{"name": "lag_ms", "enabled": True}],
            runtime={
                "telemetry": {
                    "enabled": False,
                    "otel_exporter": {
                        "endpoint": "http://collector:4318",
                        "push_interval": "10s",
                        "headers": {"api-key": "${env:OTLP_KEY_FOR_TEST}"},
                    },
                }
            },
        ),
        tmp_path / "spicepod.yaml",
    )
    assert config.metrics == {"orders": ALL}
    assert config.otel == OtelSettings(
        "http://collector:4318/v1/metrics", timedelta(seconds=10), (("api-key", "s3cr3t"),)
    )
    bare = parse_config(pod(metrics=[{"name": "lag_ms", "enabled": False}]), tmp_path / "p.yaml")
    assert bare.metrics == {} and bare.otel is None


@pytest.mark.parametrize(
    "doc, expected",
    [
        (pod(metrics=[{"name": "lag"}]), "dataset 'orders': metrics[0].name: unknown metric 'lag'"),
        (pod(metrics=[{"nam": "lag_ms"}]), "dataset 'orders': metrics[0].name: required"),
        (
            pod(metrics=[{"name": "lag_ms", "interval": "1s"}]),
            "dataset 'orders': metrics[0].interval: unknown key",
        ),
        (pod(metrics="lag_ms"), "dataset 'orders': metrics: expected a list"),
        (pod(metrics=["lag_ms"]), "dataset 'orders': metrics[0]: expected a mapping"),
        (pod(runtime={"results_caches": {}}), "runtime: results_caches: unknown key (did you"),
        (pod(runtime={"telemetry": {"otel": {}}}), "runtime.telemetry: otel: unknown key"),
        (
            pod(runtime={"telemetry": {"otel_exporter": {"endpoint": "localhost:4317"}}}),
            "runtime.telemetry.otel_exporter.endpoint: expected the http(s) URL",
        ),
        (
            pod(
                runtime={
                    "telemetry": {
                        "otel_exporter": {"endpoint": "http://c:4318", "push_interval": "soon"}
                    }
                }
            ),
            "runtime.telemetry.otel_exporter.push_interval: invalid duration",
        ),
        (
            pod(
                runtime={"telemetry": {"otel_exporter": {"endpoint": "http://c", "interval": "1s"}}}
            ),
            "runtime.telemetry.otel_exporter.interval: unknown key",
        ),
    ],
)
def test_spicepod_metric_errors_are_one_line_naming_the_key(
    tmp_path: Path, doc: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(doc, tmp_path / "spicepod.yaml")
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


# -- Grafana dashboard ---------------------------------------------------------------------

PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "irate", "increase",
    "histogram_quantile", "clamp_min", "topk", "bottomk", "and", "or", "unless", "on",
    "ignoring", "group_left", "group_right", "offset", "time", "vector", "scalar", "abs",
    "max_over_time", "min_over_time", "avg_over_time", "last_over_time", "delta", "deriv",
}  # fmt: skip


def expression_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, ranges, strings, functions removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {n for n in names if n not in PROMQL_WORDS and not n.startswith("__")}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_grafana_dashboard_is_importable_and_reads_only_exported_metrics(
    workload: Workload, metrics_server: list[tuple[RuntimeMetrics, MetricsServer]]
) -> None:
    metrics = RuntimeMetrics(workload.datasets, workload.enabled)
    metrics.queries.record("DoGet", "OK", 0.01)
    metrics.queries.record("DoGet", "INTERNAL", 0.01)
    _, samples = scrape(serve(metrics_server, metrics))
    exported = {name for name, _ in samples}

    dashboard = json.loads(DASHBOARD.read_text())
    (source,) = dashboard["__inputs"]
    assert source["name"] == "DS_PROMETHEUS" and source["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["dataset"]["query"]["query"] == "label_values(dataset_dynamodb_lag_ms, dataset)"
    )
    assert variables["dataset"]["datasource"]["uid"] == "${DS_PROMETHEUS}"

    read: set[str] = set()
    ids = []
    for panel in panels(dashboard):
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = expression_metrics(target["expr"])
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
            read |= names
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for metric in DATASET_METRICS:
        assert f"dataset_dynamodb_{metric}" in read, f"no panel shows {metric}"
    assert {"flight_requests_total", "flight_request_duration_seconds_bucket"} <= read


def test_expression_metrics_finds_unknown_names() -> None:
    expr = 'sum by (dataset) (rate(dataset_dynamodb_records_total{dataset=~"$dataset"}[5m]))'
    assert expression_metrics(expr) == {"dataset_dynamodb_records_total"}
