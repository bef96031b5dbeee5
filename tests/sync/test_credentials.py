"""``dynamodb_aws_iam_role_source`` restricts boto3's credential chain to what it names."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import NoCredentialsError

from sync.dynamodb.client import make_clients
from sync.dynamodb.errors import classify
from sync.settings import SourceSettings


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no metadata service here
    for name in ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)


def access_key(source: str) -> str | None:
    settings = SourceSettings("t", "us-east-1", "iam_role", iam_role_source=source)  # type: ignore[arg-type]
    credentials = make_clients(settings).dynamodb._request_signer._credentials  # noqa: SLF001
    return None if credentials is None else str(credentials.access_key)


def test_auto_and_env_take_the_environment_and_metadata_does_not() -> None:
    assert access_key("auto") == "from-env"
    assert access_key("env") == "from-env"
    assert access_key("metadata") is None


def test_no_credentials_says_how_to_give_them() -> None:
    message = str(classify(NoCredentialsError(), "DescribeTable t"))
    assert message.startswith("DescribeTable t: no AWS credentials found. Fix:")
    assert "dynamodb_aws_iam_role_source" in message and "dynamodb_aws_auth: key" in message
