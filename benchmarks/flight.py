"""Flight SQL throughput: one large mixed-type result, through the runtime and alternatives.

The data is a mirrored table in a file-mode DuckDB (:mod:`benchmarks.tables`: generated,
written through the accelerator interface with a checkpoint, so the runtime resumes on it and
serves it like any mirror). The runtime answers ``SELECT * FROM flight_rows`` through its whole
serving path (SQL check, planning, schema probe, DuckDB reader, batch sizing, the Flight SQL
stream); the raw server runs the same statement on a copy of the file; PostgreSQL gets the
same rows in an UNLOGGED table of the real server.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.flight as flight
from google.protobuf import any_pb2

from benchmarks import tables
from benchmarks.common import Config, Section, Target, free_port, median, table
from benchmarks.processes import Runtime
from flightsrv.proto import FlightSql_pb2

TABLE = "flight_rows"
QUERY = f"SELECT * FROM {TABLE}"
PG_CREATE = (
    f"CREATE UNLOGGED TABLE {TABLE} AS SELECT i::bigint AS id, i * 0.25::float8 AS amount, "
    "'customer-' || (i % 50000) AS customer, "
    "(ARRAY['placed', 'paid', 'packed', 'shipped', 'delivered'])[i % 5 + 1] AS status, "
    "i % 7 = 0 AS flag, CASE WHEN i % 10 = 0 THEN NULL ELSE (i % 1000)::bigint END AS qty "
    "FROM generate_series(0, {last}) i"
)
PARALLEL_PARTS = (2, 4)
SETTLE_S = 0.5  # pause before each timed read


@dataclass(frozen=True)
class Throughput:
    rows: int
    nbytes: int  # Arrow buffer bytes of the result (for PostgreSQL: of the same rows in Arrow)
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6


def measure(readers: dict[str, Callable[[], tuple[int, int]]], runs: int) -> dict[str, Throughput]:
    """Median time of ``runs`` reads of each reader, taken in turns (reader A, B, C, A, B, C…)
    so that a change in the machine's background load hits every reader alike; one warm-up
    read each first.

    Each read starts after a pause: freeing half a gigabyte (the ADBC driver's Go collector
    above all, and the server that sent it) goes on after a read returns, and would otherwise
    slow down whichever reader comes next.
    """
    sizes = {label: read() for label, read in readers.items()}
    times: dict[str, list[float]] = {label: [] for label in readers}
    for _ in range(runs):
        for label, read in readers.items():
            time.sleep(SETTLE_S)
            began = time.perf_counter()
            sizes[label] = read()
            times[label].append(time.perf_counter() - began)
    return {
        label: Throughput(sizes[label][0], sizes[label][1], median(times[label]))
        for label in readers
    }


def measure_adbc(uris: dict[str, str], runs: int) -> dict[str, Throughput]:
    """:func:`measure` of ADBC reads of ``QUERY`` from each of ``uris``, in a process of its
    own: the driver's Go runtime (its threads, its collector freeing each result) would
    otherwise slow down the other readers of this process."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure_adbc, uris, runs).result()


def _measure_adbc(uris: dict[str, str], runs: int) -> dict[str, Throughput]:
    conns = {label: adbc_connect(uri) for label, uri in uris.items()}
    try:
        return measure({label: adbc_read(conn, QUERY) for label, conn in conns.items()}, runs)
    finally:
        for conn in conns.values():
            conn.close()


# -- clients ---------------------------------------------------------------------------------


def adbc_connect(uri: str) -> Any:
    import adbc_driver_flightsql.dbapi as flightsql

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cannot disable autocommit": a read-only server
        return flightsql.connect(uri)


def adbc_read(conn: Any, sql: str) -> Callable[[], tuple[int, int]]:
    """ADBC's Flight SQL driver, as a user calls it (a new cursor: prepare, execute, fetch)."""

    def read() -> tuple[int, int]:
        with conn.cursor() as cur:
            cur.execute(sql)
            result = cur.fetch_arrow_table()
        return result.num_rows, result.nbytes

    return read


