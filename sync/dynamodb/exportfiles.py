"""Reading an S3 export's data files: gzip DynamoDB JSON lines, in parallel, as Arrow pages.

Each file is downloaded as a stream, decompressed and cut into pages of whole lines, and every
page is parsed in bulk by :func:`~sync.dynamodb.rawparse.parse_export_lines` into the typed
items a Scan page holds. A few files are read at once: download, zlib and pyarrow's JSON
reader all release the GIL, so the workers use the cores while the caller loads the pages. A
bounded queue between them keeps memory flat whatever the export's size.
"""

from __future__ import annotations

import queue
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa
from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError

from sync.dynamodb.errors import classify
from sync.dynamodb.fanin import FanIn
from sync.dynamodb.rawparse import parse_export_lines
from sync.errors import ExportFailed, SyncError, TransientError
from sync.retry import UNBOUNDED, Backoff, RetryBound, Stopped, retrying

READ_WORKERS = 2
PAGE_BYTES = 4 << 20  # decompressed JSON per page: about 10,000 to 40,000 items
CHUNK_BYTES = 256 << 10  # compressed bytes per read (JSON inflates about 10x)
_GZIP_WBITS = 16 + zlib.MAX_WBITS


@dataclass(frozen=True)
class ExportFile:
    """One data object of an export; ``item_count`` as its manifest says (None: listed)."""

    key: str
    item_count: int | None = None


def s3_error(error: Exception, context: str, bucket: str, table: str | None = None) -> SyncError:
    """The sync error for an S3 call on the export's ``bucket``: a missing or denied bucket
    says what to do; a body cut mid-stream is transient (the read resumes where it stopped)."""
    if isinstance(error, ResponseStreamingError | IncompleteReadError):
        return TransientError(f"{context}: {error}")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            return missing_bucket(bucket, table)
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            return denied_bucket(bucket, table, f"{context}: {code}")
    return classify(error, context)


def missing_bucket(bucket: str, table: str | None) -> ExportFailed:
    return ExportFailed(
        f"S3 bucket {bucket!r} for the export of DynamoDB table {table!r} does not exist. "
        f"Fix: create it (aws s3 mb s3://{bucket}) in the table's account and region, or set "
        "dynamodb_export_s3_bucket to an existing bucket",
        table=table,
        bucket=bucket,
        code="S3NoSuchBucket",
    )


def denied_bucket(bucket: str, table: str | None, detail: str) -> ExportFailed:
    return ExportFailed(
        f"access to S3 bucket {bucket!r} for the export of DynamoDB table {table!r} was "
        f"denied ({detail}). Fix: allow s3:PutObject and s3:AbortMultipartUpload (the export) "
        "and s3:GetObject and s3:ListBucket (reading it with the dataset's credentials) on "
        f"arn:aws:s3:::{bucket} and arn:aws:s3:::{bucket}/*",
        table=table,
        bucket=bucket,
        code="S3AccessDenied",
    )


