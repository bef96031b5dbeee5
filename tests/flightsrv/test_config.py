"""spicepod.yaml validation: every problem is one line naming the dataset and key; exit 2."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from flightsrv.config import ConfigError, load_config, parse_config
from flightsrv.durations import parse_duration


def pod(**dataset_overrides: Any) -> dict[str, Any]:
    dataset: dict[str, Any] = {
        "from": "dynamodb:orders",
        "name": "orders",
        "params": {
            "dynamodb_aws_region": "us-east-1",
            "dynamodb_aws_auth": "key",
            "dynamodb_aws_access_key_id": "id",
            "dynamodb_aws_secret_access_key": "secret",
            "endpoint_url": "http://127.0.0.1:5000",
            "scan_interval": "100ms",
            "ready_lag": "2s",
            "scan_segments": "auto",
            "schema_infer_max_records": 10,
        },
        "acceleration": {
            "enabled": True,
            "engine": "duckdb",
            "mode": "file",
            "refresh_mode": "changes",
            "params": {"duckdb_file": "./data/orders.duckdb"},
        },
    }
    for path, value in dataset_overrides.items():
        target = dataset
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[p]
        if value is _DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return {"version": "v1", "kind": "Spicepod", "name": "demo", "datasets": [dataset]}


_DELETE = object()


def test_issue_example_parses_into_typed_settings(tmp_path: Path) -> None:
    config = parse_config(pod(), tmp_path / "spicepod.yaml")
    (ds,) = config.datasets
    assert ds.name == "orders" and ds.source.table == "orders"
    assert ds.source.auth == "key" and ds.source.endpoint_url == "http://127.0.0.1:5000"
    assert ds.scan_interval == timedelta(milliseconds=100)
    assert ds.ready_lag == timedelta(seconds=2)
    assert ds.scan_segments is None and ds.schema_infer_max_records == 10
    assert ds.acceleration.engine == "duckdb" and ds.acceleration.mode == "file"
    assert ds.acceleration.file == tmp_path / "data" / "orders.duckdb"


def test_dynamodb_timeouts_and_retry_bound(tmp_path: Path) -> None:
    (ds,) = parse_config(pod(), tmp_path / "spicepod.yaml").datasets
    source = ds.source
    assert (source.connect_timeout_s, source.read_timeout_s) == (5.0, 20.0)
    assert (source.max_retries, source.max_retry_s) == (10, 600.0)
    doc = pod(
        params__dynamodb_connect_timeout="500ms",
        params__dynamodb_read_timeout="1m",
        params__dynamodb_max_retries=3,
        params__dynamodb_max_retry_duration="90s",
    )
    (ds,) = parse_config(doc, tmp_path / "spicepod.yaml").datasets
    source = ds.source
    assert (source.connect_timeout_s, source.read_timeout_s) == (0.5, 60.0)
    assert (source.max_retries, source.max_retry_s) == (3, 90.0)


def test_env_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_FOR_TEST", "s3cr3t")
    doc = pod(params__dynamodb_aws_secret_access_key="${env:SECRET_FOR_TEST}")
    (ds,) = parse_config(doc, tmp_path / "p.yaml").datasets
    assert ds.source.secret_access_key == "s3cr3t"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"params__scan_intervall": "1s"}, "dataset 'orders': params.scan_intervall: unknown key"),
        ({"colour": "blue"}, "dataset 'orders': colour: unknown key"),
        ({"params__scan_interval": "5 parsecs"}, "params.scan_interval: invalid duration"),
        ({"params__ready_lag": 2}, "params.ready_lag: expected a duration"),
        ({"params__scan_segments": 0}, "params.scan_segments: expected an integer > 0"),
        ({"params__dynamodb_read_timeout": "0s"}, "dynamodb_read_timeout: expected a duration"),
        ({"params__dynamodb_connect_timeout": 5}, "dynamodb_connect_timeout: expected a duration"),
        ({"params__dynamodb_max_retries": 0}, "dynamodb_max_retries: expected an integer > 0"),
        ({"params__dynamodb_max_retry_duration": "soon"}, "max_retry_duration: invalid duration"),
        ({"params__schema_infer_max_records": "many"}, "schema_infer_max_records: expected an"),
        ({"acceleration__engine": "oracle"}, "acceleration.engine: expected one of duckdb, sqlite"),
        ({"acceleration__mode": "disk"}, "acceleration.mode: expected one of memory, file"),
        ({"acceleration__refresh_mode": "full"}, "acceleration.refresh_mode: must be 'changes'"),
        ({"acceleration__refresh_mode": _DELETE}, "acceleration.refresh_mode: must be 'changes'"),
        ({"acceleration__refresh_sql": "SELECT 1"}, "acceleration.refresh_sql: not supported"),
        ({"acceleration__enabled": False}, "acceleration.enabled: must be true"),
        ({"acceleration": _DELETE}, "dataset 'orders': acceleration: required"),
        ({"from": "s3://bucket/x"}, "dataset 'orders': from: expected 'dynamodb:<table name>'"),
        ({"params__dynamodb_aws_auth": "magic"}, "params.dynamodb_aws_auth: expected one of"),
        (
            {"params__dynamodb_aws_access_key_id": _DELETE},
            "params.dynamodb_aws_access_key_id: required",
        ),
        (
            {"params__dynamodb_aws_secret_access_key": "${env:SURELY_NOT_SET_42}"},
            "environment variable SURELY_NOT_SET_42 is not set",
        ),
        ({"acceleration__params__sqlite_file": "x.db"}, "acceleration.params.sqlite_file: unknown"),
        ({"lag_exceeds": 1}, "lag_exceeds: unknown key"),
        (
            {"params__lag_exceeds_shard_retention_behavior": "panic"},
            "lag_exceeds_shard_retention_behavior: expected one of error, restart, "
            "ready_before_load, ready_after_load",
        ),
    ],
)
def test_each_error_names_dataset_and_key(
    tmp_path: Path, overrides: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(pod(**overrides), tmp_path / "spicepod.yaml")
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    if "dataset" in expected:
        assert "'orders'" in message


def test_duplicate_dataset_names(tmp_path: Path) -> None:
    doc = pod()
    doc["datasets"].append(dict(doc["datasets"][0], name="ORDERS"))
    with pytest.raises(ConfigError, match="dataset 'ORDERS': name: duplicate dataset name"):
        parse_config(doc, tmp_path / "p.yaml")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    doc = pod()
    doc["dataset"] = []
    with pytest.raises(ConfigError, match="dataset: unknown key"):
        parse_config(doc, tmp_path / "p.yaml")


def test_bad_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("datasets: [\n  - name: x\n   bad")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "not valid YAML" in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "text, seconds",
    [("100ms", 0.1), ("2s", 2), ("1m30s", 90), ("1.5h", 5400), ("250us", 0.00025)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1s2", "-1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_cli_exits_2_with_one_line_before_starting_anything(tmp_path: Path) -> None:
    path = tmp_path / "spicepod.yaml"
    path.write_text(yaml.safe_dump(pod(acceleration__refresh_sql="SELECT 1")))
    result = subprocess.run(
        [sys.executable, "-m", "flightsrv", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "refresh_sql" in lines[0] and "'orders'" in lines[0]
    assert not (tmp_path / "data").exists(), "nothing may start before validation passes"


@pytest.mark.parametrize(
    "value, items_per_s, fraction",
    [(2000, 2000.0, None), ("2500", 2500.0, None), (12.5, 12.5, None), ("50%", None, 0.5)],
)
def test_scan_rate_limit_is_items_per_second_or_a_share_of_read_capacity(
    tmp_path: Path, value: Any, items_per_s: float | None, fraction: float | None
) -> None:
    (ds,) = parse_config(pod(params__scan_rate_limit=value), tmp_path / "p.yaml").datasets
    assert ds.scan_rate_limit is not None
    assert ds.scan_rate_limit.items_per_s == items_per_s
    assert ds.scan_rate_limit.capacity_fraction == fraction
    (unset,) = parse_config(pod(), tmp_path / "p.yaml").datasets
    assert unset.scan_rate_limit is None


@pytest.mark.parametrize("value", [0, -5, "0%", "101%", "fast", "50 items", True, [2000], "nan"])
def test_a_bad_scan_rate_limit_names_the_key(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(pod(params__scan_rate_limit=value), tmp_path / "p.yaml")
    message = str(error.value)
    assert "dataset 'orders': params.scan_rate_limit: expected items per second" in message
    assert "(e.g. 50%)" in message and repr(value) in message
