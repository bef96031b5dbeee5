"""Self-contained prepared-statement handles and result tickets.

The server keeps no statement state: a prepared statement handle carries its SQL, and after
parameters are bound (DoPut) the server hands back a new handle carrying the parameter rows
too (``DoPutPreparedStatementResult``). A result ticket carries the same plus the schema
GetFlightInfo promised and a random query id, which CancelFlightInfo names to stop that query.
Any server of a pool can therefore serve any call, nothing leaks when a client dies without
closing its statements, and ClosePreparedStatement has nothing to free.

Handles are not signed: the SQL inside is checked again on every use, so a forged handle can
do nothing a plain query could not.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pyarrow as pa

from flightsrv.flightsql.lru import Lru

_MAGIC = b"DMQ2"
_LENGTH = struct.Struct(">I")


class InvalidHandle(ValueError):
    """Bytes that are not a handle or ticket issued by this server."""


@dataclass(frozen=True)
class Statement:
    """A query, its bound parameter rows and, in tickets, the result schema promised.

    ``query_id`` is random: per prepared statement in its handles (to find the parameters an
    older client bound, see :class:`RecentBindings`), per GetFlightInfo in tickets (so that
    cancelling one client's query spares another's identical one).
    """

    sql: str
    params: pa.Table | None = None
    schema: pa.Schema | None = None
    query_id: bytes = b""

    def with_params(self, params: pa.Table) -> Statement:
        return Statement(self.sql, params, None, self.query_id)

    def as_ticket(self, schema: pa.Schema, query_id: bytes) -> Statement:
        return Statement(self.sql, self.params, schema, query_id)

    def param_rows(self) -> list[list[object]]:
        """Bound parameter sets as Python values, one list per row (none bound: one empty)."""
        if self.params is None or self.params.num_columns == 0:
            return [[]]
        columns = [column.to_pylist() for column in self.params.columns]
        return [list(row) for row in zip(*columns, strict=True)]

    def encode(self) -> bytes:
        sql = self.sql.encode()
        params = _ipc_table(self.params) if self.params is not None else b""
        schema = self.schema.serialize().to_pybytes() if self.schema is not None else b""
        return b"".join(
            [_MAGIC]
            + [
                part
                for blob in (sql, params, schema, self.query_id)
                for part in (_LENGTH.pack(len(blob)), blob)
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Statement:
        if not data.startswith(_MAGIC):
            raise InvalidHandle("unknown statement handle or ticket")
        blobs: list[bytes] = []
        offset = len(_MAGIC)
        try:
            for _ in range(4):
                (size,) = _LENGTH.unpack_from(data, offset)
                offset += _LENGTH.size
                if offset + size > len(data):
                    raise InvalidHandle("truncated statement handle or ticket")
                blobs.append(data[offset : offset + size])
                offset += size
            sql = blobs[0].decode()
            params = pa.ipc.open_stream(blobs[1]).read_all() if blobs[1] else None
            schema = pa.ipc.read_schema(pa.py_buffer(blobs[2])) if blobs[2] else None
        except (struct.error, UnicodeDecodeError, pa.ArrowException) as e:
            raise InvalidHandle(f"corrupt statement handle or ticket: {e}") from None
        return cls(sql, params, schema, blobs[3])


def _ipc_table(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# Handles and tickets issued lately, kept decoded: each comes back in the very next call.
RECENTLY_ISSUED = 1024
RECENTLY_ISSUED_BYTES = 16 * 1024 * 1024


class IssuedStatements:
    """Encodes handles and tickets, and decodes them without parsing again the ones it issued
    lately: a lookup's handle from DoPut returns in GetFlightInfo, its ticket in DoGet, and
    decoding reads Arrow IPC each time. Any other handle is decoded as usual."""

    def __init__(self, limit: int = RECENTLY_ISSUED, limit_bytes: int = RECENTLY_ISSUED_BYTES):
        self._issued: Lru[bytes, Statement] = Lru(limit, limit_bytes, _weight)

    def encode(self, statement: Statement) -> bytes:
        data = statement.encode()
        self._issued.put(data, statement)
        return data

    def decode(self, data: bytes) -> Statement:
        statement = self._issued.get(data)
        return statement if statement is not None else Statement.decode(data)


def _weight(statement: Statement) -> int:
    return len(statement.sql) + (statement.params.nbytes if statement.params is not None else 0)


# Clients older than DoPutPreparedStatementResult (flightsql-dbapi, older JDBC drivers) ignore
# the handle it returns and execute the handle they prepared: the parameters they bound are kept
# for them here, by prepared handle id, bounded in count and size, dropped on close.
RECENT_BINDINGS = 1024
RECENT_BINDINGS_BYTES = 64 * 1024 * 1024


class RecentBindings:
    """The last parameters bound to each recently prepared statement (thread-safe LRU)."""

    def __init__(self, limit: int = RECENT_BINDINGS, limit_bytes: int = RECENT_BINDINGS_BYTES):
        self._entries: Lru[bytes, pa.Table] = Lru(limit, limit_bytes, lambda t: t.nbytes)

    def remember(self, handle_id: bytes, params: pa.Table) -> None:
        if handle_id:
            self._entries.put(handle_id, params)

    def recall(self, handle_id: bytes) -> pa.Table | None:
        return self._entries.get(handle_id)

    def forget(self, handle_id: bytes) -> None:
        self._entries.pop(handle_id)
