"""``DatasetSync``: one dataset's life — bootstrap (or resume), then tail the changes.

Runs on its own thread. Readiness is computed here: bootstrap done, the changes made during
the load applied, and lag below ``ready_lag``. What is read, and how, is the ``Source``'s
(:mod:`sync.source`); this module commits what it hands over.

On an engine several runtimes share, the dataset is synced only while this runtime holds its
lease (:mod:`sync.lease`); otherwise it follows: it reads neither table nor stream, and its
table definition and lag come from what the holder committed (the checkpoint's watermark), so
Ready means the same on every runtime.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from sync.accelerators.base import Accelerator
from sync.bootstrap import apply_load
from sync.changes import OP_COLUMN, ChangeBatch, Checkpoint, ShardPosition
from sync.errors import PermanentError, RetentionExceeded, SyncError
from sync.lease import DatasetLease, Holder, LeaseLost
from sync.retry import Backoff, Stopped, retrying
from sync.schema import TableSpec
from sync.settings import DatasetSettings
from sync.snapshots import Snapshotter
from sync.source import ChangeStream, Source, SourceTable
from sync.sources import open_source
from sync.status import QUERYABLE, SCANNING, BootstrapProgress, DatasetStatus, State

log = logging.getLogger(__name__)

STAGING_SUFFIX = "__bootstrap"
UNCONFIRMED_POLL_S = 0.2
CHECKPOINT_KEEPALIVE_S = 60.0
# A leased dataset's followers see its lag through the checkpoint: an idle holder commits its
# watermark this often (a share of ready_lag), and followers read it as often.
SHARED_WATERMARK_SHARE = 0.25
TAKEOVER_POLL_SHARE = 0.1  # of lease_timeout: how often a follower tries to take the lease
PROGRESS_LOG_S = 5.0


class DatasetNotQueryable(Exception):
    """Raised by :meth:`DatasetSync.check_queryable`; the message says why."""


class RefreshElsewhere(Exception):
    """A refresh asked of a process that follows the dataset rather than syncing it."""


class DatasetSync:
    """Keeps one accelerator table equal to one source table.

    ``source`` defaults to the DynamoDB table of ``settings`` (see :func:`sync.sources.
    open_source`). With ``lease`` it syncs only while holding it and follows otherwise; with
    ``follow_only`` it always follows (a worker process serving what another one syncs).
    ``followed`` says other processes follow it: it commits its watermark often, as a leased
    dataset does.
    """

    def __init__(
        self,
        settings: DatasetSettings,
        accelerator: Accelerator,
        snapshotter: Snapshotter | None = None,
        source: Source | None = None,
        lease: DatasetLease | None = None,
        follow_only: bool = False,
        followed: bool = False,
    ) -> None:
        self.settings = settings
        self.accelerator = accelerator
        self._lease = lease
        self._follow_only = follow_only
        self._followed = followed or lease is not None
        self._following = lease is not None or follow_only
        self._holder: Holder | None = None  # as last read, while following
        self._lease_since: float | None = None  # epoch seconds this runtime took the lease
        self._commits = 0  # transactions this process committed: batches, loads swapped in
        self.source = (
            source if source is not None else open_source(settings, accelerator.type_support)
        )
        self._snapshotter = snapshotter if settings.snapshots.creates else None
        self._batches_since_snapshot = 0
        self._last_snapshot_started = time.time()
        self._stop = threading.Event()
        self._refresh = threading.Event()  # a re-bootstrap was asked for (HTTP refresh)
        self._rebootstrap: str | None = None  # "retention" or "refresh" until it is done
        if settings.initial_snapshot == "always":
            self._rebootstrap = "refresh"  # a fresh load at every start, swapped in atomically
        self._wake = threading.Event()  # set by stop() and request_refresh(): ends waits
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._state = State.STARTING
        self._since = time.time()
        self._history: deque[tuple[float, State]] = deque([(self._since, self._state)], 64)
        self._error: str | None = None
        self._spec: TableSpec | None = None  # read from the engine when the sync starts
        self._watermark: float | None = None  # epoch seconds the mirror is current up to
        self._records_consumed = 0
        self._errors_transient = 0  # the engine's; the source counts its own
        self._reinitializations = 0
        self._bootstraps = 0
        self._last_checkpoint_at: float | None = None
        self._bootstrap: BootstrapProgress | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"sync-{self.settings.name}", daemon=True
        )
        self._thread.start()

    def request_refresh(self) -> None:
        """Bootstrap again from a fresh scan, serving the current rows until the new copy is
        swapped in atomically (as ``ready_before_load`` does).

        Raises:
            RefreshElsewhere: another process syncs the dataset; the refresh is its to do.
        """
        if self._following:
            holder = self._holder.runtime if self._holder is not None else None
            where = f"the runtime syncing it ({holder})" if holder else "the runtime syncing it"
            raise RefreshElsewhere(
                f"dataset {self.name} is synced by another process: ask {where} to refresh it"
            )
        self._refresh.set()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the in-flight batch is committed (or rolled back); never half. A lease
        held is released, so another runtime takes over at once."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._lease is not None:
            self._lease.release()
        self._set_state(State.STOPPED)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._follow_only or (self._lease is not None and not self._lease.held):
                    self._follow()
                self._run_once()
            except Stopped:
                return
            except LeaseLost as e:
                log.warning("dataset %s: %s; following the runtime that holds it", self.name, e)
                continue
            except _RefreshRequested:
                log.info("dataset %s: refresh requested, bootstrapping again", self.settings.name)
                continue
            except RetentionExceeded as e:
                behavior = self.settings.retention_behavior
                if behavior != "error":
                    self._reinitializations += 1
                    log.warning(
                        "dataset %s: %s; re-bootstrapping (%s)", self.settings.name, e, behavior
                    )
                    self._rebootstrap = "retention"
                    continue
                self._fail(self._retention_message(e))
            except SyncError as e:
                self._fail(str(e))
            except Exception as e:  # noqa: BLE001 - a dataset never stops silently
                log.exception("dataset %s: unexpected error", self.settings.name)
                self._fail(f"{type(e).__name__}: {e}")
            if self._lease is not None and not self._following and self._lease.held:
                # Another runtime may reach what this one cannot (the table, its stream).
                self._lease.release()
                self._following = True
            self._wake.wait(self.settings.error_retry.total_seconds())
            self._wake.clear()

    def _fail(self, message: str) -> None:
        log.error(
            "dataset %s: %s (retrying in %.0f s)",
            self.settings.name,
            message,
            self.settings.error_retry.total_seconds(),
        )
        self._set_state(State.ERROR, message)

    def _retention_message(self, error: RetentionExceeded) -> str:
        where = (
            f"delete {self.settings.acceleration.file} and restart"
            if self.settings.acceleration.file
            else "restart the runtime"
        )
        return (
            f"{error}. The checkpoint is beyond the stream's retention, so changes were lost. "
            f"To recover, {where} to bootstrap again, or set "
            "dynamodb_replication_invalid_checkpoint_behavior: restart (older name "
            "lag_exceeds_shard_retention_behavior: ready_before_load, or ready_after_load) "
            "to re-bootstrap automatically"
        )

    @property
    def name(self) -> str:
        return self.settings.name

    def _follow(self) -> None:
        """Serve what another runtime commits until this one takes the lease (never, with
        ``follow_only``): the table's definition and the committed watermark are read every
        quarter of ``ready_lag``, and readiness follows from that watermark."""
        self._following = True
        poll = self.settings.ready_lag.total_seconds() * SHARED_WATERMARK_SHARE
        if self._lease is not None:
            poll = min(poll, TAKEOVER_POLL_SHARE * self._lease.timeout_s)
        while True:
            if self._lease is not None and self._lease.try_acquire():
                self._following = False
                self._holder = None
                self._lease_since = time.time()
                return  # still serving: the state stays what the shared data's lag says
            self._observe()
            if self._stop.wait(poll):
                raise Stopped

    def _observe(self) -> None:
        """One look at the shared data: its table, its committed watermark, its holder."""
        self._spec = self.accelerator.table_spec(self.name)
        checkpoint = self.accelerator.load_checkpoint(self.name) if self._spec else None
        watermark = checkpoint.watermark if checkpoint is not None else None
        self._watermark = watermark.timestamp() if watermark is not None else None
        if self._lease is not None:
            self._holder = self._lease.holder()
        self._update_readiness()

    def _run_once(self) -> None:
        if self._spec is None:
            self._spec = self.accelerator.table_spec(self.settings.name)
        table = self.source.describe()
        declared = self.settings.primary_key
        if declared is not None and set(declared) != set(table.key):
            raise PermanentError(
                f"acceleration.primary_key ({', '.join(declared)}) is not the key of table "
                f"{table.name} ({', '.join(table.key)}): a mirror is keyed as its table is; "
                f"write primary_key: ({', '.join(table.key)}) or remove it"
            )
        self.accelerator.declare_indexes(self.settings.name, self.settings.indexes)
        changes = self.source.changes(table, self._stop, self._log_dir())
        try:
            checkpoint = self.accelerator.load_checkpoint(self.settings.name)
            if self._refresh.is_set():
                self._refresh.clear()
                self._rebootstrap = "refresh"
            reason = self._rebootstrap
            if checkpoint is not None and self._spec is not None and reason is None:
                log.info("dataset %s: resuming from its checkpoint", self.settings.name)
                self._check_checkpoint_age(changes.resume(checkpoint))
                if self._state not in (State.READY, State.LAGGING):  # a takeover keeps serving
                    self._set_state(State.CATCHING_UP)
            else:
                # A refresh always swaps atomically; a retention re-bootstrap as configured.
                serve_old = self._spec is not None and (
                    reason == "refresh"
                    or (
                        reason == "retention"
                        and self.settings.retention_behavior == "ready_before_load"
                    )
                )
                self._bootstrap_table(table, changes, serve_old)
                self._rebootstrap = None
            self._tail(changes)
        finally:
            changes.close()

    # -- bootstrap ---------------------------------------------------------------------------

    def _bootstrap_table(self, table: SourceTable, changes: ChangeStream, serve_old: bool) -> None:
        """Load the table into a staging table, then swap it in with the change log's position.

        With ``serve_old`` (ready_before_load) the current table keeps serving queries until
        the swap; otherwise the dataset is not queryable while it loads.
        """
        name = self.settings.name
        staging_name = f"{name}{STAGING_SUFFIX}"
        if self.settings.initial_snapshot == "disabled":
            self._start_without_load(table, changes, staging_name)
            return
        resumed = self._resume_load(table, changes, staging_name)
        if resumed is not None:
            captured, spec, positions = resumed
            assert captured.watermark is not None
            started = captured.watermark.timestamp()
            before = self.accelerator.row_count(staging_name)
        else:
            # Capture the change log's position first: every change made during the load is
            # replayed.
            started = time.time()
            captured = changes.capture(datetime.fromtimestamp(started, UTC))
            spec = table.empty_spec(staging_name)
            self._start_staging(spec, staging_name)
            positions, before = None, 0
            log.info(
                "dataset %s: bootstrapping from table %s (about %d items)",
                name,
                table.name,
                table.item_count,
            )
        # The stream is read on while the table loads, so no change expires before it is
        # applied (where the source can keep it).
        logged = changes.log_while_loading(captured)
        self._bootstraps += 1
        run_started = time.time()
        self._bootstrap = BootstrapProgress(before, max(table.item_count, before), 0.0, started)
        self._set_state(State.REBOOTSTRAPPING if serve_old else State.BOOTSTRAPPING)
        last_log = run_started

        def progress(read: int) -> None:
            nonlocal last_log
            now = time.time()
            items = before + read
            self._bootstrap = BootstrapProgress(
                items,
                max(table.item_count, items),
                read / max(now - run_started, 1e-6),
                started,
            )
            if now - last_log >= PROGRESS_LOG_S:
                last_log = now
                self._log_progress()

        # Each batch commits, with its rows, the captured position and where the load stands,
        # under the staging table's name (the served table keeps its own checkpoint).
        def at(position: tuple[ShardPosition, ...]) -> Checkpoint:
            return Checkpoint(captured.stream_arn, captured.shards + position, captured.watermark)

        load = self.source.load(table, spec, self._stop, resume=positions)
        spec, items = apply_load(self.accelerator, staging_name, spec, load, progress, at)
        items += before
        elapsed = time.time() - started
        if not logged and elapsed > self.settings.shard_retention.total_seconds():
            raise RetentionExceeded(
                f"the bootstrap scan took {elapsed:.0f} s, longer than the stream's retention"
            )
        # Bootstrap complete: swap the table in with the position captured before the load.
        self.accelerator.swap_in(name, spec, name, captured)
        self._spec = replace(spec, name=name)
        self._last_checkpoint_at = time.time()
        self._commits += 1
        self._snapshot(force=True)
        log.info(
            "dataset %s: bootstrap loaded %d items in %.1f s (%.0f items/s); "
            "replaying changes made during the scan",
            name,
            items,
            elapsed,
            items / max(elapsed, 1e-6),
        )
        self._bootstrap = None  # the scan is over; what follows is the stream's replay
        self._set_state(State.REBOOTSTRAPPING if serve_old else State.CATCHING_UP)

    def _resume_load(
        self, table: SourceTable, changes: ChangeStream, staging_name: str
    ) -> tuple[Checkpoint, TableSpec, tuple[ShardPosition, ...]] | None:
        """Continue an interrupted load if its staging table holds a checkpoint whose captured
        position can still be continued; return that position, the staging table and where
        the load stood. None: load afresh."""
        spec = self.accelerator.table_spec(staging_name)
        stored = self.accelerator.load_checkpoint(staging_name) if spec is not None else None
        if spec is None or stored is None or table.stream is None:
            return None
        shards = tuple(s for s in stored.shards if s.stream_arn == table.stream)
        positions = tuple(s for s in stored.shards if s.stream_arn != table.stream)
        name = self.settings.name
        if not shards or not positions or stored.watermark is None:
            log.info("dataset %s: the interrupted load cannot resume; loading afresh", name)
            return None
        captured = Checkpoint(table.stream, shards, stored.watermark)
        try:
            self._check_checkpoint_age(changes.resume(captured))
        except RetentionExceeded as e:
            log.warning(
                "dataset %s: the interrupted load cannot resume (%s); loading afresh", name, e
            )
            return None
        log.info(
            "dataset %s: resuming the load of %d segments (%d rows already loaded)",
            name,
            len(positions),
            self.accelerator.row_count(staging_name),
        )
        return captured, spec, positions

    def _log_dir(self) -> Path:
        """Where the source keeps the changes it reads while a load runs: beside the
        accelerator's file (so a restarted load finds them), else a temporary directory."""
        file = self.settings.acceleration.file
        if file is not None:
            return file.with_name(f"{file.name}.changelog")
        return Path(tempfile.gettempdir()) / f"dynamirror-{os.getpid()}-{id(self):x}.changelog"

    def _start_staging(self, spec: TableSpec, staging_name: str) -> None:
        """An empty staging table ``spec`` with no load checkpoint, so a crash at any point
        before the first batch is committed starts the load afresh."""
        # Clear an earlier load's checkpoint first (the staging table it belongs to is made
        # if need be, then replaced): it must never pair with the new, empty table.
        current = self.accelerator.table_spec(staging_name) or spec
        cleared = ChangeBatch(_no_rows(current), Checkpoint("", ()), load=True)
        self.accelerator.apply(staging_name, current, cleared)
        self.accelerator.create_table(spec)

    def _start_without_load(
        self, table: SourceTable, changes: ChangeStream, staging_name: str
    ) -> None:
        """``dynamodb_replication_initial_snapshot: disabled``: an empty table, swapped in with
        the oldest position the change log holds; the mirror holds what the log replays."""
        name = self.settings.name
        captured = changes.capture(None, oldest=True)
        spec = table.empty_spec(staging_name)
        self.accelerator.create_table(spec)
        self.accelerator.swap_in(name, spec, name, captured)
        self._spec = replace(spec, name=name)
        self._last_checkpoint_at = time.time()
        self._commits += 1
        log.info(
            "dataset %s: no initial load (initial snapshot disabled); replaying the stream "
            "from its oldest record",
            name,
        )
        self._set_state(State.CATCHING_UP)

    def _log_progress(self) -> None:
        p = self._bootstrap
        if p is None:
            return
        eta = f"{p.eta_s:.0f} s" if p.eta_s is not None else "-"
        log.info(
            "dataset %s: bootstrap %d / ~%d items (%.0f %%), %.0f items/s, ETA %s",
            self.settings.name,
            p.items,
            p.expected,
            p.percent,
            p.rate_per_s,
            eta,
        )

    # -- streaming ---------------------------------------------------------------------------

    def _tail(self, changes: ChangeStream) -> None:
        assert self._spec is not None
        interval = self.settings.scan_interval.total_seconds()
        # An idle log still moves its checkpoint's watermark forward, well within retention.
        keepalive = min(CHECKPOINT_KEEPALIVE_S, self.settings.shard_retention.total_seconds() / 4)
        if self._followed:  # followers read their lag from the checkpoint
            keepalive = min(
                keepalive, self.settings.ready_lag.total_seconds() * SHARED_WATERMARK_SHARE
            )
        for round_ in changes.rounds(self._spec, self._watermark):
            if self._lease is not None and not self._lease.held:
                raise LeaseLost(f"dataset {self.name}: the lease was not renewed in time")
            stale = time.time() - (self._last_checkpoint_at or 0) >= keepalive
            if round_.advances or (round_.caught_up and stale):
                self._commit(round_.spec, round_.batch)
                self._spec = round_.spec
                self._records_consumed += round_.records
                self._batches_since_snapshot += 1 if round_.records else 0
            self._watermark = round_.watermark
            self._snapshot()
            self._update_readiness()
            if self._refresh.is_set():
                raise _RefreshRequested
            # Idle: wait. Empty rounds before the tip is confirmed are re-polled sooner.
            if round_.records == 0 and self._stop.wait(
                interval if round_.caught_up else min(interval, UNCONFIRMED_POLL_S)
            ):
                return
            if self._stop.is_set():
                return

    def _snapshot(self, force: bool = False) -> None:
        """Snapshot the accelerator file when the trigger says so (and after a bootstrap)."""
        if self._snapshotter is None:
            return
        policy = self.settings.snapshots
        if not force:
            if self._batches_since_snapshot == 0:
                return  # nothing new since the last snapshot
            if policy.trigger == "stream_batches":
                if self._batches_since_snapshot < policy.every_batches:
                    return
            elif time.time() - self._last_snapshot_started < policy.every.total_seconds():
                return
        if self._snapshotter.take():
            self._batches_since_snapshot = 0
            self._last_snapshot_started = time.time()

    def _check_checkpoint_age(self, checkpoint: Checkpoint) -> None:
        """Records newer than the checkpoint may have been trimmed if it is older than the
        stream's retention (the runtime was down, or a shard sat idle that long)."""
        if checkpoint.watermark is None:
            return
        age = time.time() - checkpoint.watermark.timestamp()
        retention = self.settings.shard_retention.total_seconds()
        if age > retention:
            raise RetentionExceeded(
                f"the checkpoint is {age:.0f} s old, older than the stream's retention "
                f"({retention:.0f} s): changes made since may have been trimmed"
            )

    def _commit(self, spec: TableSpec, batch: ChangeBatch) -> None:
        """Apply a batch with its checkpoint; engine errors are retried, never half-applied."""

        def apply() -> None:
            try:
                self.accelerator.apply(self.settings.name, spec, batch)
            except SyncError:
                raise
            except Exception as e:  # noqa: BLE001 - engine errors are transient by default
                raise _ApplyError(f"applying a batch to {self.settings.name}: {e}") from e

        retrying(apply, self._stop, self._count_transient, Backoff(0.5, 30.0))
        self._last_checkpoint_at = time.time()
        self._commits += 1

    def _update_readiness(self) -> None:
        lag = self.lag_ms()
        ready = lag is not None and lag < self.settings.ready_lag.total_seconds() * 1000
        with self._lock:
            state = self._state
        if ready and state is not State.READY:
            if state in (State.CATCHING_UP, State.REBOOTSTRAPPING, State.FOLLOWING):
                log.info("dataset %s is Ready (lag %d ms)", self.settings.name, lag)
            self._set_state(State.READY)
        elif not ready and state is State.READY:
            self._set_state(State.LAGGING)
        elif not ready and self._following and state is not State.LAGGING:
            self._set_state(State.FOLLOWING)

    def _count_transient(self, error: SyncError) -> None:
        self._errors_transient += 1
        log.warning("dataset %s: transient error, retrying: %s", self.settings.name, error)

    # -- reporting ---------------------------------------------------------------------------

    def _set_state(self, state: State, error: str | None = None) -> None:
        with self._lock:
            if state is not self._state or error != self._error:
                self._since = time.time()
                self._history.append((self._since, state))
            self._state = state
            self._error = error
            if state not in SCANNING and state is not State.ERROR:
                self._bootstrap = None  # an error keeps the progress it stopped at

    def state_history(self) -> list[tuple[float, State]]:
        """The last state transitions, oldest first, as (epoch seconds, state)."""
        with self._lock:
            return list(self._history)

    def lag_ms(self) -> int | None:
        if self._watermark is None:
            return None
        return max(0, int((time.time() - self._watermark) * 1000))

    @property
    def spec(self) -> TableSpec | None:
        return self._spec

    def status(self) -> DatasetStatus:
        with self._lock:
            state, since, error, bootstrap = self._state, self._since, self._error, self._bootstrap
        health = self.source.health()
        acc = self.settings.acceleration
        holder = self._holder
        return DatasetStatus(
            name=self.settings.name,
            table=self.settings.source.table,
            engine=acc.engine,
            mode=acc.mode,
            state=state,
            since=since,
            error=error,
            lag_ms=self.lag_ms(),
            shards_active=health.shards_active,
            records_consumed=self._records_consumed,
            errors_transient=self._errors_transient + health.errors_transient,
            reinitializations=self._reinitializations,
            bootstraps=self._bootstraps,
            last_checkpoint_at=self._last_checkpoint_at,
            bootstrap=bootstrap,
            last_snapshot=self._snapshotter.last if self._snapshotter else None,
            role="following" if self._following else "syncing",
            synced_by=self._lease.runtime
            if self._lease is not None and not self._following
            else (holder.runtime if holder is not None and holder.live else None),
            synced_since=self._synced_since(holder),
            commits=self._commits,
        )

    def _synced_since(self, holder: Holder | None) -> float | None:
        if self._lease is not None and not self._following:
            return self._lease_since
        return holder.since if holder is not None and holder.live else None

    def check_queryable(self) -> None:
        """Raise :class:`DatasetNotQueryable` (with the reason) unless queries may run.

        Every query asks, so the full status is only built to say why not."""
        if self._state in QUERYABLE:
            return
        status = self.status()
        if status.state not in QUERYABLE:
            raise DatasetNotQueryable(status.reason())

    def row_count(self) -> int | None:
        if self._spec is None:
            return None
        return self.accelerator.row_count(self._spec.name)


def _no_rows(spec: TableSpec) -> pa.Table:
    """An empty batch of table ``spec`` (its key columns, which an engine may check)."""
    columns = {OP_COLUMN: pa.array([], pa.int8())}
    columns.update({key: pa.array([], pa.null()) for key in spec.key})
    return pa.table(columns)


class _RefreshRequested(SyncError):
    """Raised in the tail loop to leave it for a fresh bootstrap."""


class _ApplyError(SyncError):
    """The engine failed to apply a batch (disk full, server gone…): retried with backoff."""

    retriable = True
