"""SQL over HTTP, as Spice's ``POST /v1/sql``: the body is the statement, the answer its rows.

A statement runs exactly as a Flight SQL query does (:meth:`FlightSqlServer.run_sql`: the same
allow-list, read-only engine session, limits and timeout; API keys are checked by the HTTP
server before the body is read). The result streams as it is computed (chunked), one batch at a
time, so memory stays bounded whatever its size, in the format the ``Accept`` header asks for:
JSON (an array of objects, the default), CSV, a plain-text table, or an Arrow IPC stream.
Errors are JSON ``{"error": …}`` with the status saying what kind: 400 a statement that cannot
run, 403 one the allow-list refuses, 404 a table no dataset serves, 503 a dataset not Ready,
504 a query past ``runtime.query.timeout``; never a traceback or a server path.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from flightsrv.flightsql.catalog import CrossEngineQuery, DatasetNotReady, TableNotFound
from flightsrv.flightsql.errors import BadRequest, Unsupported
from flightsrv.flightsql.results import SchemaChanged
from flightsrv.flightsql.running import QueryCancelled, QueryTimedOut, ServerStopping
from flightsrv.flightsql.sqlcheck import ReadOnlyViolation, SqlSyntaxError, StatementTooLarge
from sync.accelerators.query import QueryError

log = logging.getLogger(__name__)

JSON = "application/json"
CSV = "text/csv"
TEXT = "text/plain"
ARROW = "application/vnd.apache.arrow.stream"
FORMATS = (JSON, CSV, TEXT, ARROW)

Answer = tuple[int, str, "str | bytes | Iterator[bytes]"]
RunSql = Callable[[str, str], tuple[pa.Schema, Iterator[pa.RecordBatch]]]

# Domain error → HTTP status (first match wins).
_STATUSES: tuple[tuple[tuple[type[Exception], ...], int], ...] = (
    ((TableNotFound,), 404),
    ((ReadOnlyViolation,), 403),
    ((DatasetNotReady, SchemaChanged, ServerStopping), 503),
    ((QueryTimedOut,), 504),
    ((QueryCancelled,), 499),
    (
        (
            SqlSyntaxError,
            StatementTooLarge,
            QueryError,
            CrossEngineQuery,
            BadRequest,
            Unsupported,
            UnicodeDecodeError,
        ),
        400,
    ),
)


def error(status: int, message: str) -> Answer:
    return status, JSON, json.dumps({"error": " ".join(message.split())})


def choose_format(accept: str | None) -> str | None:
    """The first format of ``Accept`` (in order of preference) that is served; JSON for no
    header or ``*/*``; None when it names only formats that are not served."""
    if not accept:
        return JSON
    ranked = []
    for position, part in enumerate(accept.split(",")):
        kind, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        ranked.append((-quality, position, kind.lower()))
    for quality, _, kind in sorted(ranked):
        if quality == 0:
            continue
        if kind in FORMATS:
            return kind
        if kind in ("*/*", "application/*"):
            return JSON
        if kind == "text/*":
            return CSV
    return None


def answer(run_sql: RunSql, body: bytes, accept: str | None) -> Answer:
    """The answer to ``POST /v1/sql`` with ``body``: the rows, or an error."""
    kind = choose_format(accept)
    if kind is None:
        return error(406, f"Accept: none of the formats served ({', '.join(FORMATS)})")
    try:
        sql = body.decode("utf-8").strip()
        if not sql:
            return error(400, "the request body is empty: send the SQL statement as the body")
        schema, batches = run_sql(sql, "HTTP /v1/sql")
    except Exception as e:  # noqa: BLE001 - every error becomes a status, details to the log
        return _refused(e)
    encode = {JSON: _json, CSV: _csv, TEXT: _text, ARROW: _arrow}[kind]
    return 200, kind, _closing(encode(schema, batches), batches)


def _refused(e: Exception) -> Answer:
    for kinds, status in _STATUSES:
        if isinstance(e, kinds):
            log.info("HTTP /v1/sql refused: %s: %s", type(e).__name__, e)
            prefix = "cross-engine query: " if isinstance(e, CrossEngineQuery) else ""
            return error(status, prefix + str(e))
    log.error("HTTP /v1/sql failed", exc_info=e)
    return error(500, "internal error (see the server log)")


def _closing(chunks: Iterator[bytes], batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    """``chunks``, the query finished (its engine cursor released) however they end."""
    try:
        yield from chunks
    except Exception as e:
        # The status line is sent: the stream is cut short, which the client sees.
        log.info("HTTP /v1/sql stream ended early: %s: %s", type(e).__name__, e)
        raise
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def _value(value: Any) -> Any:
    """A value JSON can hold: times as ISO 8601, decimals as text (exact), bytes as base64."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _json(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    yield b"["
    first = True
    for batch in batches:
        rows = batch.to_pylist()
        if not rows:
            continue
        text = ",".join(
            json.dumps(r, default=_value, ensure_ascii=False, separators=(",", ":")) for r in rows
        )
        yield (text if first else "," + text).encode()
        first = False
    yield b"]"


def _flat(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with nested and binary columns as JSON / base64 text (what CSV can hold)."""
    columns = []
    for column in batch.columns:
        kind = column.type
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            text = [None if v is None else _value(v) for v in column.to_pylist()]
            column = pa.array(text, pa.string())
        elif pa.types.is_nested(kind):
            text = [
                None if v is None else json.dumps(v, default=_value) for v in column.to_pylist()
            ]
            column = pa.array(text, pa.string())
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _csv(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    header = True
    for batch in batches:
        sink = io.BytesIO()
        pacsv.write_csv(_flat(batch), sink, pacsv.WriteOptions(include_header=header))
        header = False
        yield sink.getvalue()
    if header:  # no rows: the header alone
        yield (",".join(json.dumps(n) for n in schema.names) + "\n").encode()


def _text(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    """A table per batch, columns as wide as their widest value in it, then the row count."""
    count = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        cells = [[_cell(v) for v in row.values()] for row in batch.to_pylist()]
        yield _grid(schema.names, cells).encode()
        count += batch.num_rows
    if not count:
        yield _grid(schema.names, []).encode()
    yield f"({count} row{'s' if count != 1 else ''})\n".encode()


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dict | list):
        return json.dumps(value, default=_value, ensure_ascii=False)
    if isinstance(value, bytes | datetime | date | time | Decimal):
        return str(_value(value))
    return str(value)


def _grid(names: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(n), *(len(r[i]) for r in rows)]) for i, n in enumerate(names)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = [rule, "| " + " | ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)) + " |"]
    lines.append(rule)
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.append(rule)
    return "\n".join(lines) + "\n"


class _Collect(io.RawIOBase):
    """A file that keeps what is written to it until taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _arrow(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> Iterator[bytes]:
    sink = _Collect()
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), schema) as writer:
        yield sink.take()
        for batch in batches:
            writer.write_batch(batch)
            yield sink.take()
    yield sink.take()  # the end-of-stream marker
