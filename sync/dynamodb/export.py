"""The initial load from an S3 export: ExportTableToPointInTime, its wait, and its files.

An export reads the table server-side, from its point-in-time recovery backup, without taking
read capacity from it. AWS writes gzip DynamoDB JSON lines under
``<prefix>/AWSDynamoDB/<export id>/data/`` and a manifest listing them
(``manifest-summary.json``, ``manifest-files.json``); an implementation writing the data files
alone (the moto server) has them listed instead. :mod:`.exportfiles` reads them.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from sync.dynamodb.client import DynamoDBClients
from sync.dynamodb.errors import classify
from sync.dynamodb.exportfiles import ExportFile, denied_bucket, missing_bucket, s3_error
from sync.errors import ExportFailed, SyncError
from sync.retry import UNBOUNDED, Backoff, RetryBound, Stopped, retrying
from sync.settings import ExportSettings, SourceSettings

FIRST_POLL_S = 0.25  # polls start fast (a small export may be quick) and back off to the cap


@dataclass(frozen=True)
class ExportDescription:
    """DescribeExport's answer, the parts a load reads. ``manifest`` is the key of
    ``manifest-summary.json`` when AWS names it."""

    arn: str
    status: str  # IN_PROGRESS | COMPLETED | FAILED
    table: str
    bucket: str
    prefix: str
    manifest: str | None = None
    item_count: int | None = None
    billed_size_bytes: int | None = None
    export_time: datetime | None = None
    failure_code: str | None = None
    failure_message: str | None = None

    @property
    def export_id(self) -> str:
        """The last part of the ARN: AWS's folder under ``AWSDynamoDB/``."""
        return self.arn.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ExportProgress:
    """One poll of a running export, for the dataset's status and log."""

    status: str
    item_count: int | None
    billed_size_bytes: int | None
    elapsed_s: float


def make_s3_client(source: SourceSettings, export: ExportSettings) -> Any:
    """The S3 client of the export's bucket: its own region and endpoint when set, else the
    dataset's, and the dataset's credentials. botocore retries once; the sync retries."""
    credentials: dict[str, str] = {}
    if source.auth == "key":
        credentials = {
            "aws_access_key_id": source.access_key_id or "",
            "aws_secret_access_key": source.secret_access_key or "",
        }
        if source.session_token:
            credentials["aws_session_token"] = source.session_token
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=source.connect_timeout_s,
        read_timeout=source.read_timeout_s,
        max_pool_connections=16,
        tcp_keepalive=True,
    )
    return boto3.Session(region_name=export.region or source.region, **credentials).client(
        "s3", endpoint_url=export.endpoint_url or source.endpoint_url, config=config
    )


def request_export(
    clients: DynamoDBClients,
    s3: Any,
    table: str,
    settings: ExportSettings,
    stop: threading.Event,
    on_transient: Callable[[SyncError], None] = lambda error: None,
    bound: RetryBound = UNBOUNDED,
    export_time: datetime | None = None,
    client_token: str | None = None,
) -> str:
    """Ask for a full export of ``table`` in DYNAMODB_JSON; return the export's ARN.

    The files go under ``<prefix>/<table>/<UTC time>/`` of the bucket, a folder of their own,
    so they can be listed without mixing in another export's. The bucket is checked first
    (HeadBucket, with the credentials that will read the files), so a missing or denied one
    fails now rather than minutes into the export. ``export_time`` (default: now) must be at
    or after the stream position the load replays from. Transient failures are retried with
    the same ``client_token`` (default: a new one), which makes the request idempotent.

    Raises:
        ExportFailed: point-in-time recovery is off, the bucket is missing or denied, or the
            export was refused; the message says how to fix it.
        PermanentError: the table does not exist, or another refusal.
        RetriesExhausted: a request kept failing past ``bound``.
        Stopped: ``stop`` was set while waiting to retry.
    """
    table_arn = retrying(lambda: _table_arn(clients, table), stop, on_transient, Backoff(), bound)
    retrying(
        lambda: _check_bucket(s3, settings.bucket, table), stop, on_transient, Backoff(), bound
    )
    folder = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = _table_name(table_arn)
    prefix = "/".join(p for p in (settings.prefix.strip("/"), name, folder) if p)
    kwargs: dict[str, Any] = {
        "TableArn": table_arn,
        "S3Bucket": settings.bucket,
        "S3Prefix": prefix,
        "ExportFormat": "DYNAMODB_JSON",
        "ExportType": "FULL_EXPORT",
        "ClientToken": client_token or uuid.uuid4().hex,
    }
    if export_time is not None:
        kwargs["ExportTime"] = export_time

    def call() -> str:
        try:
            answer = clients.dynamodb.export_table_to_point_in_time(**kwargs)
        except Exception as e:  # noqa: BLE001 - every boto error is classified at this boundary
            raise _request_error(e, table, settings.bucket) from e
        return str(answer["ExportDescription"]["ExportArn"])

    return retrying(call, stop, on_transient, Backoff(), bound)


