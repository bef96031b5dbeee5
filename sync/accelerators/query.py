"""The read-only query handle an accelerator lends to the serving layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pyarrow as pa


class QueryHandle(Protocol):
    """Runs read-only SQL against one accelerator database.

    ``dialect`` is the sqlglot dialect name of the engine (``duckdb``, ``sqlite``, ``postgres``);
    SQL handed to :meth:`execute` must already be written in it. Each call uses its own engine
    cursor or connection, so many queries may run at once while the sync applies changes.
    """

    dialect: str

    def execute(self, sql: str, params: Sequence[object] = ()) -> pa.RecordBatchReader:
        """Run ``sql`` with positional ``?`` parameters and stream the result as Arrow batches.

        Raises:
            QueryError: the engine rejected the statement (message is the engine's own).
        """
        ...


class QueryError(Exception):
    """The engine refused a query; the message is the engine's."""
