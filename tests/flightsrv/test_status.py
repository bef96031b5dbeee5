"""Status API and ``flightsrv status``: real syncs behind the HTTP server, and the runtime."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from flightsrv.cli import _parser, format_status, main
from flightsrv.config import DATASET_METRICS
from flightsrv.http import HttpServer, status_json
from sync.accelerators.base import open_accelerator
from sync.pipeline import DatasetSync
from sync.status import BootstrapProgress, DatasetStatus, State
from tests.dynamo import Emulator, create_table, random_item
from tests.flightsrv.test_metrics import OtlpReceiver
from tests.harness import settings_for, wait_for
from tests.runtime_process import RuntimeProcess, dataset_entry, free_port

ROWS = 12
ABOUT = {
    "spicepod": "t",
    "endpoints": {"flight": "grpc://127.0.0.1:50051", "metrics": "http://127.0.0.1:9090/metrics"},
}


@dataclass
class Served:
    url: str
    server: HttpServer
    orders: DatasetSync  # Ready
    broken: DatasetSync  # its table has no stream: error


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def served(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    ddb = emulator.client("dynamodb")
    tmp = tmp_path_factory.mktemp("status")
    create_table(ddb, "status_orders")
    create_table(ddb, "status_broken", view_type=None)
    rng = random.Random(3)
    for i in range(ROWS):
        ddb.put_item(TableName="status_orders", Item=random_item(rng, f"k{i}", 0))
    syncs = []
    for table, name in (("status_orders", "orders"), ("status_broken", "broken")):
        settings = replace(settings_for(emulator.url, table, "duckdb", "memory", tmp), name=name)
        sync = DatasetSync(settings, open_accelerator(settings.acceleration))
        sync.start()
        syncs.append(sync)
    orders, broken = syncs
    server = HttpServer("127.0.0.1", 0, syncs, about=lambda: ABOUT)
    server.start()
    try:
        wait_for(lambda: orders.status().state is State.READY, what="orders Ready")
        wait_for(lambda: broken.status().state is State.ERROR, what="broken in error")
        yield Served(f"http://127.0.0.1:{server.port}", server, orders, broken)
    finally:
        server.stop()
        for sync in syncs:
            sync.stop()
            sync.accelerator.close()


def test_v1_status_shape(served: Served) -> None:
    before = time.time()
    code, body = get(f"{served.url}/v1/status")
    assert code == 200
    doc = json.loads(body)
    assert set(doc) == {"runtime", "endpoints", "ready", "datasets"}
    runtime = doc["runtime"]
    assert runtime["version"] == version("dynamirror")
    assert runtime["spicepod"] == "t"
    assert 0 <= runtime["uptime_s"] < 120
    assert runtime["started_at"] <= before <= runtime["now"]
    assert doc["endpoints"] == {"http": served.url, **ABOUT["endpoints"]}
    assert doc["ready"] is False

    orders, broken = doc["datasets"]
    assert orders["name"] == "orders" and orders["from"] == "dynamodb:status_orders"
    assert orders["state"] == "ready" and orders["reason"] is None and orders["error"] is None
    assert orders["rows"] == ROWS and orders["shards_active"] == 1
    assert 0 <= orders["lag_ms"] < 2000
    assert orders["bootstrap"] is None and orders["bootstraps"] == 1
    assert orders["since"] <= before
    assert orders["last_checkpoint_at"] <= before
    assert orders["engine"] == "duckdb" and orders["mode"] == "memory"

    assert broken["state"] == "error" and broken["since"] <= before
    assert "NEW_AND_OLD_IMAGES" in broken["error"]
    assert broken["reason"] == f"dataset broken is in error: {broken['error']}"
    assert broken["rows"] is None and broken["last_checkpoint_at"] is None


def test_bootstrapping_status_has_percent_and_eta() -> None:
    status = DatasetStatus(
        name="big",
        table="big",
        engine="duckdb",
        mode="file",
        state=State.BOOTSTRAPPING,
        since=1000.0,
        error=None,
        lag_ms=None,
        shards_active=0,
        records_consumed=0,
        errors_transient=0,
        reinitializations=0,
        bootstraps=1,
        last_checkpoint_at=None,
        bootstrap=BootstrapProgress(items=4000, expected=10000, rate_per_s=2000.0, started_at=998),
    )
    entry = status_json(status, rows=4000)
    assert entry["state"] == "bootstrapping"
    assert entry["bootstrap"] == {
        "items": 4000,
        "expected": 10000,
        "percent": 40.0,
        "rate_per_s": 2000.0,
        "eta_s": 3.0,
        "started_at": 998,
    }
    assert (
        entry["reason"] == "dataset big is bootstrapping: 4000 items scanned (40 % of about 10000)"
    )
    doc = {
        "runtime": {"version": "1.2.3", "uptime_s": 3700, "now": 1010.0},
        "endpoints": {},
        "ready": False,
        "datasets": [entry],
    }
    header, columns, row = format_status(doc).splitlines()
    assert header == "runtime 1.2.3, up 1h01m, 0/1 dataset(s) ready"
    assert columns.split() == [
        "DATASET", "STATE", "SINCE", "LAG", "SHARDS", "ROWS", "CHECKPOINT", "DETAIL",
    ]  # fmt: skip
    assert row.split() == [
        "big", "bootstrapping", "10s", "-", "0", "4000", "-",
        "4000/~10000", "items", "(40", "%),", "ETA", "3.0s",
    ]  # fmt: skip


def test_status_table_says_which_runtime_syncs_a_shared_dataset() -> None:
    following = DatasetStatus(
        name="orders",
        table="t",
        engine="postgres",
        mode="file",
        since=1000.0,
        error=None,
        lag_ms=300,
        shards_active=0,
        records_consumed=0,
        errors_transient=0,
        reinitializations=0,
        bootstraps=0,
        last_checkpoint_at=1009.0,
        bootstrap=None,
        synced_by="host-b:42/ab12",
        synced_since=time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1)),
        state=State.FOLLOWING,
        role="following",
    )
    entry = status_json(following, rows=10)
    assert (entry["role"], entry["synced_by"]) == ("following", "host-b:42/ab12")
    assert entry["reason"] == (
        "dataset orders is synced by host-b:42/ab12; its committed data is not fresh yet "
        "(lag 0.3 s)"
    )
    doc = {"runtime": {"version": "1", "uptime_s": 5, "now": 1010.0}, "datasets": [entry]}
    assert (
        format_status(doc)
        .splitlines()[2]
        .endswith("followed; synced by host-b:42/ab12 since 03:04:05")
    )
    syncing = replace(following, state=State.READY, role="syncing")
    doc["datasets"] = [status_json(syncing, rows=10)]
    assert format_status(doc).splitlines()[2].endswith("synced here since 03:04:05")


def test_datasets_status_true_keeps_the_shape(served: Served) -> None:
    code, plain = get(f"{served.url}/v1/datasets")
    assert code == 200
    code, with_status = get(f"{served.url}/v1/datasets?status=true")
    assert code == 200
    plain_list, status_list = json.loads(plain), json.loads(with_status)
    assert [d["name"] for d in status_list] == ["orders", "broken"]
    assert [set(d) for d in status_list] == [set(d) for d in plain_list]
    assert [d["status"] for d in status_list] == ["ready", "error"]
    assert status_list[0]["from"] == "dynamodb:status_orders"
    code, body = get(f"{served.url}/v1/datasets?status=maybe")
    assert code == 400 and "status" in body


def test_health_and_ready_answers_unchanged(served: Served) -> None:
    assert get(f"{served.url}/health") == (200, "ok")
    code, body = get(f"{served.url}/v1/ready")
    assert code == 503 and body.startswith("dataset broken is in error")


def test_cli_status_prints_a_table(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--http", served.url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"runtime {version('dynamirror')}, up ")
    assert out[0].endswith("1/2 dataset(s) ready")
    assert out[1].split()[:3] == ["DATASET", "STATE", "SINCE"]
    orders = out[2].split()
    assert orders[:2] == ["orders", "ready"] and orders[4:6] == ["1", str(ROWS)]
    broken = out[3].split()
    assert broken[:2] == ["broken", "error"] and "NEW_AND_OLD_IMAGES" in out[3]
    # columns line up: every cell of a column starts at the header's offset
    assert out[2].index("ready") == out[1].index("STATE") == out[3].index("error")


def test_cli_status_unreachable_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["status", "--http", f"127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot read the status from http://127")


def test_cli_run_metrics_option() -> None:
    args = _parser().parse_args(["run"])
    assert args.metrics is None  # the default, 127.0.0.1:9090, is skipped when busy
    args = _parser().parse_args(["run", "--metrics", "0.0.0.0:9464"])
    assert args.metrics == ("0.0.0.0", 9464)
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "--metrics", "nowhere"])


# -- the runtime, as a user runs it ------------------------------------------------------


class MonitoredRuntime(RuntimeProcess):
    """``flightsrv run`` with ``--metrics`` on a free port and a ``runtime:`` spicepod block."""

    def __init__(
        self, workdir: Path, datasets: list[dict[str, Any]], runtime: dict[str, Any]
    ) -> None:
        super().__init__(workdir, datasets)
        doc = yaml.safe_load(self.config.read_text())
        self.config.write_text(yaml.safe_dump({**doc, "runtime": runtime}))

    def scrape(self) -> dict[tuple[str, str], float]:
        code, text = get(f"http://127.0.0.1:{self.metrics_port}/metrics")
        assert code == 200, text
        return {
            (s.name, s.labels.get("dataset", "")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


@pytest.mark.slow  # a runtime process and an OTLP receiver
def test_runtime_serves_metrics_status_and_pushes_otlp(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path
) -> None:
    create_table(ddb, table_name)
    rng = random.Random(5)
    for i in range(20):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))
    watched = dataset_entry("orders", table_name, emulator.url, mode="memory")
    watched["metrics"] = [{"name": m} for m in DATASET_METRICS]
    plain = dataset_entry("plain", table_name, emulator.url, mode="memory")
    receiver = OtlpReceiver()
    runtime = MonitoredRuntime(
        tmp_path,
        [watched, plain],
        {"telemetry": {"otel_exporter": {"endpoint": receiver.url, "push_interval": "200ms"}}},
    )
    try:
        runtime.start()
        runtime.wait_ready()
        for i in range(12):
            ddb.put_item(TableName=table_name, Item=random_item(rng, f"n{i}", 1))

        def consumed() -> dict[str, int]:
            doc = json.loads(runtime.get("/v1/status")[1])
            return {d["name"]: d["records_consumed"] for d in doc["datasets"]}

        wait_for(lambda: consumed() == {"orders": 12, "plain": 12}, what="12 records each")
        samples = runtime.scrape()
        assert samples[("dataset_dynamodb_records_consumed_total", "orders")] == 12
        assert samples[("dataset_dynamodb_shards_active", "orders")] == 1
        assert not [key for key in samples if key[1] == "plain"], "plain enabled no metric"
        with flightsql.connect(runtime.flight_uri) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")
            assert cur.fetchall() == [(32,)]
            with pytest.raises(flightsql.Error):
                cur.execute("SELECT * FROM missing_table")
        code, text = get(f"http://127.0.0.1:{runtime.metrics_port}/metrics")
        flight_samples = {
            (s.name, s.labels.get("method"), s.labels.get("code")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert flight_samples[("flight_requests_total", "DoGet", "OK")] >= 1
        assert any(
            name == "flight_request_errors_total" and code == "PERMISSION_DENIED" and value >= 1
            for (name, _, code), value in flight_samples.items()
        ), "the unknown-table query is counted as a PERMISSION_DENIED error"

        doc = json.loads(runtime.get("/v1/status")[1])
        assert doc["endpoints"] == {
            "http": f"http://127.0.0.1:{runtime.http_port}",
            "flight": runtime.flight_uri,
            "metrics": f"http://127.0.0.1:{runtime.metrics_port}/metrics",
        }
        assert doc["runtime"]["spicepod"] == "t" and doc["ready"] is True

        status = subprocess.run(
            [
                sys.executable,
                "-m",
                "flightsrv",
                "status",
                "--http",
                f"127.0.0.1:{runtime.http_port}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert lines[0].endswith("2/2 dataset(s) ready")
        assert [line.split()[:2] for line in lines[2:]] == [["orders", "ready"], ["plain", "ready"]]

        def pushed() -> float | None:
            if not receiver.requests:
                return None
            points = receiver.points(receiver.requests[-1][2])
            found = points.get(("dataset_dynamodb_records_consumed_total", "orders"))
            return None if found is None else found[1].as_int

        wait_for(lambda: pushed() == 12, timeout=10, what="OTLP push of 12 records")
        assert runtime.terminate() == 0
    finally:
        runtime.kill()
        receiver.close()