def wait_export(
    clients: DynamoDBClients,
    export_arn: str,
    settings: ExportSettings,
    stop: threading.Event,
    on_progress: Callable[[ExportProgress], None] = lambda progress: None,
    on_transient: Callable[[SyncError], None] = lambda error: None,
    bound: RetryBound = UNBOUNDED,
) -> ExportDescription:
    """Poll DescribeExport until the export completes; return its description.

    Polls back off from a quarter second up to ``settings.poll_interval``; every answer is
    reported to ``on_progress`` (status, and the item count and billed size when AWS gives
    them).

    Raises:
        ExportFailed: the export failed (its FailureCode and FailureMessage, and the fix for a
            missing or denied bucket), or is still running after ``settings.timeout``.
        RetriesExhausted: DescribeExport kept failing past ``bound``.
        Stopped: ``stop`` was set.
    """
    started = time.monotonic()
    deadline = started + settings.timeout.total_seconds()
    cap_s = max(settings.poll_interval.total_seconds(), 0.01)
    polls = 0
    while True:
        # A DescribeExport failing until the deadline ends the wait too.
        remaining = max(deadline - time.monotonic(), 0.0)
        elapsed_bound = min(remaining, bound.max_elapsed_s or remaining)
        poll_bound = RetryBound(bound.max_retries, elapsed_bound, bound.hint)
        export = retrying(
            lambda: describe_export(clients, export_arn), stop, on_transient, Backoff(), poll_bound
        )
        now = time.monotonic()
        on_progress(
            ExportProgress(
                export.status, export.item_count, export.billed_size_bytes, now - started
            )
        )
        if export.status == "COMPLETED":
            return export
        if export.status == "FAILED":
            raise _failed(export)
        if now >= deadline:
            raise ExportFailed(
                f"the export of DynamoDB table {export.table!r} ({export_arn}) is still "
                f"{export.status} after {settings.timeout}. Fix: raise dynamodb_export_timeout, "
                "or load with a Scan (dynamodb_initial_load: scan); the export goes on in AWS "
                f"and writes to s3://{export.bucket}/{export.prefix}",
                table=export.table,
                bucket=export.bucket,
                export_arn=export_arn,
                code="Timeout",
            )
        if stop.wait(min(cap_s, FIRST_POLL_S * 2**polls, max(deadline - now, 0.0))):
            raise Stopped
        polls += 1


def describe_export(clients: DynamoDBClients, export_arn: str) -> ExportDescription:
    try:
        raw = clients.dynamodb.describe_export(ExportArn=export_arn)["ExportDescription"]
    except Exception as e:  # noqa: BLE001 - every boto error is classified at this boundary
        raise classify(e, f"DescribeExport {export_arn}") from e
    table_arn = str(raw.get("TableArn") or "")

    def number(key: str) -> int | None:
        return int(raw[key]) if raw.get(key) is not None else None

    return ExportDescription(
        arn=export_arn,
        status=str(raw.get("ExportStatus", "")),
        table=_table_name(table_arn),
        bucket=str(raw.get("S3Bucket", "")),
        prefix=str(raw.get("S3Prefix") or "").strip("/"),
        manifest=raw.get("ExportManifest") or None,
        item_count=number("ItemCount"),
        billed_size_bytes=number("BilledSizeBytes"),
        export_time=raw.get("ExportTime"),
        failure_code=raw.get("FailureCode") or None,
        failure_message=raw.get("FailureMessage") or None,
    )


def export_files(
    s3: Any,
    export: ExportDescription,
    stop: threading.Event,
    on_transient: Callable[[SyncError], None] = lambda error: None,
    bound: RetryBound = UNBOUNDED,
) -> list[ExportFile]:
    """The data files of a completed export: from its manifest (``manifest-summary.json`` then
    ``manifest-files.json``) when there is one, else the ``data/*.gz`` objects listed under
    ``<prefix>/AWSDynamoDB/``.

    Raises:
        ExportFailed: the bucket is missing or denied, no data file is found, or the listing
            holds several exports and no manifest says which files are this one's.
    """

    def attempt(call: Callable[[], Any]) -> Any:
        return retrying(call, stop, on_transient, Backoff(), bound)

    root = "/".join(p for p in (export.prefix, "AWSDynamoDB") if p) + "/"
    # ExportManifest is read as a key of the bucket, else as one under the prefix.
    summaries = [f"{root}{export.export_id}/manifest-summary.json"]
    if export.manifest:
        summaries[:0] = [export.manifest, "/".join((export.prefix, export.manifest))]
    for summary_key in dict.fromkeys(summaries):
        summary = attempt(partial(_get_object, s3, export, summary_key))
        if summary is not None:
            files_key = json.loads(summary).get("manifestFilesS3Key") or summary_key.replace(
                "manifest-summary.json", "manifest-files.json"
            )
            lines = attempt(partial(_get_object, s3, export, files_key, required=True))
            entries = [json.loads(line) for line in lines.splitlines() if line.strip()]
            return [_manifest_entry(entry) for entry in entries]
    keys = [
        key
        for key in attempt(lambda: _list_keys(s3, export, root))
        if key.split("/")[-2:-1] == ["data"] and key.endswith(".gz")
    ]
    folders = {key[len(root) :].split("/", 1)[0] for key in keys}
    if export.export_id in folders:
        folders = {export.export_id}
    if len(folders) > 1:
        raise ExportFailed(
            f"s3://{export.bucket}/{root} holds the files of {len(folders)} exports and no "
            f"manifest says which are those of {export.arn}",
            table=export.table,
            bucket=export.bucket,
            export_arn=export.arn,
        )
    files = [
        ExportFile(key) for key in sorted(keys) if key[len(root) :].split("/", 1)[0] in folders
    ]
    if not files:
        raise ExportFailed(
            f"the export {export.arn} completed but no manifest or data/*.gz file is under "
            f"s3://{export.bucket}/{root}",
            table=export.table,
            bucket=export.bucket,
            export_arn=export.arn,
        )
    return files


