"""The reference server: plain ``pyarrow.flight`` DoGet streaming a DuckDB Arrow reader.

No Flight SQL, no SQL checking, no Python per batch: ``GetFlightInfo`` answers one endpoint
per SQL statement of the request, and ``DoGet`` hands DuckDB's reader (64 Ki rows per batch,
as the runtime's DuckDB handle asks for) to a C++ ``RecordBatchStream`` — or, for a diagnosis,
to a ``GeneratorStream`` pulling the same reader from Python, as the runtime does. It is the
floor our Flight SQL layer is measured against. Run as its own process:

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

ROWS_PER_BATCH = 64 * 1024


class RawServer(flight.FlightServerBase):
    """Descriptor command: JSON ``{"sql": [one statement per endpoint], "generator": bool}``;
    ticket: JSON ``{"sql": …, "generator": bool}``."""

    def __init__(self, location: str, database: str) -> None:
        super().__init__(location)
        self._db = duckdb.connect(database, read_only=database != ":memory:")
        self._lock = threading.Lock()
        # Readers borrow their cursor: keep the latest ones referenced while they stream.
        self._cursors: deque[Any] = deque(maxlen=256)

    def _reader(self, sql: str) -> pa.RecordBatchReader:
        with self._lock:
            cursor = self._db.cursor()
            self._cursors.append(cursor)
        return cursor.sql(sql).to_arrow_reader(ROWS_PER_BATCH)

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        request = json.loads(descriptor.command)
        statements = request["sql"]
        schema = self._reader(f"SELECT * FROM ({statements[0]}) LIMIT 0").schema
        endpoints = [
            flight.FlightEndpoint(
                json.dumps({"sql": s, "generator": request.get("generator", False)}).encode(), []
            )
            for s in statements
        ]
        return flight.FlightInfo(schema, descriptor, endpoints, -1, -1)

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        request = json.loads(ticket.ticket)
        reader = self._reader(request["sql"])
        if request.get("generator"):
            return flight.GeneratorStream(reader.schema, _pull(reader))
        return flight.RecordBatchStream(reader)


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