def _read_endpoints(client: flight.FlightClient, info: flight.FlightInfo) -> tuple[int, int]:
    endpoints = info.endpoints
    if len(endpoints) == 1:
        tables = [client.do_get(endpoints[0].ticket).read_all()]
    else:
        with ThreadPoolExecutor(len(endpoints)) as pool:
            tables = list(pool.map(lambda e: client.do_get(e.ticket).read_all(), endpoints))
    return sum(t.num_rows for t in tables), sum(t.nbytes for t in tables)


def flightsql_read(uri: str, sql: str) -> Callable[[], tuple[int, int]]:
    """The same pyarrow.flight client as for the raw server, speaking Flight SQL by hand
    (GetFlightInfo on a CommandStatementQuery, then DoGet)."""
    client = flight.FlightClient(uri)
    command = any_pb2.Any()
    command.Pack(FlightSql_pb2.CommandStatementQuery(query=sql))
    descriptor = flight.FlightDescriptor.for_command(command.SerializeToString())

    def read() -> tuple[int, int]:
        return _read_endpoints(client, client.get_flight_info(descriptor))

    return read


def raw_read(
    uri: str, rows: int, parts: int, generator: bool = False
) -> Callable[[], tuple[int, int]]:
    """The raw server's result split into ``parts`` endpoints (key ranges), read in parallel."""
    client = flight.FlightClient(uri)
    bounds = [rows * p // parts for p in range(parts + 1)]
    statements = (
        [QUERY]
        if parts == 1
        else [
            f"{QUERY} WHERE id >= {lo} AND id < {hi}"
            for lo, hi in zip(bounds, bounds[1:], strict=False)
        ]
    )
    request = json.dumps({"sql": statements, "generator": generator}).encode()
    descriptor = flight.FlightDescriptor.for_command(request)

    def read() -> tuple[int, int]:
        return _read_endpoints(client, client.get_flight_info(descriptor))

    return read


def duckdb_read(database: Path) -> Callable[[], tuple[int, int]]:
    con = duckdb.connect(str(database), read_only=True)

    def read() -> tuple[int, int]:
        result = con.sql(QUERY).to_arrow_reader(64 * 1024).read_all()
        return result.num_rows, result.nbytes

    return read


def pg_rows_read(dsn: str) -> Callable[[], tuple[int, int]]:
    """psycopg reading rows: binary results streamed in chunks of 64 Ki rows (its bytes are
    not known: reported as -1)."""
    import psycopg

    con = psycopg.connect(dsn, autocommit=True)

    def read() -> tuple[int, int]:
        count = 0
        with con.cursor(binary=True) as cur:
            for _ in cur.stream(QUERY, size=64 * 1024):
                count += 1
        return count, -1

    return read


def pg_load(dsn: str, rows: int) -> float:
    import psycopg

    began = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"DROP TABLE IF EXISTS {TABLE}")
        con.execute(PG_CREATE.format(last=rows - 1))
        con.execute(f"VACUUM ANALYZE {TABLE}")
    return time.perf_counter() - began


def pg_drop(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"DROP TABLE IF EXISTS {TABLE}")


class RawServerProcess:
    def __init__(self, workdir: Path, database: Path) -> None:
        self.port = free_port()
        self.uri = f"grpc://127.0.0.1:{self.port}"
        self.log = workdir / "rawflight.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.rawflight",
                    "--port",
                    str(self.port),
                    "--database",
                    str(database),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while "ready" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"raw Flight server did not start: {self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- the section -----------------------------------------------------------------------------


