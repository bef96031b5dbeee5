"""The reference server: plain ``pyarrow.flight`` DoGet streaming a DuckDB Arrow reader.

No Flight SQL, no SQL checking, no Python per batch: ``GetFlightInfo`` splits the requested
row range into ``parts`` endpoints, and ``DoGet`` hands DuckDB's reader (64 Ki rows per batch,
as the runtime's DuckDB handle asks for) to a C++ ``RecordBatchStream``. It is the floor our
Flight SQL layer is measured against. Run as its own process:

    python -m benchmarks.rawflight --port 5005
"""

from __future__ import annotations

import argparse
import json
import threading
from collections import deque
from typing import Any

import duckdb
import pyarrow.flight as flight

ROWS_PER_BATCH = 64 * 1024


class RawServer(flight.FlightServerBase):
    """Descriptor command: JSON ``{"sql": template with {lo} and {hi}, "rows": n, "parts": k}``;
    ticket: JSON ``{"sql": …}`` of one part."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self._db = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        # Readers borrow their cursor: keep the latest ones referenced while they stream.
        self._cursors: deque[Any] = deque(maxlen=256)

    def _cursor(self) -> Any:
        with self._lock:
            cursor = self._db.cursor()
            self._cursors.append(cursor)
            return cursor

    def get_flight_info(
        self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        request = json.loads(descriptor.command)
        rows, parts = int(request["rows"]), int(request.get("parts", 1))
        bounds = [rows * p // parts for p in range(parts + 1)]
        tickets = [
            json.dumps({"sql": request["sql"].format(lo=lo, hi=hi)}).encode()
            for lo, hi in zip(bounds, bounds[1:], strict=False)
        ]
        empty = self._cursor().sql(request["sql"].format(lo=0, hi=0))
        schema = empty.to_arrow_reader(ROWS_PER_BATCH).schema
        endpoints = [flight.FlightEndpoint(t, []) for t in tickets]
        return flight.FlightInfo(schema, descriptor, endpoints, -1, -1)

    def do_get(
        self, context: flight.ServerCallContext, ticket: flight.Ticket
    ) -> flight.FlightDataStream:
        sql = json.loads(ticket.ticket)["sql"]
        reader = self._cursor().sql(sql).to_arrow_reader(ROWS_PER_BATCH)
        return flight.RecordBatchStream(reader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = RawServer(f"grpc://127.0.0.1:{args.port}")
    print("ready", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
