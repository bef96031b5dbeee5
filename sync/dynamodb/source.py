"""DynamoDB as a ``Source``: DescribeTable, a parallel Scan or an S3 export for the load, the
table's stream for the changes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from sync.changes import ChangeBatch, Checkpoint, ShardPosition
from sync.dynamodb.changelog import ChangeLog, same_capture
from sync.dynamodb.client import DynamoDBClients, make_clients
from sync.dynamodb.export import (
    ExportProgress,
    export_files,
    make_s3_client,
    request_export,
    wait_export,
)
from sync.dynamodb.exportfiles import export_pages
from sync.dynamodb.load import ScanPositions, resumable_scan_batches, scan_batches
from sync.dynamodb.ratelimit import ReadRateLimiter, Unit
from sync.dynamodb.records import stream_rows
from sync.dynamodb.scan import auto_segments, scan_segments
from sync.dynamodb.stream import StreamReader
from sync.dynamodb.table import describe_table
from sync.dynamodb.typeoptions import TypeOptions
from sync.errors import ExportFailed, PermanentError, RetentionExceeded, SyncError
from sync.retry import RetryBound
from sync.schema import TableSpec, TypeSupport
from sync.settings import DatasetSettings
from sync.source import ChangeRound, LoadBatch, LoadProgress, SourceHealth, SourceTable

log = logging.getLogger(__name__)


class DynamoDBSource:
    """One DynamoDB table and its NEW_AND_OLD_IMAGES stream.

    The boto3 clients are made on first use and kept for the source's life; every request is
    retried under the dataset's retry bound (``dynamodb_max_retries``,
    ``dynamodb_max_retry_duration``).
    """

    def __init__(self, settings: DatasetSettings, type_support: TypeSupport) -> None:
        self.settings = settings
        self.types = TypeOptions(settings.types, type_support)
        self._clients: DynamoDBClients | None = None
        self.shards_active = 0  # open shards being read, as of the last round
        self._errors_transient = 0
        source = settings.source
        self.request_bound = RetryBound(
            source.max_retries,
            source.max_retry_s,
            "raise dynamodb_max_retries or dynamodb_max_retry_duration to keep retrying longer",
        )

    @property
    def clients(self) -> DynamoDBClients:
        if self._clients is None:
            self._clients = make_clients(self.settings.source)
        return self._clients

    def describe(self) -> SourceTable:
        """DescribeTable; the table's stream must be enabled with NEW_AND_OLD_IMAGES.

        Raises:
            StreamNotConfigured: no stream, or another view type (the message says how to fix
                it).
        """
        table = describe_table(self.clients, self.settings.source.table)
        stream_arn = table.require_stream()
        return SourceTable(table.name, table.key, table.key_columns, table.item_count, stream_arn)

    def load(
        self,
        table: SourceTable,
        spec: TableSpec,
        stop: threading.Event,
        resume: tuple[ShardPosition, ...] | None = None,
    ) -> Iterator[LoadBatch | LoadProgress]:
        """The initial load, by ``dynamodb_initial_load``: a parallel Scan, or the files of an
        S3 export (``export``; ``auto`` falls back to the Scan when the export cannot be made).
        Either way the pages are batched by :func:`~sync.dynamodb.load.scan_batches`.

        The Scan resumes: each batch carries every segment's last LastEvaluatedKey, and
        ``resume`` (those of the last batch applied) restarts each segment right after it, with
        the segment count the scan started with. An export load gives no positions: one
        interrupted starts over (a new export).
        """
        if resume is not None:
            positions = ScanPositions.parse(table.name, resume)
            log.info(
                "dataset %s: resuming the scan of table %s (%d of %d segments finished)",
                self.settings.name,
                table.name,
                len(positions.done),
                positions.segments,
            )
            return self._resumable_scan(table, spec, stop, positions, resumed=True)
        pages: Iterator[pa.StructArray] | None = None
        if self.settings.initial_load != "scan":
            try:
                pages = self._export_pages(table, stop)
            except ExportFailed as e:
                if self.settings.initial_load == "export":
                    raise
                log.warning(
                    "dataset %s: S3 export not possible, scanning instead: %s",
                    self.settings.name,
                    e,
                )
        if pages is not None:
            return scan_batches(pages, spec, self.types, self.settings.schema_infer_max_records)
        segments = self.settings.scan_segments or auto_segments(table.item_count)
        log.info(
            "dataset %s: scanning table %s with %d segments",
            self.settings.name,
            table.name,
            segments,
        )
        return self._resumable_scan(
            table, spec, stop, ScanPositions(table.name, segments), resumed=False
        )

    def _resumable_scan(
        self,
        table: SourceTable,
        spec: TableSpec,
        stop: threading.Event,
        positions: ScanPositions,
        resumed: bool,
    ) -> Iterator[LoadBatch | LoadProgress]:
        """A strongly consistent parallel Scan from ``positions``, batched with them, at the
        rate ``scan_rate_limit`` allows."""
        limiter = self._scan_limiter(table.name)
        # A page answered within a quarter of the read timeout may grow.
        fast_page_s = self.settings.source.read_timeout_s / 4
        pages = scan_segments(
            self.clients,
            table.name,
            positions.segments,
            stop,
            self.count_transient,
            fast_page_s,
            self.request_bound,
            limiter,
            start=positions.start,
            done=positions.done,
            # One page per segment ahead: what a kill loses is read again after the restart.
            read_ahead=positions.segments,
        )
        return resumable_scan_batches(
            pages,
            positions,
            spec,
            self.types,
            self.settings.schema_infer_max_records,
            resumed,
        )

    def _scan_limiter(self, table: str) -> ReadRateLimiter:
        """The read rate of the Scan, by ``scan_rate_limit``: items per second, or a share of
        the table's provisioned read capacity (DescribeTable's ReadCapacityUnits) spent in
        consumed capacity units. Unset, the rate has no ceiling but throttles slow it down.

        Raises:
            PermanentError: a percentage for an on-demand table (no provisioned capacity).
        """
        limit = self.settings.scan_rate_limit
        if limit is None:
            return ReadRateLimiter(None)
        unit: Unit = "items"
        if limit.items_per_s is not None:
            per_s = limit.items_per_s
        else:
            capacity = describe_table(self.clients, table).read_capacity_units
            if capacity <= 0:
                raise PermanentError(
                    f"params.scan_rate_limit: {limit} needs a table in provisioned capacity "
                    f"mode, but table {table!r} is on-demand (PAY_PER_REQUEST) and has no read "
                    "capacity to take a share of; give items per second instead "
                    "(e.g. scan_rate_limit: 2000)"
                )
            per_s, unit = (limit.capacity_fraction or 0) * capacity, "capacity"
        log.info(
            "dataset %s: scan rate limited to %g %s/s (scan_rate_limit: %s)",
            self.settings.name,
            per_s,
            "items" if unit == "items" else "read capacity units",
            limit,
        )
        return ReadRateLimiter(per_s, unit)

    def _export_pages(self, table: SourceTable, stop: threading.Event) -> Iterator[pa.StructArray]:
        """Request a full export (the stream position was captured before, so the export holds
        every write the stream will not replay), wait for it and list its files; the pages
        are read from S3 in parallel as they are consumed. An export that cannot be made or
        fails raises :class:`~sync.errors.ExportFailed` before any page is read."""
        export = self.settings.export
        assert export is not None, "config requires dynamodb_export_s3_bucket for an export"
        s3 = make_s3_client(self.settings.source, export)
        arn = request_export(
            self.clients, s3, table.name, export, stop, self.count_transient, self.request_bound
        )
        log.info(
            "dataset %s: export %s requested into s3://%s", self.settings.name, arn, export.bucket
        )
        last_status: list[str] = []

        def progress(state: ExportProgress) -> None:
            if last_status != [state.status]:
                last_status[:] = [state.status]
                log.info(
                    "dataset %s: export %s after %.0f s (%s items)",
                    self.settings.name,
                    state.status,
                    state.elapsed_s,
                    "?" if state.item_count is None else state.item_count,
                )

        done = wait_export(
            self.clients, arn, export, stop, progress, self.count_transient, self.request_bound
        )
        files = export_files(s3, done, stop, self.count_transient, self.request_bound)
        log.info(
            "dataset %s: reading %d export files (%s items)",
            self.settings.name,
            len(files),
            "?" if done.item_count is None else done.item_count,
        )
        return export_pages(
            s3, done.bucket, files, stop, self.count_transient, bound=self.request_bound
        )

    def changes(
        self, table: SourceTable, stop: threading.Event, log_dir: Path | None = None
    ) -> StreamChanges:
        return StreamChanges(self, table, stop, log_dir)

    def health(self) -> SourceHealth:
        return SourceHealth(self.shards_active, self._errors_transient)

    def count_transient(self, error: SyncError) -> None:
        self._errors_transient += 1
        log.warning("dataset %s: transient error, retrying: %s", self.settings.name, error)


class StreamChanges:
    """The table's stream as a ``ChangeStream``: each GetRecords round of the shard-lineage
    reader becomes one ``ChangeRound``.

    Ordering guarantees are the reader's: a child shard is read after its parent is drained,
    one shard's records in sequence order, so a round's rows keep every key's order. Every
    ``topology_refresh`` the table is described again: a stream disabled and re-enabled has a
    new ARN, and the old positions mean nothing in it.

    With a ``log_dir``, the stream is read on while the table loads and its rounds are kept
    there (:mod:`sync.dynamodb.changelog`): no record can leave the stream's 24-hour retention
    before it is applied, however long the load takes. Closed shards come first, as their
    records are the oldest: the reader drains a parent before it reads its children.
    """

    def __init__(
        self,
        source: DynamoDBSource,
        table: SourceTable,
        stop: threading.Event,
        log_dir: Path | None = None,
    ) -> None:
        assert table.stream is not None, "describe() gives the stream ARN"
        self._source = source
        self._table = table
        self._stop = stop
        settings = source.settings
        self._refresh_s = settings.topology_refresh.total_seconds()
        self._poll_s = settings.scan_interval.total_seconds()
        self._rounds: Generator[ChangeRound, None, None] | None = None
        self._reader = StreamReader(
            source.clients,
            table.stream,
            stop,
            source.count_transient,
            self._refresh_s,
            bound=source.request_bound,
        )
        self._log_dir = log_dir
        self._log: ChangeLog | None = None
        self._replay_from: Checkpoint | None = None  # the position the table holds
        self._logger: threading.Thread | None = None
        self._logger_stop = threading.Event()
        self._logger_error: BaseException | None = None

    def capture(self, watermark: datetime | None, oldest: bool = False) -> Checkpoint:
        """Every open shard at its tip (LATEST iterators taken now), closed shards drained; or,
        with ``oldest``, every shard the stream holds from its first record (TRIM_HORIZON)."""
        if oldest:
            self._reader.start_at_oldest()
        else:
            self._reader.start_at_latest()
        return self._reader.checkpoint(watermark)

    def resume(self, checkpoint: Checkpoint) -> Checkpoint:
        """Continue after ``checkpoint``; when the log holds it, after the log's last round
        instead (the logged rounds after ``checkpoint`` are replayed first)."""
        log_ = ChangeLog.find(self._log_dir) if self._log_dir is not None else None
        if log_ is None or log_.after(checkpoint) is None:
            if log_ is not None:  # an older load's log, or one already applied
                log_.remove()
            self._reader.resume(checkpoint)
            return checkpoint
        self._log, self._replay_from = log_, checkpoint
        last = log_.last()
        self._reader.resume(last)
        log.info(
            "dataset %s: %d stream records kept during the load come first",
            self._source.settings.name,
            log_.records,
        )
        return last

    def log_while_loading(self, captured: Checkpoint) -> bool:
        """Read the stream on, from where it stands, into the log of ``captured`` until
        :meth:`rounds` is called; False if there is no log directory."""
        if self._log_dir is None:
            return False
        if self._log is None or not same_capture(self._log.captured, captured):
            try:
                self._log = ChangeLog.open(self._log_dir, captured)
            except OSError as e:
                raise PermanentError(
                    f"cannot keep the stream's changes during the load in {self._log_dir} "
                    f"({e.strerror or e}): make that path a writable directory, or remove "
                    "what is there"
                ) from e
        self._replay_from = captured
        self._logger = threading.Thread(
            target=self._keep_rounds, name=f"changelog-{self._table.name}", daemon=True
        )
        self._logger.start()
        return True

    def _keep_rounds(self) -> None:
        assert self._log is not None
        try:
            while not self._logger_stop.is_set() and not self._stop.is_set():
                poll = self._reader.poll()
                self._source.shards_active = poll.active_shards
                if poll.records or poll.drained_shards or poll.topology_changed:
                    self._log.append(poll)
                if not poll.records:
                    self._logger_stop.wait(self._poll_s)
        except BaseException as e:  # noqa: BLE001 - raised again by rounds()
            log.error("dataset %s: keeping the stream: %s", self._source.settings.name, e)
            self._logger_error = e

    def _stop_logging(self) -> None:
        """End the load's log reader; its error, if it had one, is raised here."""
        if self._logger is not None:
            self._logger_stop.set()
            self._logger.join()
            self._logger = None
        if self._logger_error is not None:
            error, self._logger_error = self._logger_error, None
            raise error

    def rounds(self, spec: TableSpec, watermark: float | None) -> Iterator[ChangeRound]:
        """One round per poll of the readable shards, the logged rounds first. The watermark
        is the round's start when every shard is at its tip, else the newest record's
        ApproximateCreationDateTime (or the last watermark if the round brought none)."""
        self._stop_logging()
        self._rounds = self._poll_rounds(spec, watermark)
        return self._rounds

    def _logged_rounds(
        self, spec: TableSpec, watermark: float | None
    ) -> Generator[ChangeRound, None, tuple[TableSpec, float | None]]:
        """The logged rounds after the position the table holds; the log is removed once the
        last of them is committed (when the next round is asked for)."""
        if self._log is None or self._replay_from is None:
            return spec, watermark
        log_, types = self._log, self._source.types
        for logged in log_.after(self._replay_from) or []:
            rows, spec, newest = stream_rows(spec, list(log_.pages(logged)), types)
            watermark = newest if newest is not None else watermark
            when = datetime.fromtimestamp(watermark, UTC) if watermark else None
            checkpoint = Checkpoint(log_.captured.stream_arn, logged.positions, when)
            yield ChangeRound(
                batch=ChangeBatch(rows, checkpoint, logged.records),
                spec=spec,
                watermark=watermark,
                caught_up=False,
                advances=True,
            )
        log_.remove()
        self._log = None
        return spec, watermark

    def _poll_rounds(
        self, spec: TableSpec, watermark: float | None
    ) -> Generator[ChangeRound, None, None]:
        spec, watermark = yield from self._logged_rounds(spec, watermark)
        types = self._source.types
        next_table_check = time.monotonic() + self._refresh_s
        with closing(self._reader.rounds()) as polls:
            for poll in polls:
                self._source.shards_active = poll.active_shards
                rows, spec, newest = stream_rows(spec, poll.pages, types)
                if poll.caught_up:
                    # Nothing left to read: the mirror is current as of this round's start.
                    watermark = poll.started
                elif newest is not None:
                    watermark = newest
                when = datetime.fromtimestamp(watermark, UTC) if watermark else None
                yield ChangeRound(
                    batch=ChangeBatch(rows, poll.checkpoint(when), poll.records),
                    spec=spec,
                    watermark=watermark,
                    caught_up=poll.caught_up,
                    advances=bool(poll.pages or poll.drained_shards or poll.topology_changed),
                )
                if time.monotonic() >= next_table_check:
                    next_table_check = time.monotonic() + self._refresh_s
                    self._check_stream_unchanged()

    def _check_stream_unchanged(self) -> None:
        """A stream disabled and re-enabled gets a new ARN: the old position is meaningless."""
        table = self._table
        current = describe_table(self._source.clients, table.name).require_stream()
        if current != table.stream:
            raise RetentionExceeded(
                f"the table's stream changed from {table.stream} to {current} "
                "(disabled and re-enabled)"
            )

    def close(self) -> None:
        self._logger_stop.set()
        if self._logger is not None:
            self._logger.join()
        if self._rounds is not None:
            self._rounds.close()  # stops the reader's read-ahead first
        self._reader.close()