def run(cfg: Config) -> Section:
    section = Section("Flight SQL throughput: one large result")
    rows = cfg.size(10_000_000, 100_000)
    workdir = cfg.workdir / "flight"
    mirror, write_s = flight_mirror(cfg, rows)
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / "raw-copy.duckdb"
    shutil.copyfile(mirror, copy)
    pg_note = ""
    if cfg.postgres:
        load_s = pg_load(cfg.postgres, rows)
        pg_note = f" PostgreSQL's copy was loaded in {load_s:,.1f} s (not timed)."
    runs = 4 * cfg.runs
    try:
        with (
            tables.FakeDynamoProcess(workdir, {TABLE: rows}, {TABLE: "id:N"}) as fake,
            Runtime(workdir / "runtime", [tables.mirror_dataset(TABLE, fake.url, mirror)]) as rt,
        ):
            rt.wait_ready()
            raw = RawServerProcess(workdir, copy)
            try:
                readers = {
                    SAME_CLIENT: flightsql_read(rt.uri, QUERY),
                    **{_raw_label(p): raw_read(raw.uri, rows, p) for p in (1, *PARALLEL_PARTS)},
                    RAW_GENERATOR: raw_read(raw.uri, rows, 1, True),
                }
                if cfg.postgres:
                    readers[PG_ROWS] = pg_rows_read(cfg.postgres)
                results = measure_adbc({ADBC: rt.uri, ADBC_RAW: raw.uri}, runs)
                results.update(measure(readers, runs))
                # Apart: DuckDB's own allocations in this process would slow the next reader.
                results.update(measure({IN_PROCESS: duckdb_read(copy)}, runs))
            finally:
                raw.stop()
    finally:
        if cfg.postgres:
            pg_drop(cfg.postgres)
        copy.unlink()
    nbytes = results[ADBC].nbytes
    results = {
        label: t if t.nbytes >= 0 else Throughput(t.rows, nbytes, t.seconds)
        for label, t in results.items()
    }
    for label, t in results.items():
        print(f"{label}: {t.rows_per_s:,.0f} rows/s, {t.mb_per_s:,.0f} MB/s", flush=True)

    base = results[ADBC].rows_per_s
    section.add(
        "",
        f"`{QUERY}`: {rows:,} rows × 6 columns (BIGINT key, DOUBLE, two VARCHAR, BOOLEAN, "
        f"BIGINT with 10 % NULL), {nbytes / 1e6:,.0f} MB as Arrow, from a file-mode DuckDB "
        f"mirror (written in {write_s:,.1f} s, not timed). Median of {runs} reads per path "
        "(4 × `--runs`), the paths taken in turns (the two ADBC paths in a client process of "
        "their own, then the others, then DuckDB in this process), each read after a pause of "
        f"{SETTLE_S:g} s and one warm-up read per path; each read "
        "materialises the whole result in the client "
        "(`fetch_arrow_table()`, `read_all()`). The runtime resumed on the mirror (idle "
        "stream); the raw server (`benchmarks/rawflight.py`) hands DuckDB's reader of a copy "
        "of the file to a C++ `RecordBatchStream`; each is a process of its own." + pg_note,
        "",
        *table(
            ("path", "rows/s", "MB/s", "seconds", "vs ADBC → runtime"),
            [
                (
                    label,
                    f"{t.rows_per_s:,.0f}",
                    f"{t.mb_per_s:,.0f}",
                    f"{t.seconds:,.2f}",
                    f"{t.rows_per_s / base:,.2f}×",
                )
                for label, t in results.items()
            ],
        ),
    )
    adbc = results[ADBC]
    same_client = results[SAME_CLIENT]
    raw1 = results[_raw_label(1)]
    generator = results[RAW_GENERATOR]
    adbc_raw = results[ADBC_RAW]
    layer = adbc.rows_per_s / adbc_raw.rows_per_s
    layer_same = same_client.rows_per_s / raw1.rows_per_s
    clients = adbc_raw.rows_per_s / raw1.rows_per_s
    pulled = generator.rows_per_s / raw1.rows_per_s
    section.add(
        "",
        "- Our layer vs the raw server, each with the client held constant: through ADBC, the "
        f"runtime gets {layer:.2f}× the raw server's rows/s (the raw server answering the "
        "driver's Flight SQL calls in the most direct way); through pyarrow.flight, "
        f"{layer_same:.2f}×. The client is a cost of its own: on the same raw server ADBC "
        f"gets {clients:.2f}× pyarrow.flight's rows/s. The raw server pulling the very same "
        "DuckDB reader through a Python generator (`GeneratorStream`, as the runtime streams "
        f"string results) gets {pulled:.2f}×.",
    )
    section.targets.append(
        Target(
            "Flight SQL layer vs raw pyarrow.flight DoGet",
            "costs ≤ 10 % (≥ 0.90× the raw rows/s)",
            f"{layer:.2f}× (ADBC client on both); {layer_same:.2f}× (pyarrow.flight on both)",
            min(layer, layer_same) >= 0.90,
        )
    )
    section.headline.append(
        (
            f"ADBC fetch of {rows:,} rows through the runtime",
            f"{adbc.rows_per_s:,.0f} rows/s, {adbc.mb_per_s:,.0f} MB/s",
        )
    )
    pg_rows = results.get(PG_ROWS)
    if pg_rows is not None:
        ratio = adbc.rows_per_s / pg_rows.rows_per_s
        section.add(
            f"- ADBC → runtime vs psycopg → PostgreSQL: {ratio:,.1f}× the rows/s. psycopg reads "
            "binary results streamed in chunks of 64 Ki rows (`cursor.stream(size=65536)`) "
            "into Python tuples, which are counted and dropped (no client-side table is built)."
        )
        section.targets.append(
            Target(
                "Flight SQL vs PostgreSQL's protocol (psycopg)",
                "≥ 5× faster",
                f"{ratio:,.1f}×",
                ratio >= 5,
            )
        )
        section.headline.append(("ADBC → runtime vs psycopg → PostgreSQL", f"{ratio:,.1f}×"))
    else:
        section.targets.append(
            Target("Flight SQL vs PostgreSQL's protocol (psycopg)", "≥ 5× faster", "skipped", None)
        )
    best = max(PARALLEL_PARTS, key=lambda p: results[_raw_label(p)].rows_per_s)
    gain = results[_raw_label(best)].rows_per_s / raw1.rows_per_s
    section.add(
        "- Several endpoints: the runtime answers every query with one endpoint (one stream). "
        "The raw server split into "
        + ", ".join(
            f"{p} endpoints read in parallel gets "
            f"{results[_raw_label(p)].rows_per_s / raw1.rows_per_s:,.2f}×"
            for p in PARALLEL_PARTS
        )
        + f" the single stream's rows/s (best: {best}, {gain:,.2f}×)"
        + (
            " — parallel endpoints beat one stream on this machine."
            if gain > 1.1
            else " — no real gain on this machine, where client, server and DuckDB share "
            "the same cores."
        ),
    )
    section.headline.append(
        (f"raw server, {best} parallel endpoints vs 1", f"{gain:,.2f}× the rows/s")
    )
    return section


ADBC = "ADBC → runtime (Flight SQL)"
SAME_CLIENT = "pyarrow.flight → runtime (Flight SQL by hand)"
ADBC_RAW = "ADBC → raw server (bare Flight SQL)"
RAW_GENERATOR = "pyarrow.flight → raw server, reader pulled by a Python generator"
IN_PROCESS = "in-process DuckDB reader (no network)"
PG_ROWS = "psycopg → PostgreSQL, rows (binary, streamed 64 Ki)"


def _raw_label(parts: int) -> str:
    return f"pyarrow.flight → raw server, {parts} endpoint(s)"


def flight_mirror(cfg: Config, rows: int) -> tuple[Path, float]:
    """The generated ``flight_rows`` mirror of ``rows`` rows (written once per suite run)."""
    path = cfg.workdir / "mirrors" / f"{TABLE}-{rows}.duckdb"
    if path.exists():
        return path, 0.0
    return path, tables.write_mirror(path, tables.flight_rows(), rows)
