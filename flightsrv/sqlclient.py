"""``flightsrv sql``: a small Flight SQL client for people, for this server or any other.

One query from the command line, or statements read from standard input until EOF (each ends
with ``;`` at the end of a line); each result is printed as a table with the time it took.
It speaks plain Flight SQL (``CommandStatementQuery``, then ``DoGet`` of every endpoint) with
pyarrow's Flight client, so it needs nothing the server does not.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2

from flightsrv.proto import FlightActions_pb2 as fa
from flightsrv.proto import FlightSql_pb2 as pb

DEFAULT_URI = "grpc://127.0.0.1:50051"
DEFAULT_MAX_ROWS = 1000
SIGNAL_CHECK_S = 0.1  # how soon Ctrl-C at the prompt cancels the running statement
MAX_CELL = 60
PROMPT = "sql> "
CONTINUATION = "  -> "
QUIT = ("\\q", "quit", "exit")
HISTORY_FILE = Path("~/.flightsrv_history")
HISTORY_LENGTH = 1000
# What pyarrow appends to a server's message: its status detail (a Python traceback for some
# errors) and gRPC's debug context; people need the message only.
_DETAIL = re.compile(r"\.?\s*(Detail:|gRPC client debug context:|Client context:).*", re.DOTALL)
_FLIGHT_PREFIX = re.compile(r"^Flight returned [a-z ]+ error, with message: ")


class SqlClientError(Exception):
    """A query failed; the message is the server's, without gRPC's debug context."""


@dataclass
class SqlClient:
    """A Flight SQL connection: ``grpc://`` or ``grpc+tls://``, an optional API key (Bearer)."""

    uri: str
    api_key: str | None = None
    tls_root_certs: bytes | None = None

    def __post_init__(self) -> None:
        kwargs = {"tls_root_certs": self.tls_root_certs} if self.tls_root_certs else {}
        self._client = flight.FlightClient(self.uri, **kwargs)
        headers = [(b"authorization", f"Bearer {self.api_key}".encode())] if self.api_key else []
        self._options = flight.FlightCallOptions(headers=headers)
        self._lock = threading.Lock()
        self._cancelled = False
        self._reading: flight.FlightStreamReader | None = None
        self._info: flight.FlightInfo | None = None

    def query(self, sql: str) -> pa.Table:
        """Run ``sql`` and return its whole result."""
        command = any_pb2.Any()
        command.Pack(pb.CommandStatementQuery(query=sql))
        descriptor = flight.FlightDescriptor.for_command(command.SerializeToString())
        with self._lock:
            self._cancelled, self._info = False, None
        try:
            info = self._client.get_flight_info(descriptor, self._options)
            with self._lock:
                self._info = info
            tables = [self._fetch(endpoint) for endpoint in info.endpoints]
        except (flight.FlightError, pa.ArrowException) as e:
            raise SqlClientError(_message(e)) from None
        if not tables:
            return info.schema.empty_table()
        return pa.concat_tables(tables)

    def _fetch(self, endpoint: flight.FlightEndpoint) -> pa.Table:
        uris = [loc.uri.decode() for loc in endpoint.locations]
        remote = [u for u in uris if u and not u.startswith("arrow-flight-reuse-connection")]
        if not remote:
            return self._read(self._client, endpoint.ticket)
        other = SqlClient(remote[0], self.api_key, self.tls_root_certs)
        try:
            return self._read(other._client, endpoint.ticket)
        finally:
            other.close()

    def _read(self, client: flight.FlightClient, ticket: flight.Ticket) -> pa.Table:
        """One endpoint's rows, from a stream :meth:`cancel` can cut short."""
        reader = client.do_get(ticket, self._options)
        with self._lock:
            if self._cancelled:
                reader.cancel()
            self._reading = reader
        try:
            return reader.read_all()
        finally:
            with self._lock:
                self._reading = None

    def cancel(self) -> None:
        """Stop the running query from another thread: the stream being read is cut short, and
        the server is asked to cancel the query (``CancelFlightInfo``), which stops it in its
        engine even before its first batch."""
        with self._lock:
            self._cancelled = True
            info, reading = self._info, self._reading
        if reading is not None:
            reading.cancel()
        if info is not None:
            request = fa.CancelFlightInfoRequest(info=info.serialize()).SerializeToString()
            with suppress(flight.FlightError, pa.ArrowException):  # a server without it
                list(self._client.do_action(("CancelFlightInfo", request), self._options))

    def close(self) -> None:
        self._client.close()


def _message(error: Exception) -> str:
    text = _FLIGHT_PREFIX.sub("", str(error).strip())
    text = _DETAIL.sub("", text).strip()
    return text.splitlines()[0] if text else type(error).__name__


def format_table(table: pa.Table, max_rows: int = DEFAULT_MAX_ROWS) -> str:
    """``table`` as a text grid (at most ``max_rows`` rows), numbers aligned right."""
    shown = table.slice(0, max_rows)
    header = [field.name for field in table.schema]
    numeric = [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in table.schema
    ]
    rows = [[_cell(value) for value in row.values()] for row in shown.to_pylist()]
    if len(set(header)) < len(header):  # duplicate names collapse in to_pylist: go by column
        columns = [[_cell(v) for v in column.to_pylist()] for column in shown.columns]
        rows = [list(row) for row in zip(*columns, strict=True)] if columns else []
    widths = [max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(header)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Iterable[str], align: Iterable[bool]) -> str:
        parts = [
            f" {c.rjust(w) if right else c.ljust(w)} "
            for c, w, right in zip(cells, widths, align, strict=True)
        ]
        return "|" + "|".join(parts) + "|"

    out = [rule, line(header, [False] * len(header)), rule]
    out += [line(row, numeric) for row in rows]
    if rows:
        out.append(rule)
    if table.num_rows > len(rows):
        out.append(f"({len(rows)} of {table.num_rows} rows shown; --max-rows to see more)")
    return "\n".join(out) if header else "(no columns)"


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        text = "\\x" + value.hex()
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


