"""The Arrow Flight SQL server: read-only SQL over the catalog's accelerator databases.

Clients write DuckDB SQL. Served tables live in one catalog (``dynamirror``). A dataset named
``orders`` is in the default schema (``public``) and may be named bare or qualified
(``public.orders``, ``dynamirror.public.orders``); one named ``sales.orders`` is table
``orders`` of schema ``sales``. Datasets have table type ``TABLE``, views ``VIEW``.

Every call is self-contained: prepared statement handles and tickets carry their SQL and
parameters (see :mod:`flightsrv.flightsql.statements`), so the server keeps no per-client
state and needs no cleanup. Transactions exist only so that clients leaving autocommit (the
DB-API default) work: they are read-only at READ COMMITTED, and commit and rollback do nothing.
Sessions likewise hold nothing (see :mod:`flightsrv.flightsql.sessions`). The only state is the
set of result streams being sent, so that ``CancelFlightInfo`` (or the client going away) stops
them, and a cache of result schemas (see :mod:`flightsrv.flightsql.queries`).

A result whose batches need no reshaping is handed to Flight's C++ writer, which pulls the
engine's reader without running Python per batch (nor waiting for the GIL); others are sent
from a Python generator that bounds and conforms each batch.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from flightsrv.config import QueryLimits
from flightsrv.flightsql import metadata, sessions
from flightsrv.flightsql.catalog import Catalog
from flightsrv.flightsql.errors import BadRequest, Unsupported, client_error
from flightsrv.flightsql.metadata import Namespace
from flightsrv.flightsql.queries import Direct, Plan, QueryRunner
from flightsrv.flightsql.results import MAX_BATCH_BYTES
from flightsrv.flightsql.running import CallContext, RunningQueries, StopFlag
from flightsrv.flightsql.sqlcheck import DEFAULT_LIMITS
from flightsrv.flightsql.statements import (
    InvalidHandle,
    IssuedStatements,
    RecentBindings,
    Statement,
)
from flightsrv.proto import FlightActions_pb2 as fa
from flightsrv.proto import FlightSql_pb2 as pb
from sync.accelerators.query import RunningQuery

DEFAULT_LOCATION = "grpc://127.0.0.1:50051"
CATALOG_NAME = "dynamirror"
SCHEMA_NAME = "public"

_CREATE_PREPARED = "CreatePreparedStatement"
_CLOSE_PREPARED = "ClosePreparedStatement"
_BEGIN_TRANSACTION = "BeginTransaction"
_END_TRANSACTION = "EndTransaction"
_CANCEL_FLIGHT_INFO = "CancelFlightInfo"
_CANCEL_QUERY = "CancelQuery"  # Flight SQL's older name, still sent by some JDBC drivers
_GET_SESSION_OPTIONS = "GetSessionOptions"
_SET_SESSION_OPTIONS = "SetSessionOptions"
_CLOSE_SESSION = "CloseSession"
# IPC body compression of result streams: none by default (the JDBC driver cannot read it).
COMPRESSIONS = ("none", "zstd", "lz4")
_MESSAGES: dict[str, type[Message]] = {
    desc.full_name: getattr(pb, name) for name, desc in pb.DESCRIPTOR.message_types_by_name.items()
}
# Commands that would change data: refused as PERMISSION_DENIED wherever they arrive.
_WRITES = (
    pb.CommandStatementUpdate,
    pb.CommandPreparedStatementUpdate,
    pb.CommandStatementIngest,
)
_READ_ONLY = "read-only server: {} is refused; only queries are served"


class FlightSqlServer(flight.FlightServerBase):
    """Flight SQL over a :class:`~flightsrv.flightsql.catalog.Catalog`.

    The gRPC server listens from construction on; :meth:`serve` blocks until
    :meth:`shutdown` (typically ``serve`` runs in a thread). ``location`` ``None`` means
    :data:`DEFAULT_LOCATION`; port 0 picks a free port, read back from :attr:`port`.
    ``compression`` (``none``, ``zstd``, ``lz4``) compresses the bodies of result messages;
    ``limits`` bound what one statement may cost (``runtime.query``): its size and parse time,
    and its run time, after which it is stopped in its engine.
    Other keyword arguments (``auth_handler``, ``tls_certificates``, ``middleware``…) go to
    :class:`pyarrow.flight.FlightServerBase`.
    """

    def __init__(
        self,
        location: str | None,
        catalog: Catalog,
        *,
        catalog_name: str = CATALOG_NAME,
        schema_name: str = SCHEMA_NAME,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        compression: str = "none",
        limits: QueryLimits = DEFAULT_LIMITS,
        **kwargs: Any,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression: expected one of {', '.join(COMPRESSIONS)}")
        super().__init__(location or DEFAULT_LOCATION, **kwargs)
        self.catalog = catalog
        self.namespace = Namespace(catalog_name, schema_name)
        self.limits = limits
        self._queries = QueryRunner(catalog, self.namespace, max_batch_bytes, limits)
        self._running = RunningQueries(limits.timeout)
        self._bindings = RecentBindings()
        self._issued = IssuedStatements()
        self._write_options = pa.ipc.IpcWriteOptions(
            compression=None if compression == "none" else compression
        )

    @property
    def running_queries(self) -> RunningQueries:
        """The queries running in the engines right now."""
        return self._running

    def shutdown(self) -> None:
        """Stop serving: every running query is interrupted in its engine, then the calls are
        waited for.

        gRPC waits for every call in flight, so a query still computing or a stream whose
        client keeps reading is cut short (UNAVAILABLE; a stream sent from C++ fails with the
        engine's interruption) instead of holding shutdown until its last row.
        """
        self._running.stop_all()
        super().shutdown()

    def run_sql(self, sql: str, call: str) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """``sql`` run as a Flight SQL query runs (the same statement check, engine session,
        limits and timeout, listed among the running queries as ``call``): its schema and its
        batches, for another protocol (SQL over HTTP). Domain errors are raised as they are;
        the batches must be closed (``close()``) to release the engine cursor early.
        """
        statement = Statement(sql)
        plan = self._queries.plan(sql)
        schema = self._result_schema(plan, statement, call, None)
        query_id = os.urandom(12)
        stop, result = self._start(plan, statement, schema, query_id, call, None)
        batches = _read_all(result.query) if isinstance(result, Direct) else result
        return schema, self._until_stopped(batches, query_id, stop)

    def _start(
        self,
        plan: Plan,
        statement: Statement,
        schema: pa.Schema,
        query_id: bytes,
        call: str,
        context: CallContext | None,
    ) -> tuple[StopFlag, Direct | Iterator[pa.RecordBatch]]:
        """Register the query and start it; a failure to start finishes it again, raised as
        the stop's cause (cancelled, timed out…) when one was set meanwhile."""
        stop = self._running.start(query_id, call, statement.sql, context)
        try:
            return stop, self._queries.run(plan, statement, schema, stop)
        except BaseException as e:
            self._running.finish(query_id, stop)
            if stop.cause is not None:
                raise stop.cause from e
            raise

    def _until_stopped(
        self,
        batches: Iterator[pa.RecordBatch],
        query_id: bytes,
        stop: StopFlag,
        listening: Callable[[], bool] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Batches until the end, a cancellation, the timeout, shutdown, or (``listening``
        false) the client gone; the stop's cause is raised in place of the next batch. The
        query is finished and ``batches`` closed (the engine cursor released) however it ends.

        Each stop is checked before the next batch is asked of the engine, so a client that
        went away frees its cursor without the engine computing another batch; one arriving
        while the engine computes a batch interrupts it there.
        """
        try:
            while True:
                if stop.cause is not None:
                    raise stop.cause
                if listening is not None and not listening():
                    return  # nobody is listening: no status to send
                try:
                    batch = next(batches, None)
                except Exception as e:
                    if stop.cause is not None:
                        raise stop.cause from e
                    raise
                if batch is None:
                    return
                yield batch
        finally:
            self._running.finish(query_id, stop)
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # release the engine cursor now, not when garbage collected

    # --- RPCs: each maps domain errors to gRPC statuses around its implementation -----------

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        try:
            return self._get_flight_info(descriptor, context)
        except Exception as e:  # noqa: BLE001 - every error becomes a gRPC status
            raise client_error("GetFlightInfo", e) from None

    def get_schema(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.SchemaResult:
        try:
            return flight.SchemaResult(self._get_schema(descriptor, context))
        except Exception as e:  # noqa: BLE001 - every error becomes a gRPC status
            raise client_error("GetSchema", e) from None

    # pyarrow's _get_schema callback, alone of the Flight callbacks, does not turn a FlightError
    # into its status: the status carries the error's traceback, whose one frame of ours is this
    # method's. Named by no file, that frame shows neither the server's path nor its source.
    get_schema.__code__ = get_schema.__code__.replace(co_filename="flightsrv")

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        try:
            return self._do_get(context, ticket)
        except Exception as e:  # noqa: BLE001 - every error becomes a gRPC status
            raise client_error("DoGet", e) from None

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        try:
            self._do_put(descriptor, reader, writer)
        except Exception as e:  # noqa: BLE001 - every error becomes a gRPC status
            raise client_error("DoPut", e) from None

    def do_action(
        self, context: flight.ServerCallContext, action: flight.Action
    ) -> list[flight.Result]:
        try:
            return self._do_action(action, context)
        except Exception as e:  # noqa: BLE001 - every error becomes a gRPC status
            raise client_error(f"DoAction {action.type}", e) from None

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [
            (_CREATE_PREPARED, "Prepare a read-only SQL query (DuckDB dialect)"),
            (_CLOSE_PREPARED, "Close a prepared statement (handles hold no server state)"),
            (_BEGIN_TRANSACTION, "Begin a read-only transaction (READ COMMITTED)"),
            (_END_TRANSACTION, "Commit or roll back a read-only transaction (both no-ops)"),
            (_CANCEL_FLIGHT_INFO, "Stop the result streams of a FlightInfo"),
            (_CANCEL_QUERY, "Stop the result streams of a FlightInfo (older Flight SQL name)"),
            (_GET_SESSION_OPTIONS, "The session's catalog and schema (fixed)"),
            (_SET_SESSION_OPTIONS, "Set catalog or schema (only the served ones are valid)"),
            (_CLOSE_SESSION, "Close the session (sessions hold nothing)"),
        ]

    def list_flights(
        self, context: flight.ServerCallContext, criteria: bytes
    ) -> Iterator[flight.FlightInfo]:
        return iter([])

    # --- implementations ----------------------------------------------------------------------

    def _get_flight_info(
        self, descriptor: flight.FlightDescriptor, context: CallContext
    ) -> flight.FlightInfo:
        command = _command(descriptor)
        if isinstance(command, pb.CommandStatementQuery | pb.CommandPreparedStatementQuery):
            statement = self._statement(command)
            plan = self._queries.plan(statement.sql)
            ticket_id = os.urandom(12)
            schema = self._result_schema(plan, statement, "GetFlightInfo", context, ticket_id)
            # The ticket carries the promised schema so DoGet streams exactly that.
            ticket = pb.TicketStatementQuery(
                statement_handle=self._issued.encode(statement.as_ticket(schema, ticket_id))
            )
            return _info(descriptor, schema, _pack(ticket))
        schema, _ = self._metadata(command)
        return _info(descriptor, schema, descriptor.command)  # the command is its own ticket

    def _get_schema(self, descriptor: flight.FlightDescriptor, context: CallContext) -> pa.Schema:
        command = _command(descriptor)
        if isinstance(command, pb.CommandStatementQuery | pb.CommandPreparedStatementQuery):
            statement = self._statement(command)
            plan = self._queries.plan(statement.sql)
            return self._result_schema(plan, statement, "GetSchema", context)
        return self._metadata(command)[0]

    def _do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        command = _unpack(ticket.ticket)
        if isinstance(command, pb.TicketStatementQuery):
            statement = self._issued.decode(command.statement_handle)
            plan = self._queries.plan(statement.sql)  # checked again: tickets are not trusted
            schema = statement.schema or self._result_schema(plan, statement, "DoGet", context)
            query_id = statement.query_id
            stop, result = self._start(plan, statement, schema, query_id, "DoGet", context)
            # The stream outlives this handler; its call context may not be touched after.
            self._running.detach(query_id, stop)
            if isinstance(result, Direct):
                return self._direct(result, query_id, stop)
            guarded = self._guarded(result, context, query_id, stop)
            # A stream dropped before its first batch never runs the generator's cleanup.
            weakref.finalize(guarded, self._running.finish, query_id, stop)
            return flight.GeneratorStream(schema, guarded, options=self._write_options)
        _, build = self._metadata(command)
        return flight.RecordBatchStream(build(), options=self._write_options)

    def _do_put(
        self,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        command = _command(descriptor, refuse_unknown_as_write=True)
        if not isinstance(command, pb.CommandPreparedStatementQuery):
            raise flight.FlightUnauthorizedError(_READ_ONLY.format(type(command).__name__))
        # Parameters bound to a prepared query: answer with a handle that carries them.
        statement = self._issued.decode(command.prepared_statement_handle)
        plan = self._queries.plan(statement.sql)
        params = reader.read_all()
        expected = plan.checked.param_count
        if params.num_columns != expected:
            raise BadRequest(
                f"the query has {expected} parameter(s), {params.num_columns} were bound"
            )
        handle = self._issued.encode(statement.with_params(params))
        self._bindings.remember(statement.query_id, params)
        result = pb.DoPutPreparedStatementResult(prepared_statement_handle=handle)
        writer.write(pa.py_buffer(result.SerializeToString()))

    def _do_action(self, action: flight.Action, context: CallContext) -> list[flight.Result]:
        body = action.body.to_pybytes()
        if action.type == _CREATE_PREPARED:
            request = _unpack(body, pb.ActionCreatePreparedStatementRequest)
            return [flight.Result(_pack(self._prepare(request.query, context)))]
        if action.type == _CLOSE_PREPARED:
            request = _unpack(body, pb.ActionClosePreparedStatementRequest)
            self._bindings.forget(self._issued.decode(request.prepared_statement_handle).query_id)
            return []
        if action.type == _BEGIN_TRANSACTION:
            # Read-only transactions at READ COMMITTED (each statement sees the latest data)
            # hold nothing: the id only lets clients that leave autocommit (DB-API) proceed.
            if body:
                _unpack(body, pb.ActionBeginTransactionRequest)
            result = pb.ActionBeginTransactionResult(transaction_id=b"ro-" + os.urandom(12))
            return [flight.Result(_pack(result))]
        if action.type == _END_TRANSACTION:
            request = _unpack(body, pb.ActionEndTransactionRequest)
            if request.action == pb.ActionEndTransactionRequest.END_TRANSACTION_UNSPECIFIED:
                raise BadRequest("EndTransaction needs COMMIT or ROLLBACK")
            return []  # nothing was written, so commit and rollback are the same
        if action.type in (_CANCEL_FLIGHT_INFO, _CANCEL_QUERY):
            return [flight.Result(self._cancel(action.type, body))]
        if action.type == _GET_SESSION_OPTIONS:
            _parse(body, fa.GetSessionOptionsRequest)
            return [flight.Result(sessions.options(self.namespace).SerializeToString())]
        if action.type == _SET_SESSION_OPTIONS:
            request = _parse(body, fa.SetSessionOptionsRequest)
            result = sessions.set_options(self.namespace, request)
            return [flight.Result(result.SerializeToString())]
        if action.type == _CLOSE_SESSION:
            _parse(body, fa.CloseSessionRequest)
            return [flight.Result(sessions.close().SerializeToString())]
        raise Unsupported(f"action {action.type!r} is not supported")

    def _cancel(self, action: str, body: bytes) -> bytes:
        """Stop the streams of the FlightInfo in a CancelFlightInfo (or CancelQuery) request.

        Tickets of other servers or of metadata commands name no query: nothing to stop, and
        the answer is still CANCELLED (the protocol's "the request is complete").
        """
        if action == _CANCEL_QUERY:
            info_bytes = _unpack(body, pb.ActionCancelQueryRequest).info
        else:
            info_bytes = _parse(body, fa.CancelFlightInfoRequest).info
        try:
            info = flight.FlightInfo.deserialize(info_bytes)
        except (pa.ArrowException, TypeError):
            raise BadRequest(f"{action}: malformed FlightInfo") from None
        query_ids = []
        for endpoint in info.endpoints:
            try:
                command = _unpack(endpoint.ticket.ticket)
            except (BadRequest, Unsupported):
                continue
            if isinstance(command, pb.TicketStatementQuery):
                try:
                    query_ids.append(self._issued.decode(command.statement_handle).query_id)
                except InvalidHandle:
                    continue
        self._running.cancel([q for q in query_ids if q])
        self._queries.forget_answers([q for q in query_ids if q])
        if action == _CANCEL_QUERY:
            result = pb.ActionCancelQueryResult.CANCEL_RESULT_CANCELLED
            return _pack(pb.ActionCancelQueryResult(result=result))
        status = fa.CANCEL_STATUS_CANCELLED
        return fa.CancelFlightInfoResult(status=status).SerializeToString()

    # --- helpers ------------------------------------------------------------------------------

    def _prepare(self, sql: str, context: CallContext) -> pb.ActionCreatePreparedStatementResult:
        plan = self._queries.plan(sql)
        query_id = os.urandom(12)
        with self._running.tracking(query_id, "CreatePreparedStatement", sql, context) as stop:
            dataset = self._queries.prepared_schema(plan, stop)
        return pb.ActionCreatePreparedStatementResult(
            prepared_statement_handle=self._issued.encode(Statement(sql, query_id=query_id)),
            dataset_schema=dataset.serialize().to_pybytes() if dataset is not None else b"",
            parameter_schema=self._queries.parameter_schema(plan).serialize().to_pybytes(),
        )

    def _statement(
        self, command: pb.CommandStatementQuery | pb.CommandPreparedStatementQuery
    ) -> Statement:
        if isinstance(command, pb.CommandStatementQuery):
            return Statement(command.query)  # a transaction_id changes nothing for reads
        statement = self._issued.decode(command.prepared_statement_handle)
        if statement.params is None:
            # A client that kept its prepared handle after binding (see RecentBindings).
            bound = self._bindings.recall(statement.query_id)
            if bound is not None:
                return statement.with_params(bound)
        return statement

    def _result_schema(
        self,
        plan: Plan,
        statement: Statement,
        call: str,
        context: CallContext | None,
        ticket_id: bytes = b"",
    ) -> pa.Schema:
        """The result schema, learnt by a query that a cancel or the timeout may stop (a
        result computed on the way is kept for ``ticket_id``, see :class:`QueryRunner`)."""
        query_id = statement.query_id or os.urandom(12)
        with self._running.tracking(query_id, call, statement.sql, context) as stop:
            return self._queries.result_schema(plan, statement, stop, ticket_id)

    def _direct(self, result: Direct, query_id: bytes, stop: StopFlag) -> _EngineStream:
        """The engine's reader as a C++ stream (a stop interrupts the engine, which the handle
        arranged when it started the statement)."""
        query = result.query

        def release() -> None:
            self._running.finish(query_id, stop)
            query.close()

        return _EngineStream(query.reader, self._write_options, release)

    def _guarded(
        self,
        batches: Iterator[pa.RecordBatch],
        context: flight.ServerCallContext,
        query_id: bytes,
        stop: StopFlag,
    ) -> Iterator[pa.RecordBatch]:
        """The batches of a DoGet stream (see :meth:`_until_stopped`); errors raised mid-stream
        (later parameter sets…) are mapped like others."""
        try:
            yield from self._until_stopped(
                batches, query_id, stop, lambda: not context.is_cancelled()
            )
        except Exception as e:  # noqa: BLE001 - every error becomes a gRPC status
            raise client_error("DoGet stream", e) from None

    def _metadata(self, command: Message) -> tuple[pa.Schema, Callable[[], pa.Table]]:
        """The fixed schema of a metadata command and how to build its rows."""
        ns = self.namespace
        match command:
            case pb.CommandGetCatalogs():
                return metadata.CATALOGS_SCHEMA, lambda: metadata.catalogs(ns)
            case pb.CommandGetDbSchemas():
                return metadata.DB_SCHEMAS_SCHEMA, lambda: metadata.db_schemas(
                    ns, self.catalog.tables(), command
                )
            case pb.CommandGetTables():
                schema = (
                    metadata.TABLES_WITH_SCHEMA_SCHEMA
                    if command.include_schema
                    else metadata.TABLES_SCHEMA
                )
                return schema, lambda: metadata.tables(ns, self.catalog.tables(), command)
            case pb.CommandGetTableTypes():
                return metadata.TABLE_TYPES_SCHEMA, metadata.table_types
            case pb.CommandGetPrimaryKeys():
                return metadata.PRIMARY_KEYS_SCHEMA, lambda: metadata.primary_keys(
                    ns, self.catalog.tables(), command
                )
            case pb.CommandGetExportedKeys() | pb.CommandGetImportedKeys():
                return metadata.FOREIGN_KEYS_SCHEMA, metadata.foreign_keys
            case pb.CommandGetCrossReference():
                return metadata.FOREIGN_KEYS_SCHEMA, metadata.foreign_keys
            case pb.CommandGetSqlInfo():
                return metadata.SQL_INFO_SCHEMA, lambda: metadata.sql_info(command.info)
            case pb.CommandGetXdbcTypeInfo():
                return metadata.XDBC_TYPE_INFO_SCHEMA, lambda: metadata.xdbc_type_info(command)
            case _ if isinstance(command, _WRITES):
                raise flight.FlightUnauthorizedError(_READ_ONLY.format(type(command).__name__))
        raise Unsupported(f"{type(command).__name__} is not supported by this server")


class _EngineStream(flight.RecordBatchStream):
    """A result sent by Flight's C++ writer straight from the engine's reader.

    Flight keeps this object until the call ends (the last batch sent, an error, or the client
    gone), then drops it: ``release`` runs then, closing the engine cursor.
    """

    def __init__(
        self,
        reader: pa.RecordBatchReader,
        options: pa.ipc.IpcWriteOptions,
        release: Callable[[], None],
    ) -> None:
        super().__init__(reader, options=options)
        self._release = release

    def __del__(self) -> None:
        self._release()


def _info(
    descriptor: flight.FlightDescriptor, schema: pa.Schema, ticket: bytes
) -> flight.FlightInfo:
    # No locations: the client fetches from this same server. Sizes unknown (-1).
    return flight.FlightInfo(schema, descriptor, [flight.FlightEndpoint(ticket, [])], -1, -1)


def _command(descriptor: flight.FlightDescriptor, refuse_unknown_as_write: bool = False) -> Message:
    if descriptor.descriptor_type != flight.DescriptorType.CMD:
        if refuse_unknown_as_write:
            raise flight.FlightUnauthorizedError(_READ_ONLY.format("uploading data"))
        raise BadRequest("only Flight SQL command descriptors are served")
    try:
        return _unpack(descriptor.command)
    except BadRequest:
        if refuse_unknown_as_write:
            raise flight.FlightUnauthorizedError(_READ_ONLY.format("uploading data")) from None
        raise


def _unpack(data: bytes, expected: type[Message] | None = None) -> Any:
    """A Flight SQL message from its ``google.protobuf.Any`` wrapping."""
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(data)
    except DecodeError:
        raise BadRequest("not a Flight SQL command") from None
    name = wrapper.TypeName()
    cls = _MESSAGES.get(name)
    if cls is None:
        if not name:
            raise BadRequest("not a Flight SQL command")
        raise Unsupported(f"{name} is not supported by this server")
    if expected is not None and cls is not expected:
        raise BadRequest(f"expected {expected.DESCRIPTOR.full_name}, got {name}")
    message = cls()
    try:
        wrapper.Unpack(message)
    except DecodeError:
        raise BadRequest(f"malformed {name}") from None
    return message


def _parse(data: bytes, cls: type[Message]) -> Any:
    """A Flight action body: a plain serialized message (Flight's, not wrapped in ``Any``)."""
    message = cls()
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise BadRequest(f"malformed {cls.DESCRIPTOR.name}") from None
    return message


def _pack(message: Message) -> bytes:
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper.SerializeToString()


def _read_all(query: RunningQuery) -> Iterator[pa.RecordBatch]:
    """The batches of ``query``'s reader; closing this closes the query."""
    try:
        yield from query.reader
    finally:
        query.close()
