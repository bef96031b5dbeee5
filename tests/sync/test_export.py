"""The initial load from an S3 export, against the moto server (DynamoDB and S3 on one
endpoint): the export's pages load the same rows and types as a Scan, and each way an export
can go wrong ends in an error that says what to do."""

from __future__ import annotations

import base64
import gzip
import json
import random
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest

from sync.accelerators.base import open_accelerator
from sync.bootstrap import apply_load
from sync.dynamodb import exportfiles
from sync.dynamodb.client import DynamoDBClients, make_clients
from sync.dynamodb.export import (
    ExportDescription,
    ExportProgress,
    export_files,
    make_s3_client,
    request_export,
    wait_export,
)
from sync.dynamodb.exportfiles import ExportFile, export_pages
from sync.dynamodb.load import scan_batches
from sync.dynamodb.scan import scan_table
from sync.dynamodb.table import describe_table
from sync.dynamodb.typeoptions import TypeOptions
from sync.errors import ExportFailed, RetriesExhausted, SyncError
from sync.retry import Stopped
from sync.schema import TableSpec
from sync.settings import AccelerationSettings, ExportSettings, SourceSettings
from tests.dynamo import CREDENTIALS, REGION, Emulator, create_table, iter_batches
from tests.streamfaults import StreamFaultProxy

FAST = {"poll_interval": timedelta(milliseconds=100), "timeout": timedelta(seconds=60)}


def source_settings(url: str, table: str) -> SourceSettings:
    return SourceSettings(
        table,
        region=REGION,
        auth="key",
        access_key_id=CREDENTIALS["aws_access_key_id"],
        secret_access_key=CREDENTIALS["aws_secret_access_key"],
        endpoint_url=url,
    )


class Export:
    """The clients and settings of one table's export, on ``url`` (the emulator or a proxy
    in front of it); S3 always goes straight to the emulator."""

    def __init__(self, emulator: Emulator, table: str, url: str | None = None, **kw: Any) -> None:
        self.bucket = f"exports-{uuid.uuid4().hex[:12]}"
        self.settings = ExportSettings(
            self.bucket, "mirror/exports", endpoint_url=emulator.url, **{**FAST, **kw}
        )
        source = source_settings(url or emulator.url, table)
        self.clients: DynamoDBClients = make_clients(source)
        self.s3 = make_s3_client(source, self.settings)
        self.table = table
        self.stop = threading.Event()
        self.transient: list[SyncError] = []
        self.progress: list[ExportProgress] = []

    def create_bucket(self) -> None:
        self.s3.create_bucket(Bucket=self.bucket)

    def request(self) -> str:
        return request_export(
            self.clients, self.s3, self.table, self.settings, self.stop, self.transient.append
        )

    def wait(self, arn: str) -> ExportDescription:
        return wait_export(
            self.clients,
            arn,
            self.settings,
            self.stop,
            self.progress.append,
            self.transient.append,
        )

    def pages(self, files: list[ExportFile], **kw: Any) -> Iterator[pa.StructArray]:
        return export_pages(self.s3, self.bucket, files, self.stop, self.transient.append, **kw)


def enable_pitr(ddb: Any, table: str) -> None:
    ddb.update_continuous_backups(
        TableName=table,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )


