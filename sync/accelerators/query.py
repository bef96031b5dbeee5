"""The read-only query handle an accelerator lends to the serving layer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import pyarrow as pa


class StopSignal(Protocol):
    """Set from another thread to stop one query: a client's cancel, the query timeout, the
    client going away, or shutdown.

    A handle registers how to interrupt its engine statement *before* it starts running it, so
    a statement that computes for hours without producing a batch (an aggregate, a sort) stops
    in the engine too, not only between batches.
    """

    def is_set(self) -> bool: ...

    def on_set(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the setting thread) when set, or now if set already."""
        ...


class QueryHandle(Protocol):
    """Runs read-only SQL against one accelerator database.

    ``dialect`` is the sqlglot dialect name its engine's spec declares (from which
    :func:`sync.accelerators.dialect_spec` finds the spec); SQL handed to :meth:`execute` must
    already be written in it. Each call uses its own engine cursor or connection, so many
    queries may run at once while the sync applies changes.
    """

    dialect: str

    def execute(
        self, sql: str, params: Sequence[object] = (), stop: StopSignal | None = None
    ) -> pa.RecordBatchReader:
        """Run ``sql`` with positional ``?`` parameters and stream the result as Arrow batches.

        ``stop`` interrupts the statement in the engine, whether it is still computing or its
        result is being read; the reader then fails with :class:`QueryError`.

        Raises:
            QueryError: the engine rejected the statement (message is the engine's own).
        """
        ...


class RunningQuery(Protocol):
    """A statement whose result is being read, and the engine cursor behind it."""

    @property
    def reader(self) -> pa.RecordBatchReader:
        """The result; pulling it needs no Python (the engine's own Arrow stream)."""
        ...

    def interrupt(self) -> None:
        """Stop the statement from any thread: the reader's next batch fails."""
        ...

    def close(self) -> None:
        """Release the reader and the cursor; idempotent."""
        ...


@runtime_checkable
class SupportsStart(Protocol):
    """A handle that hands over the statement it starts, so the caller can stream the reader
    without Python per batch and still stop it (see :class:`RunningQuery`)."""

    def start(
        self,
        sql: str,
        params: Sequence[object] = (),
        max_batch_rows: int | None = None,
        stop: StopSignal | None = None,
    ) -> RunningQuery:
        """Like :meth:`QueryHandle.execute`; ``max_batch_rows`` caps the rows per batch.

        Raises:
            QueryError: the engine rejected the statement.
        """
        ...


class QueryError(Exception):
    """The engine refused a query; the message is the engine's."""
