"""boto3 clients for a dataset, with Scan and GetRecords bodies handed back raw.

Signing, credentials and endpoint resolution stay botocore's. For the two hot operations a
response parser returns the undecoded body as ``{"RawBody": bytes}`` so :mod:`.rawparse` can
turn it into Arrow in bulk; errors are still parsed by botocore into ``ClientError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.parsers import ResponseParserFactory

from sync.settings import SourceSettings

RAW_OUTPUT_SHAPES = frozenset({"ScanOutput", "GetRecordsOutput"})
# botocore's credential providers (their METHOD) each dynamodb_aws_iam_role_source allows.
ROLE_SOURCE_PROVIDERS = {"env": {"env"}, "metadata": {"container-role", "iam-role"}}


class _RawBodyParser:
    """Wraps botocore's parser; successful raw-shaped responses are returned undecoded."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def parse(self, response: dict[str, Any], shape: Any) -> dict[str, Any]:
        if response["status_code"] < 300 and shape is not None and shape.name in RAW_OUTPUT_SHAPES:
            return {
                "RawBody": response["body"],
                "ResponseMetadata": {
                    "HTTPStatusCode": response["status_code"],
                    "HTTPHeaders": response["headers"],
                },
            }
        return self._inner.parse(response, shape)


class _RawBodyParserFactory(ResponseParserFactory):
    def create_parser(self, protocol_name: str) -> Any:
        return _RawBodyParser(super().create_parser(protocol_name))


@dataclass(frozen=True)
class DynamoDBClients:
    """The table client and the streams client of one dataset."""

    dynamodb: Any
    streams: Any


def make_clients(settings: SourceSettings) -> DynamoDBClients:
    """Build both clients from the dataset's connection settings.

    botocore's retries are limited to one attempt: the sync retries with its own backoff so
    every transient error is counted (``errors_transient_total``) and never hidden.
    """
    core = botocore.session.Session()
    core.register_component("response_parser_factory", _RawBodyParserFactory())
    credentials: dict[str, str] = {}
    if settings.auth == "key":
        credentials = {
            "aws_access_key_id": settings.access_key_id or "",
            "aws_secret_access_key": settings.secret_access_key or "",
        }
        if settings.session_token:
            credentials["aws_session_token"] = settings.session_token
    if settings.auth == "iam_role" and settings.iam_role_source != "auto":
        # boto3's chain restricted to the providers dynamodb_aws_iam_role_source names.
        resolver = core.get_component("credential_provider")
        keep = ROLE_SOURCE_PROVIDERS[settings.iam_role_source]
        resolver.providers = [p for p in resolver.providers if p.METHOD in keep]
    session = boto3.Session(botocore_session=core, region_name=settings.region, **credentials)
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        max_pool_connections=32,
        tcp_keepalive=True,
    )
    kwargs: dict[str, Any] = {"config": config}
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    return DynamoDBClients(
        session.client("dynamodb", **kwargs), session.client("dynamodbstreams", **kwargs)
    )
