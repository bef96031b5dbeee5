"""Errors of the sync, with their retry policy on the class.

Loops read the flags (``retriable``, ``refresh_iterator``, ``shrink_page``, ``throttled``),
never the messages.
"""

from __future__ import annotations


class SyncError(Exception):
    """Root of every sync error. Not retriable unless a subclass says so."""

    retriable = False
    refresh_iterator = False
    shrink_page = False  # retry with a smaller page (Scan ``Limit``)
    throttled = False  # the table's read capacity (or the account's rate) was exceeded


class TransientError(SyncError):
    """Throttling, 5xx, timeouts, connection resets: retried with backoff, counted."""

    retriable = True


class Throttled(TransientError):
    """ProvisionedThroughputExceededException, ThrottlingException: retried, and a Scan slows
    its read rate down."""

    throttled = True


class RequestTimedOut(TransientError):
    """No answer within the read timeout: a smaller page may be answered in time."""

    shrink_page = True


class IteratorExpired(SyncError):
    """A shard iterator is older than 15 minutes: get a fresh one after the checkpoint."""

    retriable = True
    refresh_iterator = True


class RetentionExceeded(SyncError):
    """The checkpoint is beyond the stream's retention: trimmed data or vanished shards.

    Handled by ``lag_exceeds_shard_retention_behavior``.
    """


class PermanentError(SyncError):
    """Access denied, table or stream gone, bad configuration: the dataset goes to error."""


class ExportFailed(PermanentError):
    """An initial load by S3 export cannot be done: point-in-time recovery off, the bucket
    missing or denied, the export failed or did not finish in time. The dataset goes to
    error, or loads with a Scan instead when ``dynamodb_initial_load`` is ``auto``.

    The context is kept as attributes: ``table``, ``bucket``, ``export_arn`` and ``code`` (the
    AWS error code or the export's FailureCode).
    """

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        bucket: str | None = None,
        export_arn: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.table = table
        self.bucket = bucket
        self.export_arn = export_arn
        self.code = code


class RetriesExhausted(PermanentError):
    """One request kept failing past its retry bound: the dataset goes to error (and tries
    again after ``error_retry_interval``) instead of retrying it forever."""


class StreamNotConfigured(PermanentError):
    """The table has no stream, or not the NEW_AND_OLD_IMAGES view type."""
