"""Real engines behind a test catalog, for Flight SQL tests driven by the real ADBC client.

The catalog here is small and test-owned; the engines and query handles are the project's own
(DuckDB accelerators, and a SQLite file behind the SQLite query handle).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql_dbapi
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flightsrv.flightsql import FlightSqlServer
from flightsrv.flightsql.catalog import CrossEngineQuery, DatasetNotReady, TableInfo, TableNotFound
from sync.accelerators.duckdb import DuckDBAccelerator
from sync.accelerators.query import QueryHandle, StopSignal
from sync.accelerators.sqlite import SQLiteQueryHandle
from sync.schema import ColumnType
from sync.settings import AccelerationSettings

BIG_ROWS = 2_000_000
NOT_READY_REASON = "bootstrapping 40 % (1200 of 3000 items)"

ORDERS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("customer", pa.string()),
        pa.field("amount", pa.float64()),
        pa.field("paid", pa.bool_()),
        pa.field("note", pa.string()),
        pa.field("payload", pa.binary()),
    ]
)
ORDERS = pa.table(
    {
        "id": [1, 2, 3, 4, 5],
        "customer": ["ada", "bob", "cy", "ada", "dee"],
        "amount": [10.5, 20.0, 7.25, 99.0, 0.5],
        "paid": [True, False, True, True, False],
        "note": ["first", None, "third", None, "fifth"],
        "payload": [b"\x00\x01", b"", None, b"\xff", b"abc"],
    },
    schema=ORDERS_SCHEMA,
)
EVENTS_SCHEMA = pa.schema(
    [pa.field("id", pa.int64()), pa.field("kind", pa.string()), pa.field("ok", pa.bool_())]
)


class RecordingHandle:
    """A real engine handle that notes the SQL it is given and counts the batches read from it
    (to see what the server runs, and when it stops reading)."""

    def __init__(self, handle: QueryHandle) -> None:
        self._handle = handle
        self.dialect = handle.dialect
        self.executed: list[str] = []
        self.batches_read = 0

    def execute(
        self, sql: str, params: Sequence[object] = (), stop: StopSignal | None = None
    ) -> pa.RecordBatchReader:
        self.executed.append(sql)
        reader = self._handle.execute(sql, params, stop)
        return pa.RecordBatchReader.from_batches(reader.schema, self._counted(reader))

    def _counted(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        try:
            for batch in reader:
                self.batches_read += 1
                yield batch
        finally:
            reader.close()


@dataclass
class EngineCatalog:
    """Tables spread over engines, each table with its handle and readiness."""

    scratch: QueryHandle
    infos: dict[str, TableInfo] = field(default_factory=dict)
    handles: dict[str, QueryHandle] = field(default_factory=dict)
    not_ready: dict[str, str] = field(default_factory=dict)

    def add(self, info: TableInfo, handle: QueryHandle) -> None:
        self.infos[info.name.lower()] = info
        self.handles[info.name.lower()] = handle

    def tables(self) -> Sequence[TableInfo]:
        return list(self.infos.values())

    def handle_for(self, table_names: Iterable[str]) -> QueryHandle:
        names = sorted({n.lower() for n in table_names})
        if not names:
            return self.scratch
        for name in names:
            if name not in self.infos:
                raise TableNotFound(f"table {name!r} not found")
        for name in names:
            if name in self.not_ready:
                raise DatasetNotReady(f"dataset {name!r} is not ready: {self.not_ready[name]}")
        handles = {id(self.handles[n]) for n in names}
        if len(handles) > 1:
            engines = ", ".join(f"{n} ({self.infos[n].engine})" for n in names)
            raise CrossEngineQuery(f"tables live in different databases: {engines}")
        return self.handles[names[0]]


@dataclass
class Env:
    server: FlightSqlServer
    catalog: EngineCatalog
    duck_handle: RecordingHandle
    accelerators: list[DuckDBAccelerator]

    @property
    def uri(self) -> str:
        return f"grpc://127.0.0.1:{self.server.port}"

    def connect(self, **kwargs: object) -> flightsql_dbapi.Connection:
        # Plain DB-API connect: the driver leaves autocommit, which must work without warning.
        return flightsql_dbapi.connect(self.uri, **kwargs)

    def flight_client(self) -> flight.FlightClient:
        return flight.connect(self.uri)


def build_catalog(
    tmp: Path,
) -> tuple[EngineCatalog, RecordingHandle, list[DuckDBAccelerator]]:
    """Tables in the project's own DuckDB and SQLite accelerators' query handles."""
    duck = DuckDBAccelerator(AccelerationSettings("duckdb", "memory"))
    with duck.cursor() as cur:
        cur.register("orders_src", ORDERS)
        cur.execute("CREATE TABLE orders AS SELECT * FROM orders_src")
        cur.unregister("orders_src")
        cur.execute(
            "CREATE TABLE items AS SELECT range AS id, range % 5 + 1 AS order_id, "
            "'item-' || range AS label FROM range(10)"
        )
        cur.execute(
            f"CREATE TABLE big AS SELECT range AS id, range::DOUBLE * 0.5 AS v, "
            f"'row-' || range AS s FROM range({BIG_ROWS})"
        )
        cur.execute("CREATE TABLE pending AS SELECT 1 AS id")
    duck_handle = RecordingHandle(duck.query_handle())
    scratch = DuckDBAccelerator(AccelerationSettings("duckdb", "memory"))
    catalog = EngineCatalog(scratch=scratch.query_handle())
    catalog.add(TableInfo("orders", ORDERS_SCHEMA, ("id",), "duckdb"), duck_handle)
    catalog.add(
        TableInfo(
            "items",
            pa.schema([("id", pa.int64()), ("order_id", pa.int64()), ("label", pa.string())]),
            ("id",),
            "duckdb",
        ),
        duck_handle,
    )
    catalog.add(
        TableInfo(
            "big",
            pa.schema([("id", pa.int64()), ("v", pa.float64()), ("s", pa.string())]),
            ("id",),
            "duckdb",
        ),
        duck_handle,
    )
    catalog.add(
        TableInfo("pending", pa.schema([("id", pa.int32())]), ("id",), "duckdb"), duck_handle
    )
    catalog.not_ready["pending"] = NOT_READY_REASON

    path = tmp / "events.sqlite"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE events (id BIGINT PRIMARY KEY, kind VARCHAR, ok BOOLEAN)")
        con.executemany(
            "INSERT INTO events VALUES (?, ?, ?)",
            [(1, "click", 1), (2, "view", 0), (3, "click", 1), (4, "buy", None)],
        )
    sqlite_handle = SQLiteQueryHandle(
        path, {"id": ColumnType.BIGINT, "kind": ColumnType.VARCHAR, "ok": ColumnType.BOOLEAN}
    )
    catalog.add(TableInfo("events", EVENTS_SCHEMA, ("id",), "sqlite"), sqlite_handle)
    return catalog, duck_handle, [duck, scratch]


def shutdown_while_reading(
    server: FlightSqlServer,
    serving: threading.Thread,
    reader: flight.FlightStreamReader,
    error: type[Exception],
    match: str | None = None,
) -> int:
    """Shut ``server`` down while ``reader`` is mid-stream, expect the stream to fail with
    ``error``, and return the rows read before; shutdown and serving must both have ended."""
    rows = reader.read_chunk().data.num_rows
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    with pytest.raises(error, match=match):
        while True:
            rows += reader.read_chunk().data.num_rows
    stopper.join(timeout=10)
    serving.join(timeout=10)
    assert not stopper.is_alive() and not serving.is_alive()
    return rows
