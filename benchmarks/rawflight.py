"""The reference server: plain ``pyarrow.flight`` streaming a DuckDB Arrow reader.

No SQL checking, no catalog, no Python per batch: ``DoGet`` hands DuckDB's reader (64 Ki rows
per batch, as the runtime's DuckDB handle asks for) to a C++ ``RecordBatchStream`` — or, for a
diagnosis, to a ``GeneratorStream`` pulling the same reader from Python, as the runtime does.
It is the floor our Flight SQL layer is measured against. It speaks two dialects:

- its own: the descriptor command is JSON ``{"sql": [one statement per endpoint],
  "generator": bool}``, one endpoint per statement — for the plain pyarrow.flight client;
- bare Flight SQL: the least of the protocol the ADBC driver needs to run a statement and a
  prepared statement with parameters (CommandStatementQuery, CreatePreparedStatement, DoPut of
  parameters, CommandPreparedStatementQuery, ClosePreparedStatement), each answered in the
  most direct way. With it the ADBC client can be measured against this floor too, so that a
  comparison with the runtime holds the client constant.

Run as its own process:

    python -m benchmarks.rawflight --port 5005 --database copy.duckdb
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2

from flightsrv.proto import FlightSql_pb2 as pb

ROWS_PER_BATCH = 64 * 1024
_TYPE_URL = "type.googleapis.com/arrow.flight.protocol.sql."


class RawServer(flight.FlightServerBase):
    """Own dialect: descriptor command JSON ``{"sql": […], "generator": bool}``, ticket JSON
    ``{"sql": …, "generator": bool}``. Flight SQL: a prepared statement's handle is its SQL
    text; the parameters bound to it are kept by handle (one row, the last DoPut)."""

    def __init__(self, location: str, database: str) -> None:
        super().__init__(location)
        self._db = duckdb.connect(database, read_only=database != ":memory:")
        self._lock = threading.Lock()
        # Readers borrow their cursor: keep the latest ones referenced while they stream.
        self._cursors: deque[Any] = deque(maxlen=256)
        self._bound: dict[bytes, list[Any]] = {}
        self._schemas: dict[bytes, pa.Schema] = {}

    def _reader(self, sql: str, params: list[Any] | None = None) -> pa.RecordBatchReader:
        with self._lock:
            cursor = self._db.cursor()
            self._cursors.append(cursor)
        return cursor.sql(sql, params=params).to_arrow_reader(ROWS_PER_BATCH)

    def _schema(self, sql: str, params: list[Any] | None = None) -> pa.Schema:
        return self._reader(f"SELECT * FROM ({sql}) LIMIT 0", params).schema

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        command = _flightsql(descriptor.command)
        if isinstance(command, pb.CommandStatementQuery):
            schema = self._schema(command.query)
            ticket = json.dumps({"sql": command.query}).encode()
            endpoints = [flight.FlightEndpoint(ticket, [])]
        elif isinstance(command, pb.CommandPreparedStatementQuery):
            handle = command.prepared_statement_handle
            schema = self._schemas[handle]
            ticket = json.dumps({"sql": handle.decode(), "params": self._bound.get(handle)})
            endpoints = [flight.FlightEndpoint(ticket.encode(), [])]
        else:
            request = json.loads(descriptor.command)
            statements = request["sql"]
            schema = self._schema(statements[0])
            generator = request.get("generator", False)
            endpoints = [
                flight.FlightEndpoint(json.dumps({"sql": s, "generator": generator}).encode(), [])
                for s in statements
            ]
        return flight.FlightInfo(schema, descriptor, endpoints, -1, -1)

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        request = json.loads(ticket.ticket)
        reader = self._reader(request["sql"], request.get("params"))
        if request.get("generator"):
            return flight.GeneratorStream(reader.schema, _pull(reader))
        return flight.RecordBatchStream(reader)

    def do_put(
        self,
        context: flight.ServerCallContext,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        command = _flightsql(descriptor.command)
        if not isinstance(command, pb.CommandPreparedStatementQuery):
            raise flight.FlightServerError("only parameters of a prepared statement are taken")
        handle = command.prepared_statement_handle
        params = reader.read_all().to_pylist()
        self._bound[handle] = list(params[0].values()) if params else []
        result = pb.DoPutPreparedStatementResult(prepared_statement_handle=handle)
        writer.write(pa.py_buffer(result.SerializeToString()))

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> list[Any]:
        if action.type == "CreatePreparedStatement":
            request = _flightsql(action.body.to_pybytes())
            handle = request.query.encode()
            parameters = request.query.count("?")  # the benchmarks' statements quote no "?"
            probe = [None] * parameters or None
            self._schemas[handle] = schema = self._schema(request.query, probe)
            result = pb.ActionCreatePreparedStatementResult(
                prepared_statement_handle=handle,
                dataset_schema=schema.serialize().to_pybytes(),
            )
            return [flight.Result(_pack(result))]
        if action.type == "ClosePreparedStatement":
            return []
        raise flight.FlightServerError(f"action {action.type!r} is not supported")


def _flightsql(command: bytes) -> Any:
    """The Flight SQL message in ``command``, or None when it is this server's own JSON."""
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(command)
    except Exception:  # noqa: BLE001 - JSON is not a protobuf Any
        return None
    if not wrapper.type_url.startswith(_TYPE_URL):
        return None
    message = getattr(pb, wrapper.type_url[len(_TYPE_URL) :])()
    wrapper.Unpack(message)
    return message


def _pack(message: Any) -> bytes:
    wrapper = any_pb2.Any()
    wrapper.Pack(message, type_url_prefix="type.googleapis.com/")
    return wrapper.SerializeToString()


def _pull(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    yield from reader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", default=":memory:", help="a DuckDB file, opened read-only")
    args = parser.parse_args()
    server = RawServer(f"grpc://127.0.0.1:{args.port}", args.database)
    print("ready", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