def _table_name(table_arn: str) -> str:
    return table_arn.split(":table/", 1)[-1].split("/", 1)[0]


def _manifest_entry(entry: dict[str, Any]) -> ExportFile:
    count = entry.get("itemCount")
    return ExportFile(str(entry["dataFileS3Key"]), None if count is None else int(count))


def _table_arn(clients: DynamoDBClients, table: str) -> str:
    if table.startswith("arn:"):
        return table
    try:
        return str(clients.dynamodb.describe_table(TableName=table)["Table"]["TableArn"])
    except Exception as e:  # noqa: BLE001 - every boto error is classified at this boundary
        raise classify(e, f"DescribeTable {table}") from e


def _check_bucket(s3: Any, bucket: str, table: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise missing_bucket(bucket, table) from e
        if code in ("403", "AccessDenied"):
            raise denied_bucket(bucket, table, f"HeadBucket: {code}") from e
        raise s3_error(e, f"HeadBucket {bucket}", bucket, table) from e
    except Exception as e:  # noqa: BLE001 - every boto error is classified at this boundary
        raise s3_error(e, f"HeadBucket {bucket}", bucket, table) from e


def _request_error(error: Exception, table: str, bucket: str) -> SyncError:
    context = f"ExportTableToPointInTime {table} to s3://{bucket}"
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = str(error.response.get("Error", {}).get("Message", "")) or str(error)
        if code == "PointInTimeRecoveryUnavailableException":
            return ExportFailed(
                f"DynamoDB table {table!r} cannot be exported to S3: point-in-time recovery is "
                f"not enabled ({message}). Fix: aws dynamodb update-continuous-backups "
                f"--table-name {table} --point-in-time-recovery-specification "
                "PointInTimeRecoveryEnabled=true (or set dynamodb_initial_load: scan)",
                table=table,
                bucket=bucket,
                code=code,
            )
        if code == "AccessDeniedException":
            return ExportFailed(
                f"{context}: not allowed ({message}). Fix: allow "
                "dynamodb:ExportTableToPointInTime and dynamodb:DescribeExport on the table "
                f"(and s3:PutObject on arn:aws:s3:::{bucket}/*) for the dataset's credentials",
                table=table,
                bucket=bucket,
                code=code,
            )
    return classify(error, context)


def _failed(export: ExportDescription) -> ExportFailed:
    if export.failure_code == "S3NoSuchBucket":
        return missing_bucket(export.bucket, export.table)
    if export.failure_code == "S3AccessDenied":
        return denied_bucket(export.bucket, export.table, str(export.failure_message))
    return ExportFailed(
        f"the export of DynamoDB table {export.table!r} ({export.arn}) failed: "
        f"{export.failure_code}: {export.failure_message}",
        table=export.table,
        bucket=export.bucket,
        export_arn=export.arn,
        code=export.failure_code,
    )


def _get_object(s3: Any, export: ExportDescription, key: str, required: bool = False) -> str | None:
    try:
        return str(s3.get_object(Bucket=export.bucket, Key=key)["Body"].read().decode())
    except ClientError as e:
        if not required and e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise s3_error(
            e, f"GetObject s3://{export.bucket}/{key}", export.bucket, export.table
        ) from e
    except Exception as e:  # noqa: BLE001 - every boto error is classified at this boundary
        raise s3_error(
            e, f"GetObject s3://{export.bucket}/{key}", export.bucket, export.table
        ) from e


def _list_keys(s3: Any, export: ExportDescription, prefix: str) -> list[str]:
    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=export.bucket, Prefix=prefix
        ):
            keys.extend(str(o["Key"]) for o in page.get("Contents", []))
    except Exception as e:  # noqa: BLE001 - every boto error is classified at this boundary
        raise s3_error(e, f"ListObjectsV2 s3://{export.bucket}/{prefix}", export.bucket) from e
    return keys
