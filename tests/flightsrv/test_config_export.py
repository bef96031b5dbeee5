"""spicepod.yaml: the initial-load params (``dynamodb_initial_load``, ``dynamodb_export_*``,
Spice's ``dynamodb_replication_initial_snapshot``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flightsrv.config import ConfigError, parse_config
from sync.settings import DatasetSettings, ExportSettings
from tests.flightsrv.test_config import pod


def dataset(tmp_path: Path, **params: Any) -> DatasetSettings:
    doc = pod(**{f"params__{k}": v for k, v in params.items()})
    (ds,) = parse_config(doc, tmp_path / "spicepod.yaml").datasets
    return ds


def test_a_scan_is_the_default(tmp_path: Path) -> None:
    ds = dataset(tmp_path)
    assert ds.initial_load == "scan" and ds.export is None
    assert ds.initial_snapshot == "auto"


@pytest.mark.parametrize("mode", ["export", "auto"])
def test_an_export_with_every_param(tmp_path: Path, mode: str) -> None:
    ds = dataset(
        tmp_path,
        dynamodb_initial_load=mode,
        dynamodb_export_s3_bucket="my-exports",
        dynamodb_export_s3_prefix="/mirror/orders/",
        dynamodb_export_s3_region="eu-west-1",
        dynamodb_export_s3_endpoint="https://s3.eu-west-1.amazonaws.com",
        dynamodb_export_poll_interval="30s",
        dynamodb_export_timeout="6h",
        dynamodb_replication_initial_snapshot="always",
    )
    assert ds.initial_load == mode and ds.initial_snapshot == "always"
    assert ds.export == ExportSettings(
        "my-exports",
        "mirror/orders",
        "eu-west-1",
        "https://s3.eu-west-1.amazonaws.com",
        timedelta(seconds=30),
        timedelta(hours=6),
    )


def test_an_export_with_the_bucket_alone(tmp_path: Path) -> None:
    ds = dataset(tmp_path, dynamodb_initial_load="export", dynamodb_export_s3_bucket="b")
    assert ds.export == ExportSettings("b")
    # Region and endpoint are left unset: the S3 client takes the dataset's.
    assert ds.export.region is None and ds.export.endpoint_url is None
    assert ds.source.endpoint_url == "http://127.0.0.1:5000"


def test_the_stream_only(tmp_path: Path) -> None:
    ds = dataset(tmp_path, dynamodb_replication_initial_snapshot="disabled")
    assert ds.initial_snapshot == "disabled"


@pytest.mark.parametrize(
    "params, expected",
    [
        (
            {"dynamodb_initial_load": "export"},
            "params.dynamodb_export_s3_bucket: required when dynamodb_initial_load is 'export'",
        ),
        (
            {"dynamodb_initial_load": "auto"},
            "params.dynamodb_export_s3_bucket: required when dynamodb_initial_load is 'auto'",
        ),
        (
            {"dynamodb_initial_load": "s3"},
            "params.dynamodb_initial_load: expected one of scan, export, auto, got 's3'",
        ),
        (
            {"dynamodb_replication_initial_snapshot": "never"},
            "params.dynamodb_replication_initial_snapshot: expected one of auto, always, disabled",
        ),
        (
            {
                "dynamodb_initial_load": "export",
                "dynamodb_export_s3_bucket": "b",
                "dynamodb_replication_initial_snapshot": "disabled",
            },
            "params.dynamodb_initial_load: 'export' loads nothing when "
            "dynamodb_replication_initial_snapshot is 'disabled'",
        ),
        (
            {"dynamodb_export_s3_bucket": "b"},
            "params.dynamodb_export_s3_bucket: only used with dynamodb_initial_load: export",
        ),
        (
            {"dynamodb_export_s3_prefix": "p"},
            "params.dynamodb_export_s3_prefix: only used with dynamodb_initial_load: export",
        ),
        (
            {"dynamodb_initial_load": "export", "dynamodb_export_s3_bucket": "s3://b/p"},
            "params.dynamodb_export_s3_bucket: expected a bucket name alone, got 's3://b/p'",
        ),
        (
            {
                "dynamodb_initial_load": "export",
                "dynamodb_export_s3_bucket": "b",
                "dynamodb_export_s3_endpoint": "localhost:9000",
            },
            "params.dynamodb_export_s3_endpoint: expected an http(s):// URL",
        ),
        (
            {
                "dynamodb_initial_load": "export",
                "dynamodb_export_s3_bucket": "b",
                "dynamodb_export_timeout": "0s",
            },
            "params.dynamodb_export_timeout: must be longer than 0",
        ),
        (
            {
                "dynamodb_initial_load": "export",
                "dynamodb_export_s3_bucket": "b",
                "dynamodb_export_poll_interval": "often",
            },
            "params.dynamodb_export_poll_interval: invalid duration",
        ),
        (
            {
                "dynamodb_initial_load": "export",
                "dynamodb_export_s3_bucket": "b",
                "dynamodb_export_s3_regoin": "eu-west-1",
            },
            "params.dynamodb_export_s3_regoin: unknown key",
        ),
    ],
)
def test_each_error_names_dataset_and_key(
    tmp_path: Path, params: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        dataset(tmp_path, **params)
    message = str(raised.value)
    assert "dataset 'orders'" in message and expected in message
    assert "\n" not in message