def rich_item(rng: random.Random, i: int) -> dict[str, Any]:
    """Every kind of value, nested, with strings that look like dates and times."""
    item: dict[str, Any] = {
        "pk": {"S": f"k{i:05d}"},
        "qty": {"N": str(rng.randint(-1000, 1_000_000))},
        "price": {"N": f"{rng.uniform(0, 1000):.2f}"},
        "day": {"S": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"},
        "created": {"S": f"2024-03-{rng.randint(1, 28):02d}T14:30:00+02:00"},
        "blob": {"B": rng.randbytes(8)},
        "tags": {"SS": sorted({f"t{rng.randint(0, 9)}" for _ in range(3)})},
        "scores": {"NS": sorted({str(rng.randint(0, 100)) for _ in range(3)})},
        "active": {"BOOL": rng.random() < 0.5},
        "address": {
            "M": {
                "city": {"S": rng.choice(["Lyon", "Oslo", "Lima"])},
                "zip": {"N": str(rng.randint(1000, 99999))},
                "since": {"S": "2023-01-02"},
                "geo": {"M": {"lat": {"N": f"{rng.uniform(-90, 90):.4f}"}}},
            }
        },
        "history": {
            "L": [
                {"M": {"at": {"S": "2024-01-01T00:00:00Z"}, "n": {"N": str(rng.randint(1, 9))}}},
                {"M": {"at": {"S": "2024-02-01T00:00:00Z"}, "n": {"N": "2"}}},
            ]
        },
    }
    if rng.random() < 0.3:
        item["note"] = {"S": f"note {rng.random():.6f}"}
        item["nothing"] = {"NULL": True}
    if rng.random() < 0.2:
        item["bins"] = {"BS": [b"a", rng.randbytes(4)]}
    return item


def seed(emulator: Emulator, table: str, items: int) -> None:
    client = emulator.client()
    create_table(client, table)
    rng = random.Random(items)
    for batch in iter_batches([rich_item(rng, i) for i in range(items)], 25):
        requests = [{"PutRequest": {"Item": item}} for item in batch]
        while requests:
            answer = client.batch_write_item(RequestItems={table: requests})
            requests = answer.get("UnprocessedItems", {}).get(table, [])


def load(pages: Iterable[pa.StructArray], spec: TableSpec) -> tuple[TableSpec, list[dict]]:
    """``pages`` loaded by the bootstrap's own load function into a DuckDB table."""
    with open_accelerator(AccelerationSettings("duckdb", "memory")) as acc:  # type: ignore[arg-type]
        acc.create_table(spec)
        batches = scan_batches(pages, spec, TypeOptions(support=acc.type_support), 10)
        loaded, _ = apply_load(acc, "t", spec, batches)
        rows = acc.query_handle().execute('SELECT * FROM "t" ORDER BY pk').read_all()
    return loaded, rows.to_pylist()


def test_an_export_loads_the_same_rows_and_types_as_a_scan(
    emulator: Emulator, ddb: Any, table_name: str
) -> None:
    items = 3_000
    seed(emulator, table_name, items)
    enable_pitr(ddb, table_name)
    export = Export(emulator, table_name)
    export.create_bucket()

    description = export.wait(export.request())
    files = export_files(export.s3, description, export.stop)
    # Small pages: lines are cut across many pages, read by two workers.
    export_pages_read = list(export.pages(files, workers=2, page_bytes=64 << 10))
    scan_pages = list(scan_table(export.clients, table_name, 2, export.stop, lambda e: None))

    assert description.status == "COMPLETED" and description.item_count == items
    assert export.progress[-1].status == "COMPLETED"
    assert export.progress[-1].item_count == items
    assert description.prefix.startswith(f"mirror/exports/{table_name}/")
    assert all(f.key.startswith(f"{description.prefix}/AWSDynamoDB/") for f in files)
    assert len(export_pages_read) > 10
    assert sum(len(p) for p in export_pages_read) == items
    # Strings that look like times stay strings, at the top and nested, as in a Scan page.
    first = export_pages_read[0].type
    assert first.field("day").type == pa.struct([pa.field("S", pa.string())])
    assert first.field("created").type == pa.struct([pa.field("S", pa.string())])

    spec = describe_table(export.clients, table_name).empty_spec("t")
    export_spec, export_rows = load(export_pages_read, spec)
    scan_spec, scan_rows = load(scan_pages, spec)
    assert len(export_rows) == items
    assert sorted(map(tuple, _columns(export_spec))) == sorted(map(tuple, _columns(scan_spec)))
    assert export_rows == scan_rows
    # The data really is rich: nested, binary, sets, nulls.
    assert {"address", "history", "blob", "tags", "scores", "bins", "note"} <= {
        c.name for c in export_spec.columns
    }


def _columns(spec: TableSpec) -> list[tuple[str, str]]:
    return [(c.name, str(c.type)) for c in spec.columns]


def test_point_in_time_recovery_off_gives_the_command_that_enables_it(
    emulator: Emulator, ddb: Any, table_name: str
) -> None:
    seed(emulator, table_name, 3)
    export = Export(emulator, table_name)
    export.create_bucket()
    with pytest.raises(ExportFailed) as failed:
        export.request()
    assert (
        f"aws dynamodb update-continuous-backups --table-name {table_name} "
        "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true"
    ) in str(failed.value)
    assert failed.value.table == table_name
    assert failed.value.code == "PointInTimeRecoveryUnavailableException"
    assert not failed.value.retriable


def test_a_missing_bucket_is_named_before_the_export_starts(
    emulator: Emulator, ddb: Any, table_name: str
) -> None:
    seed(emulator, table_name, 3)
    enable_pitr(ddb, table_name)
    export = Export(emulator, table_name)  # its bucket is never created
    with pytest.raises(ExportFailed) as failed:
        export.request()
    assert f"S3 bucket {export.bucket!r}" in str(failed.value)
    assert f"aws s3 mb s3://{export.bucket}" in str(failed.value)
    assert failed.value.bucket == export.bucket and failed.value.code == "S3NoSuchBucket"
    exports = ddb.list_exports(
        TableArn=ddb.describe_table(TableName=table_name)["Table"]["TableArn"]
    )
    assert exports["ExportSummaries"] == []  # nothing was requested


def test_an_export_that_fails_gives_its_failure(
    emulator: Emulator, ddb: Any, table_name: str
) -> None:
    seed(emulator, table_name, 3)
    enable_pitr(ddb, table_name)
    export = Export(emulator, table_name)
    # Requested without the bucket check: the emulator's export itself fails (S3NoSuchBucket),
    # as AWS's does when the bucket goes away while it runs.
    arn = ddb.export_table_to_point_in_time(
        TableArn=ddb.describe_table(TableName=table_name)["Table"]["TableArn"],
        S3Bucket=export.bucket,
        S3Prefix="x",
        ExportFormat="DYNAMODB_JSON",
    )["ExportDescription"]["ExportArn"]
    with pytest.raises(ExportFailed) as failed:
        export.wait(arn)
    assert f"S3 bucket {export.bucket!r}" in str(failed.value)
    assert failed.value.code == "S3NoSuchBucket"
    assert export.progress[-1].status == "FAILED"


def test_access_denied_says_which_permissions_to_grant(
    emulator: Emulator, ddb: Any, table_name: str
) -> None:
    seed(emulator, table_name, 3)
    enable_pitr(ddb, table_name)
    with StreamFaultProxy(emulator.url, seed=15) as proxy:
        proxy.force_error("ExportTableToPointInTime", "AccessDeniedException")
        export = Export(emulator, table_name, proxy.url)
        export.create_bucket()
        with pytest.raises(ExportFailed) as failed:
            export.request()
    assert "dynamodb:ExportTableToPointInTime" in str(failed.value)
    assert failed.value.code == "AccessDeniedException"


def test_throttled_polls_are_retried_and_counted(
    emulator: Emulator, ddb: Any, table_name: str
) -> None:
    seed(emulator, table_name, 10)
    enable_pitr(ddb, table_name)
    with StreamFaultProxy(emulator.url, seed=15) as proxy:
        export = Export(emulator, table_name, proxy.url)
        export.create_bucket()
        arn = export.request()
        proxy.force_error("DescribeExport", "ThrottlingException", times=2)
        description = export.wait(arn)
    assert description.status == "COMPLETED" and description.item_count == 10
    assert len(export.transient) == 2


def test_the_stop_event_ends_the_wait(emulator: Emulator, ddb: Any, table_name: str) -> None:
    seed(emulator, table_name, 3)
    enable_pitr(ddb, table_name)
    with StreamFaultProxy(emulator.url, seed=15) as proxy:
        proxy.hold_exports()  # an export that runs for minutes, as AWS's do
        export = Export(emulator, table_name, proxy.url, poll_interval=timedelta(seconds=30))
        export.create_bucket()
        arn = export.request()
        threading.Timer(0.5, export.stop.set).start()
        started = time.monotonic()
        with pytest.raises(Stopped):
            export.wait(arn)
        elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 3.0
    assert export.progress and {p.status for p in export.progress} == {"IN_PROGRESS"}


def test_an_export_running_past_the_timeout_is_an_error(
    emulator: Emulator, ddb: Any, table_name: str
) -> None:
    seed(emulator, table_name, 3)
    enable_pitr(ddb, table_name)
    with StreamFaultProxy(emulator.url, seed=15) as proxy:
        proxy.hold_exports()
        export = Export(
            emulator,
            table_name,
            proxy.url,
            poll_interval=timedelta(milliseconds=200),
            timeout=timedelta(seconds=1),
        )
        export.create_bucket()
        arn = export.request()
        started = time.monotonic()
        with pytest.raises(ExportFailed) as failed:
            export.wait(arn)
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 4.0
    assert "still IN_PROGRESS after 0:00:01" in str(failed.value)
    assert "dynamodb_export_timeout" in str(failed.value)
    assert failed.value.export_arn == arn and failed.value.code == "Timeout"
    assert len(export.progress) >= 3  # polled on a backoff, not once


def aws_json(item: dict[str, Any]) -> dict[str, Any]:
    """An item as AWS writes it in an export: binary values as base64 text."""
    out = dict(item)
    for name, value in item.items():
        if "B" in value:
            out[name] = {"B": base64.b64encode(value["B"]).decode()}
        elif "BS" in value:
            out[name] = {"BS": [base64.b64encode(b).decode() for b in value["BS"]]}
    return out


def gzip_lines(
    items: list[dict[str, Any]], members: int = 1, trailing_newline: bool = True
) -> bytes:
    lines = [json.dumps({"Item": aws_json(item)}) for item in items]
    parts = [lines[i::members] for i in range(members)]
    out = b""
    for n, part in enumerate(parts):
        text = "\n".join(part)
        if trailing_newline or n < members - 1:
            text += "\n"
        out += gzip.compress(text.encode())
    return out


@pytest.mark.parametrize("manifest", ["key", "under the prefix", "unnamed"])
def test_files_listed_by_aws_manifests_are_read_in_parallel(
    emulator: Emulator, table_name: str, manifest: str
) -> None:
    """The layout AWS writes: manifest-summary.json naming manifest-files.json, which lists
    the data files (one concatenating gzip members, one without a final newline). The
    summary is found whether DescribeExport names it by key, by its path under the prefix,
    or not at all (then it is where AWS puts it, under the export's id)."""
    export = Export(emulator, table_name)
    export.create_bucket()
    prefix, export_id = "mirror/exports/t/20261205T000000Z", "01733356800000-abcd1234"
    folder = f"{prefix}/AWSDynamoDB/{export_id}"
    rng = random.Random(7)
    items = [rich_item(rng, i) for i in range(900)]
    chunks = [items[0:300], items[300:700], items[700:900]]
    manifest_lines = []
    for n, chunk in enumerate(chunks):
        key = f"{folder}/data/file{n}.json.gz"
        body = gzip_lines(chunk, members=3 if n == 1 else 1, trailing_newline=n != 2)
        export.s3.put_object(Bucket=export.bucket, Key=key, Body=body)
        manifest_lines.append(json.dumps({"itemCount": len(chunk), "dataFileS3Key": key}))
    files_key = f"{folder}/manifest-files.json"
    export.s3.put_object(Bucket=export.bucket, Key=files_key, Body="\n".join(manifest_lines))
    summary = {"manifestFilesS3Key": files_key, "itemCount": len(items)}
    export.s3.put_object(
        Bucket=export.bucket, Key=f"{folder}/manifest-summary.json", Body=json.dumps(summary)
    )
    # A data file no manifest lists (another export's, say) is not read.
    export.s3.put_object(
        Bucket=export.bucket, Key=f"{folder}/data/stray.json.gz", Body=gzip_lines(items[:5])
    )
    description = ExportDescription(
        f"arn:aws:dynamodb:us-east-1:123456789012:table/t/export/{export_id}",
        "COMPLETED",
        "t",
        export.bucket,
        prefix,
        manifest={
            "key": f"{folder}/manifest-summary.json",
            "under the prefix": f"AWSDynamoDB/{export_id}/manifest-summary.json",
            "unnamed": None,
        }[manifest],
    )

    files = export_files(export.s3, description, export.stop)
    pages = list(export.pages(files, workers=3, page_bytes=16 << 10))

    assert [f.item_count for f in files] == [300, 400, 200]
    keys = sorted(r["S"] for p in pages for r in p.field("pk").to_pylist())
    assert keys == sorted(item["pk"]["S"] for item in items)
    assert all(p.type.field("day").type == pa.struct([("S", pa.string())]) for p in pages)


def test_a_stopped_read_ends_without_reading_everything(
    emulator: Emulator, table_name: str
) -> None:
    export = Export(emulator, table_name)
    export.create_bucket()
    rng = random.Random(3)
    files = []
    for n in range(4):
        key = f"x/AWSDynamoDB/id/data/{n}.json.gz"
        body = gzip_lines([rich_item(rng, n * 1000 + i) for i in range(1000)])
        export.s3.put_object(Bucket=export.bucket, Key=key, Body=body)
        files.append(ExportFile(key))
    pages = export.pages(files, workers=2, page_bytes=8 << 10)
    read = len(next(pages))
    export.stop.set()
    with pytest.raises(Stopped):
        for page in pages:
            read += len(page)
    assert read < 4000


def test_a_download_lost_mid_file_resumes_where_it_stopped(
    emulator: Emulator, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exportfiles, "CHUNK_BYTES", 8 << 10)  # cuts land after whole chunks
    export = Export(emulator, table_name)
    export.create_bucket()
    rng = random.Random(5)
    items = [rich_item(rng, i) for i in range(3_000)]
    key = "x/AWSDynamoDB/id/data/0.json.gz"
    body = gzip_lines(items)
    export.s3.put_object(Bucket=export.bucket, Key=key, Body=body)
    assert len(body) > 60_000
    with StreamFaultProxy(emulator.url, seed=15) as proxy:
        source = source_settings(proxy.url, table_name)
        s3 = make_s3_client(source, ExportSettings(export.bucket))
        proxy.cut_objects(20_000, 30_000)  # the first answer, then the resumed one (Range)
        pages = list(
            export_pages(s3, export.bucket, [ExportFile(key)], export.stop, export.transient.append)
        )
        gets = proxy.requests["GET"]
    keys = [r["S"] for p in pages for r in p.field("pk").to_pylist()]
    assert sorted(keys) == [item["pk"]["S"] for item in items]  # each line once
    assert len(export.transient) == 2 and gets == 3


def test_a_truncated_or_short_file_is_an_error_naming_it(
    emulator: Emulator, table_name: str
) -> None:
    export = Export(emulator, table_name)
    export.create_bucket()
    rng = random.Random(9)
    body = gzip_lines([rich_item(rng, i) for i in range(500)])
    export.s3.put_object(Bucket=export.bucket, Key="x/data/cut.json.gz", Body=body[:-100])
    export.s3.put_object(Bucket=export.bucket, Key="x/data/short.json.gz", Body=body)

    with pytest.raises(ExportFailed, match=r"x/data/cut\.json\.gz: ValueError: .*truncated"):
        list(export.pages([ExportFile("x/data/cut.json.gz")]))
    with pytest.raises(ExportFailed, match=r"short\.json\.gz holds 500 items, its manifest says"):
        list(export.pages([ExportFile("x/data/short.json.gz", 501)]))


def test_polls_failing_until_the_timeout_end_the_wait(
    emulator: Emulator, ddb: Any, table_name: str
) -> None:
    seed(emulator, table_name, 3)
    enable_pitr(ddb, table_name)
    with StreamFaultProxy(emulator.url, seed=15) as proxy:
        export = Export(emulator, table_name, proxy.url, timeout=timedelta(seconds=1))
        export.create_bucket()
        arn = export.request()
        proxy.force_error("DescribeExport", "ThrottlingException")  # every poll, for good
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match="DescribeExport"):
            export.wait(arn)
        elapsed = time.monotonic() - started
    assert elapsed < 15.0  # within the timeout and one last backoff (capped at 10 s)
    assert export.transient and not export.progress