class _Statement:
    """Lines gathered until one ends with ``;``: then the statement they make is complete."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> str | None:
        """Add ``line``; returns the statement (without its ``;``) once complete."""
        self.lines.append(line)
        return self.flush() if line.rstrip().endswith(";") else None

    def flush(self) -> str | None:
        """The statement gathered so far (None if empty), and start a new one."""
        text = "\n".join(self.lines).strip().rstrip(";").strip()
        self.lines = []
        return text or None


def statements(lines: Iterable[str]) -> Iterator[str]:
    """Statements from input lines: each ends with ``;`` at the end of a line (or at EOF)."""
    statement = _Statement()
    for raw in lines:
        line = raw.rstrip("\n")
        if not statement.lines and line.strip().lower() in QUIT:
            return
        if (text := statement.add(line)) is not None:
            yield text
    if (text := statement.flush()) is not None:
        yield text


def typed_statements(read_line: Callable[[str], str], out: IO[str]) -> Iterator[str]:
    """Statements typed at a prompt, ending as :func:`statements`' do.

    ``read_line(prompt)`` reads one line (``input``, with readline's editing and history at a
    terminal). Ctrl-C drops the statement being typed and prompts again, as psql and duckdb
    do; Ctrl-D (EOF) or ``\\q`` leaves.
    """
    statement = _Statement()
    while True:
        try:
            line = read_line(CONTINUATION if statement.lines else PROMPT)
        except KeyboardInterrupt:
            out.write("\n")
            statement = _Statement()
            continue
        except EOFError:
            out.write("\n")
            return
        if not statement.lines and line.strip().lower() in QUIT:
            return
        if (text := statement.add(line)) is not None:
            yield text


def _stream_reader(stream: IO[str], out: IO[str]) -> Callable[[str], str]:
    """``read_line`` for :func:`typed_statements` from a stream that is not the process's own
    terminal (no line editing)."""

    def read_line(prompt: str) -> str:
        out.write(prompt)
        out.flush()
        line = stream.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    return read_line


@contextmanager
def terminal_history(path: Path = HISTORY_FILE) -> Iterator[None]:
    """readline's line editing for ``input()``, with the history kept in ``path``."""
    try:
        import readline  # not on every platform; input() still works without it
    except ImportError:
        yield
        return
    path = path.expanduser()
    with suppress(OSError):  # no history yet
        readline.read_history_file(path)
    readline.set_history_length(HISTORY_LENGTH)
    try:
        yield
    finally:
        with suppress(OSError):  # an unwritable home is no reason to fail the session
            readline.write_history_file(path)


def run(
    client: SqlClient,
    query: str | None,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    stdin: IO[str] | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """Run ``query``, or the statements of ``stdin``; 0 when every statement succeeded."""
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    err = err or sys.stderr
    if query is not None:
        return _run_all(client, [query], max_rows, out, err)
    if not stdin.isatty():
        return _run_all(client, statements(stdin), max_rows, out, err)
    if stdin is sys.stdin and out is sys.stdout:
        with terminal_history():
            typed = typed_statements(input, out)
            return _run_all(client, typed, max_rows, out, err, interactive=True)
    typed = typed_statements(_stream_reader(stdin, out), out)
    return _run_all(client, typed, max_rows, out, err, interactive=True)


def _run_all(
    client: SqlClient,
    sqls: Iterable[str],
    max_rows: int,
    out: IO[str],
    err: IO[str],
    interactive: bool = False,
) -> int:
    """Run each statement and print its result; at a prompt (``interactive``), Ctrl-C cancels
    the running statement (the server stops it in its engine) and the prompt comes back, as in
    psql. Elsewhere it ends the run."""
    failed = False
    for sql in sqls:
        started = time.perf_counter()
        try:
            table = _interruptible(client, sql) if interactive else client.query(sql)
        except SqlClientError as e:
            failed = True
            print(f"error: {e}", file=err, flush=True)
            continue
        except KeyboardInterrupt:
            if not interactive:
                raise
            print("\ncancelled", file=err, flush=True)
            continue
        elapsed = time.perf_counter() - started
        print(format_table(table, max_rows), file=out)
        rows = "1 row" if table.num_rows == 1 else f"{table.num_rows} rows"
        print(f"Time: {elapsed:.3f} s. {rows}.", file=out, flush=True)
    return 1 if failed else 0


def _interruptible(client: SqlClient, sql: str) -> pa.Table:
    """``client.query(sql)`` from a worker thread, which Ctrl-C cancels.

    In the main thread pyarrow would take Ctrl-C over for the length of the call, only to
    notice it between batches (never, while the server computes an aggregate), and could leave
    the next prompt deaf to it.

    Raises:
        KeyboardInterrupt: Ctrl-C was pressed; the result was cut short.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="query") as worker:
        running = worker.submit(client.query, sql)
        try:
            while True:  # woken often: only this thread raises KeyboardInterrupt
                with suppress(FutureTimeout):
                    return running.result(timeout=SIGNAL_CHECK_S)
        except KeyboardInterrupt:
            client.cancel()
            with suppress(SqlClientError):
                running.result()
            raise


def read_root_certs(path: Path | None) -> bytes | None:
    """The PEM root certificates at ``path`` (to trust a self-signed server certificate)."""
    return None if path is None else path.read_bytes()
