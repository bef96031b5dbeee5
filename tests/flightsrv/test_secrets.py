"""Spice's secret references in the spicepod: resolved through the pod's ``secrets:`` stores,
never used as literal credentials; a bad reference is a config error naming key and secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flightsrv.config import ConfigError, parse_config
from tests.flightsrv.test_config import pod

SECRET_KEY = "params__dynamodb_aws_secret_access_key"


def secret_of(doc: dict[str, Any], folder: Path) -> str | None:
    (dataset,) = parse_config(doc, folder / "spicepod.yaml").datasets
    return dataset.source.secret_access_key


@pytest.mark.parametrize(
    "reference",
    ["${env:DM_SECRET}", "${ env:DM_SECRET }", "${secrets:DM_SECRET}", "${ secrets : dm_secret }"],
)
def test_references_read_the_default_env_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: str
) -> None:
    monkeypatch.setenv("DM_SECRET", "s3cr3t")
    assert secret_of(pod(**{SECRET_KEY: reference}), tmp_path) == "s3cr3t"


def test_references_inside_a_longer_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DM_HOST", "127.0.0.1")
    monkeypatch.setenv("DM_PORT", "8000")
    doc = pod(params__endpoint_url="http://${env:DM_HOST}:${ secrets:DM_PORT }/")
    (dataset,) = parse_config(doc, tmp_path / "spicepod.yaml").datasets
    assert dataset.source.endpoint_url == "http://127.0.0.1:8000/"


def test_env_store_with_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DM_FILE_SECRET", raising=False)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "prod.env").write_text(
        "# credentials\nexport DM_FILE_SECRET='from file'\nOTHER=x # comment\n"
    )
    doc = pod(**{SECRET_KEY: "${ secrets:DM_FILE_SECRET }"})
    doc["secrets"] = [{"from": "env", "name": "env", "params": {"file_path": "conf/prod.env"}}]
    assert secret_of(doc, tmp_path) == "from file"


def test_default_store_reads_dotenv_files_of_the_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DM_LOCAL", raising=False)
    (tmp_path / ".env").write_text("DM_LOCAL=shared\n")
    (tmp_path / ".env.local").write_text("DM_LOCAL=mine\n")
    assert secret_of(pod(**{SECRET_KEY: "${env:DM_LOCAL}"}), tmp_path) == "mine"


def test_the_environment_wins_over_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DM_BOTH", "env")
    (tmp_path / ".env").write_text("DM_BOTH=file\n")
    assert secret_of(pod(**{SECRET_KEY: "${env:DM_BOTH}"}), tmp_path) == "env"


def test_named_store_and_last_declared_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DM_K", raising=False)
    (tmp_path / "a.env").write_text("DM_K=a\n")
    (tmp_path / "b.env").write_text("DM_K=b\n")
    stores = [
        {"from": "env", "name": "first", "params": {"file_path": "a.env"}},
        {"from": "env", "name": "second", "params": {"file_path": "b.env"}},
    ]
    doc = pod(
        **{SECRET_KEY: "${secrets:DM_K}", "params__dynamodb_aws_access_key_id": "${first:DM_K}"}
    )
    doc["secrets"] = stores
    (dataset,) = parse_config(doc, tmp_path / "spicepod.yaml").datasets
    assert (dataset.source.access_key_id, dataset.source.secret_access_key) == ("a", "b")


@pytest.mark.parametrize(
    "reference, expected",
    [
        ("${secrets:}", "malformed secret reference '${secrets:}'"),
        ("${foo:BAR}", "${foo:BAR}: no secret store named 'foo'"),
        ("${env:X", "malformed secret reference '${env:X'"),
        ("${env}", "malformed secret reference '${env}'"),
        ("${ env:DM_NOT_SET_42 }", "environment variable DM_NOT_SET_42 is not set"),
        ("${secrets:DM_NOT_SET_42}", "secret DM_NOT_SET_42 is in no secret store"),
    ],
)
def test_bad_references_are_errors_naming_key_and_secret(
    tmp_path: Path, reference: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(pod(**{SECRET_KEY: reference}), tmp_path / "spicepod.yaml")
    message = str(raised.value)
    assert expected in message
    assert "dataset 'orders': params.dynamodb_aws_secret_access_key" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "stores, expected",
    [
        ([{"from": "keyring", "name": "k"}], "secrets[0].from: secret store 'keyring' is not"),
        ([{"from": "env", "params": {"file_path": "nope.env"}}], "nope.env is not a file"),
        ([{"from": "env", "colour": 1}], "secrets[0]: colour: unknown key"),
        ({"from": "env"}, "secrets: expected a list"),
    ],
)
def test_bad_stores(tmp_path: Path, stores: Any, expected: str) -> None:
    doc = pod()
    doc["secrets"] = stores
    with pytest.raises(ConfigError) as raised:
        parse_config(doc, tmp_path / "spicepod.yaml")
    assert expected in str(raised.value)


def test_cli_exits_2_on_an_unresolved_secret(tmp_path: Path) -> None:
    path = tmp_path / "spicepod.yaml"
    path.write_text(yaml.safe_dump(pod(**{SECRET_KEY: "${secrets:DM_NOT_SET_42}"})))
    result = subprocess.run(
        [sys.executable, "-m", "flightsrv", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "dynamodb_aws_secret_access_key" in line and "DM_NOT_SET_42" in line