class _ObjectChunks:
    """The compressed bytes of one object, a chunk per call. A connection lost mid-object is
    resumed at the byte where it stopped (``Range``), so a retry neither starts the file over
    nor yields its lines twice."""

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._key = key
        self._body: Any = None
        self._size: int | None = None
        self.offset = 0

    def read(self) -> bytes:
        context = f"GetObject s3://{self._bucket}/{self._key} at byte {self.offset}"
        try:
            if self._size is not None and self.offset >= self._size:
                return b""
            if self._body is None:
                kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key}
                if self.offset:
                    kwargs["Range"] = f"bytes={self.offset}-"
                answer = self._s3.get_object(**kwargs)
                length = answer.get("ContentLength")
                # The object's size: a resumed answer holds the rest of it, from offset.
                self._size = None if length is None else self.offset + int(length)
                self._body = answer["Body"]
            chunk: bytes = self._body.read(CHUNK_BYTES)
        except Exception as e:  # noqa: BLE001 - every boto error is classified at this boundary
            self.close()
            raise s3_error(e, context, self._bucket) from e
        self.offset += len(chunk)
        return chunk

    def close(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()


def _file_bodies(chunks: Callable[[], bytes], page_bytes: int) -> Iterator[bytes]:
    """Decompressed JSON lines of one gzip object, in bodies of whole lines of about
    ``page_bytes`` (concatenated gzip members are read one after the other)."""
    inflate = zlib.decompressobj(_GZIP_WBITS)
    pending = bytearray()
    while True:
        chunk = chunks()
        if not chunk:
            break
        while chunk:
            pending += inflate.decompress(chunk)
            chunk = b""
            if inflate.eof and inflate.unused_data:
                chunk = inflate.unused_data
                inflate = zlib.decompressobj(_GZIP_WBITS)
        while len(pending) >= page_bytes:
            # Whole lines up to page_bytes (or the one line longer than that).
            cut = pending.rfind(b"\n", 0, page_bytes) + 1 or pending.find(b"\n", page_bytes) + 1
            if not cut:
                break  # a line longer than a page, not complete yet
            yield bytes(pending[:cut])
            del pending[:cut]
    pending += inflate.flush()
    if not inflate.eof:
        raise ValueError("the gzip stream ends before its end marker (a truncated file)")
    if pending.strip():
        yield bytes(pending)


def export_pages(
    s3: Any,
    bucket: str,
    files: Sequence[ExportFile],
    stop: threading.Event,
    on_transient: Callable[[SyncError], None] = lambda error: None,
    workers: int = READ_WORKERS,
    page_bytes: int = PAGE_BYTES,
    bound: RetryBound = UNBOUNDED,
) -> Iterator[pa.StructArray]:
    """Yield the items of an export's data ``files``, a page at a time, read by ``workers``
    threads, each page in the typed form :func:`~sync.dynamodb.scan.scan_table` yields.

    Pages of one file come in file order; pages of different files interleave. A read that
    fails is retried with backoff (``on_transient`` hears of it) and resumed where it stopped,
    up to ``bound``.

    Raises:
        ExportFailed: the bucket is missing or access to it is denied.
        RetriesExhausted: a file kept failing past ``bound``.
        Stopped: ``stop`` was set.
    """
    todo: queue.SimpleQueue[ExportFile] = queue.SimpleQueue()
    for file in files:
        todo.put(file)
    workers = max(1, min(workers, len(files)))
    fan_in = FanIn(stop, 2 * workers)
    cancelled = fan_in.cancelled
    put = fan_in.put

    def read_file(file: ExportFile) -> bool:
        """Put the file's pages; False when the reading was stopped or cancelled."""
        source = _ObjectChunks(s3, bucket, file.key)
        read = partial(retrying, source.read, stop, on_transient, Backoff(), bound)
        count = 0
        try:
            for body in _file_bodies(read, page_bytes):
                items = parse_export_lines(body)
                if items is not None:
                    count += len(items)
                    if not put(items):
                        return False
        except (SyncError, Stopped):
            raise
        except Exception as e:  # noqa: BLE001 - a corrupt file ends the load with its name
            raise ExportFailed(
                f"reading s3://{bucket}/{file.key}: {type(e).__name__}: {e}", bucket=bucket
            ) from e
        finally:
            source.close()
        if file.item_count is not None and count != file.item_count:
            raise ExportFailed(
                f"s3://{bucket}/{file.key} holds {count} items, its manifest says "
                f"{file.item_count}",
                bucket=bucket,
            )
        return True

    def read_files() -> None:
        while not (stop.is_set() or cancelled.is_set()):
            try:
                file = todo.get_nowait()
            except queue.Empty:
                return
            if not read_file(file):
                return

    return fan_in.pages([(f"export-read-{i}", read_files) for i in range(workers)])
