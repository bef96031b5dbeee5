"""Checked statements run on the catalog's engines: planning, result schemas, result streams."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import pyarrow as pa

from flightsrv.config import QueryLimits
from flightsrv.flightsql import sqlcheck
from flightsrv.flightsql.catalog import Catalog, ExpandsViews, TableInfo
from flightsrv.flightsql.errors import BadRequest
from flightsrv.flightsql.lru import Lru
from flightsrv.flightsql.metadata import Namespace
from flightsrv.flightsql.results import conform, rechunk, rows_within
from flightsrv.flightsql.statements import Statement
from sync.accelerators import dialect_spec
from sync.accelerators.query import (
    QueryError,
    QueryHandle,
    RunningQuery,
    StopSignal,
    SupportsStart,
)

# A value of each plain parameter type, to probe a result schema where NULL is refused.
_SAMPLES: dict[pa.DataType, object] = {
    pa.int64(): 1,
    pa.int32(): 1,
    pa.float64(): 1.0,
    pa.string(): "",
    pa.bool_(): False,
    pa.binary(): b"",
    pa.null(): 1,
}
# Result schemas kept, by statement and the definitions of the tables it reads.
SCHEMA_CACHE_SIZE = 1024
# Whole results GetFlightInfo computed to learn their schema, kept for its ticket's DoGet.
ANSWERS_KEPT = 256
ANSWERS_KEPT_BYTES = 64 * 1024 * 1024
ANSWER_MAX_AGE_S = 5.0


@dataclass
class Plan:
    """A checked statement bound to the engine that holds its tables."""

    checked: sqlcheck.CheckedQuery
    handle: QueryHandle

    @cached_property
    def sql(self) -> str:
        """The statement in the engine's dialect."""
        return self.checked.sql(self.handle.dialect)


@dataclass(frozen=True)
class Direct:
    """A result Flight can send as the engine streams it: one statement whose reader has the
    announced schema and whose batches stay within the size limit, so no batch is reshaped."""

    query: RunningQuery


@dataclass(frozen=True)
class _Answer:
    """A statement's whole result, computed at ``at`` (monotonic seconds)."""

    sql: str
    params: pa.Table | None
    result: pa.Table
    at: float

    def answers(self, sql: str, params: pa.Table | None, schema: pa.Schema) -> bool:
        """Whether this is the result of ``sql`` with ``params`` under ``schema``, fresh."""
        same_params = self.params is params or (
            self.params is not None and params is not None and self.params.equals(params)
        )
        return (
            same_params
            and self.sql == sql
            and self.result.schema.equals(schema, check_metadata=True)
            and time.monotonic() - self.at <= ANSWER_MAX_AGE_S
        )


class QueryRunner:
    """Runs client statements read-only against the catalog.

    An engine that types result columns by their values (SQLite) has to run a statement to
    tell its schema. GetFlightInfo then keeps a small whole result for the DoGet of the ticket
    it issues (a few seconds at most), so a lookup or an aggregate runs once, not twice. Any
    other DoGet, or one that comes later, runs the statement as usual.
    """

    def __init__(
        self,
        catalog: Catalog,
        namespace: Namespace,
        max_batch_bytes: int,
        limits: QueryLimits = sqlcheck.DEFAULT_LIMITS,
    ) -> None:
        self._catalog = catalog
        self._ns = namespace
        self._max_batch_bytes = max_batch_bytes
        self._limits = limits
        self._schemas: Lru[Hashable, pa.Schema] = Lru(SCHEMA_CACHE_SIZE)
        self._answers: Lru[bytes, _Answer] = Lru(
            ANSWERS_KEPT, ANSWERS_KEPT_BYTES, lambda a: a.result.nbytes
        )
        sqlcheck.allowed_classes()  # computed now rather than during the first query

    def plan(self, sql: str) -> Plan:
        """Check ``sql``, find its engine, and check the statement is allowed there (raises the
        check's errors and the catalog's: not found, not ready)."""
        checked = sqlcheck.check(sql, self._ns.catalog, self._ns.schema, self._limits)
        if isinstance(self._catalog, ExpandsViews):
            checked = self._catalog.expand(checked)
        handle = self._catalog.handle_for(checked.tables)
        checked.require_safe_for(handle.dialect)
        return Plan(checked, handle)

    def table_infos(self) -> dict[str, TableInfo]:
        return {t.name.lower(): t for t in self._catalog.tables()}

    def parameter_schema(self, plan: Plan) -> pa.Schema:
        if plan.checked.param_count == 0:
            return pa.schema([])
        return plan.checked.parameter_schema(self.table_infos())

    def prepared_schema(self, plan: Plan, stop: StopSignal) -> pa.Schema | None:
        """The result schema at prepare time, before parameters are known.

        Parameters are probed as NULL, then (if the engine refuses NULL there) as a value of
        their announced type. Only when both fail is the schema left to GetFlightInfo, which
        has the real values: an empty schema would make JDBC take its update path.
        """
        return self._cached_schema(plan, lambda: self._probe_prepared(plan, stop))

    def _probe_prepared(self, plan: Plan, stop: StopSignal) -> pa.Schema | None:
        count = plan.checked.param_count
        try:
            return self._schema(plan, [None] * count, stop)
        except QueryError:
            if count == 0 or stop.is_set():
                raise
        typed = [_SAMPLES.get(t, None) for t in self.parameter_schema(plan).types]
        try:
            return self._schema(plan, typed, stop)
        except QueryError:
            return None

    def result_schema(
        self, plan: Plan, statement: Statement, stop: StopSignal, ticket_id: bytes = b""
    ) -> pa.Schema:
        """The schema DoGet will stream for ``statement``, learnt without running it fully.

        Kept per statement and table definitions, so a prepared statement's executions reuse
        the schema probed at prepare; a column added since then makes a new key. Where only
        running the statement tells, a small whole result is kept for ``ticket_id``'s DoGet.
        """
        rows = self._param_rows(plan, statement)
        params = rows[0] if rows else [None] * plan.checked.param_count
        if ticket_id and len(rows) == 1 and dialect_spec(plan.handle.dialect).value_typed_results:
            return self._answer(plan, statement, params, stop, ticket_id)
        schema = self._cached_schema(plan, lambda: self._schema(plan, params, stop))
        assert schema is not None
        return schema

    def _answer(
        self,
        plan: Plan,
        statement: Statement,
        params: Sequence[object],
        stop: StopSignal,
        ticket_id: bytes,
    ) -> pa.Schema:
        """Run the statement for its schema, keeping its result when it is one small batch."""
        reader = plan.handle.execute(plan.sql, params, stop)
        try:
            head = _head(reader, self._max_batch_bytes)
        finally:
            reader.close()
        if len(head) <= 1 and all(b.nbytes <= self._max_batch_bytes for b in head):
            result = pa.Table.from_batches(head, reader.schema)
            self._answers.put(
                ticket_id, _Answer(plan.sql, statement.params, result, time.monotonic())
            )
        return reader.schema

    def forget_answers(self, ticket_ids: Sequence[bytes]) -> None:
        """Drop the results kept for these tickets (their queries were cancelled)."""
        for ticket_id in ticket_ids:
            self._answers.pop(ticket_id)

    def _cached_schema(self, plan: Plan, probe: Callable[[], pa.Schema | None]) -> pa.Schema | None:
        """The schema kept for ``plan``, else ``probe``'s (kept when found and cacheable)."""
        key = self._schema_key(plan)
        if key is None:
            return probe()
        schema = self._schemas.get(key)
        if schema is None:
            schema = probe()
            if schema is not None:
                self._schemas.put(key, schema)
        return schema

    def _schema_key(self, plan: Plan) -> Hashable | None:
        """What the result schema depends on besides the values bound, or None when those
        values decide it too (``SELECT ?``) or the engine types columns by their contents."""
        if plan.checked.typed_by_values or dialect_spec(plan.handle.dialect).value_typed_results:
            return None
        infos = self.table_infos()
        tables = tuple(infos.get(name.lower()) for name in plan.checked.tables)
        return plan.handle.dialect, plan.sql, tables

    def run(
        self, plan: Plan, statement: Statement, schema: pa.Schema, stop: StopSignal
    ) -> Direct | Iterator[pa.RecordBatch]:
        """The result of ``statement`` under ``schema``: :class:`Direct` when no batch needs
        reshaping, else batches of every bound parameter set in turn, each bounded in size and
        conformed to ``schema``. ``stop`` interrupts whichever statement is running.

        The first query starts before this returns, so its errors reach the caller directly
        rather than in the middle of a stream.
        """
        rows = self._param_rows(plan, statement)
        if not rows:
            return iter(())
        answer = self._answers.take(statement.query_id) if statement.query_id else None
        if answer is not None and answer.answers(plan.sql, statement.params, schema):
            return Direct(_Buffered(None, answer.result.to_batches(), schema))
        handle = plan.handle
        if len(rows) == 1 and isinstance(handle, SupportsStart):
            max_rows = rows_within(schema, self._max_batch_bytes)
            query = handle.start(plan.sql, rows[0], max_rows, stop)
            if not query.reader.schema.equals(schema, check_metadata=True):
                return self._batches(plan, query.reader, [], schema, stop)
            if max_rows is not None:
                return Direct(query)
            # Variable-width rows: a result of one batch within the size limit (a lookup)
            # needs no reshaping either, and skips the Python stream.
            head = _head(query.reader)
            if len(head) <= 1 and all(b.nbytes <= self._max_batch_bytes for b in head):
                return Direct(_Buffered(query, head, schema))
            return self._batches(plan, query.reader, [], schema, stop, head)
        first = handle.execute(plan.sql, rows[0], stop)
        return self._batches(plan, first, rows[1:], schema, stop)

    def _batches(
        self,
        plan: Plan,
        first: pa.RecordBatchReader,
        rest: Sequence[Sequence[object]],
        schema: pa.Schema,
        stop: StopSignal,
        head: Sequence[pa.RecordBatch] = (),
    ) -> Iterator[pa.RecordBatch]:
        """``first``'s batches (after ``head``, batches already read from it), then those of
        each parameter set of ``rest``."""
        reader: pa.RecordBatchReader | None = first
        pending = list(rest)
        while reader is not None:
            try:
                for batch in rechunk(itertools.chain(head, reader), self._max_batch_bytes):
                    yield conform(batch, schema)
            finally:
                reader.close()
            head = ()
            reader = plan.handle.execute(plan.sql, pending.pop(0), stop) if pending else None

    def _schema(self, plan: Plan, params: Sequence[object], stop: StopSignal) -> pa.Schema:
        dialect = plan.handle.dialect
        if not dialect_spec(dialect).value_typed_results:
            probe = plan.checked.schema_probe_sql(dialect)
            try:
                return _read_schema(plan.handle, probe, params, stop)
            except QueryError:
                if stop.is_set():
                    raise
                # the statement itself tells the real error (or works without LIMIT 0)
        return _read_schema(plan.handle, plan.sql, params, stop)

    def _param_rows(self, plan: Plan, statement: Statement) -> list[list[object]]:
        rows = statement.param_rows()
        expected = plan.checked.param_count
        bound = statement.params.num_columns if statement.params is not None else 0
        if bound != expected:
            if expected and statement.params is None:
                raise BadRequest(f"the query has {expected} parameter(s) but none are bound")
            raise BadRequest(f"the query has {expected} parameter(s), {bound} are bound")
        return rows


def _head(reader: pa.RecordBatchReader, max_bytes: int | None = None) -> list[pa.RecordBatch]:
    """The first two batches of ``reader`` (fewer when it ends sooner, or when the first is
    over ``max_bytes`` already: a result too big to keep whole)."""
    head = []
    for batch in reader:
        head.append(batch)
        if len(head) == 2 or (max_bytes is not None and batch.nbytes > max_bytes):
            break
    return head


class _Buffered:
    """A whole result read already: its batches are streamed from memory, and the query it
    came from (if still open) closed with it."""

    def __init__(
        self, query: RunningQuery | None, batches: list[pa.RecordBatch], schema: pa.Schema
    ) -> None:
        self._query = query
        self.reader = pa.RecordBatchReader.from_batches(schema, batches)

    def interrupt(self) -> None:
        """Nothing runs any more."""

    def close(self) -> None:
        self.reader.close()
        if self._query is not None:
            self._query.close()


def _read_schema(
    handle: QueryHandle, sql: str, params: Sequence[object], stop: StopSignal
) -> pa.Schema:
    reader = handle.execute(sql, params, stop)
    try:
        return reader.schema
    finally:
        reader.close()
