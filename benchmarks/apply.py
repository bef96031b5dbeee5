"""Bootstrap and change apply: raw Scan / GetRecords bodies replayed into the data path.

The data path is the product's own (``rawparse`` → ``convert``/``records`` → an accelerator's
``apply``); bodies come from :mod:`benchmarks.bodies` because the local emulator is far slower
than the code it would be measuring. Each engine is compared with :mod:`benchmarks.naive` in
the same run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from functools import partial

from benchmarks import naive, pg
from benchmarks.bodies import SCAN_PAGE_ITEMS, get_records_bodies, scan_bodies
from benchmarks.common import (
    Config,
    Measure,
    Section,
    Target,
    median_measure,
    table,
    timed,
)
from benchmarks.replay import STREAM_ARN, ReplayScan, ReplayStreams
from sync.accelerators.base import Accelerator, open_accelerator
from sync.bootstrap import apply_load
from sync.changes import ChangeBatch
from sync.dynamodb.client import DynamoDBClients
from sync.dynamodb.load import scan_batches
from sync.dynamodb.rawparse import parse_get_records, parse_scan
from sync.dynamodb.records import stream_rows
from sync.dynamodb.scan import auto_segments, scan_table
from sync.dynamodb.stream import StreamReader
from sync.dynamodb.typeoptions import TypeOptions
from sync.errors import SyncError
from sync.schema import Column, ColumnType, TableSpec
from sync.settings import AccelerationSettings

KEY_SPEC = TableSpec("orders", (Column("order_id", ColumnType.VARCHAR),), ("order_id",))
SHARD_RECORDS_PER_S = 1000  # a fully loaded shard: its partition's 1,000 writes/s
INFER_MAX = 10


def settings(engine: str, postgres: str | None) -> AccelerationSettings:
    if engine == "postgres":
        assert postgres is not None
        return AccelerationSettings("postgres", "memory", None, pg.connection_keywords(postgres))
    return AccelerationSettings(engine, "memory")  # type: ignore[arg-type]


def load_pages(acc: Accelerator, scan: ReplayScan, table: str = "orders") -> TableSpec:
    """The bootstrap of ``DatasetSync``: the product's parallel Scan (its segment threads
    parse the bodies) batched by :func:`sync.dynamodb.load.scan_batches` and applied by
    :func:`sync.bootstrap.apply_load`. Returns the final spec."""
    spec = replace(KEY_SPEC, name=table)
    acc.create_table(spec)
    clients = DynamoDBClients(scan, None)
    segments = auto_segments(scan.pages * SCAN_PAGE_ITEMS)
    pages = scan_table(clients, table, segments, threading.Event(), _no_transient)
    batches = scan_batches(pages, spec, TypeOptions(support=acc.type_support), INFER_MAX)
    spec, _ = apply_load(acc, table, spec, batches)
    return spec


def _no_transient(error: SyncError) -> None:
    raise AssertionError(f"replayed bodies cannot fail: {error}")


Trial = tuple[Callable[[], int], Callable[[], None]]  # the timed run, then the untimed cleanup


def bootstrap_fast(acc_settings: AccelerationSettings, bodies: list[bytes]) -> Trial:
    """Open the engine (untimed); the timed run loads every Scan body into a fresh table."""
    acc = open_accelerator(acc_settings)
    scan = ReplayScan(bodies)

    def run() -> int:
        load_pages(acc, scan)
        return acc.row_count("orders")

    return run, acc.close


def changes_fast(
    acc_settings: AccelerationSettings, scan: list[bytes], bodies: list[bytes]
) -> Trial:
    """Load a table with the first Scan page (untimed); the timed run tails a stream whose
    pages are the GetRecords bodies as ``DatasetSync`` does: the product's reader in rounds
    (read ahead while a round is applied), one transaction with its checkpoint per round."""
    acc = open_accelerator(acc_settings)
    spec = load_pages(acc, ReplayScan(scan[:1]))
    types = TypeOptions(support=acc.type_support)
    clients = DynamoDBClients(None, ReplayStreams(bodies))
    reader = StreamReader(clients, STREAM_ARN, threading.Event(), _no_transient)

    def run() -> int:
        nonlocal spec
        reader.start_at_latest()
        records = 0
        with closing(reader.rounds()) as rounds:
            for poll in rounds:
                if not poll.records:
                    return records
                rows, spec, _ = stream_rows(spec, poll.pages, types)
                acc.apply("orders", spec, ChangeBatch(rows, poll.checkpoint(None), poll.records))
                records += poll.records
        return records

    def cleanup() -> None:
        reader.close()
        acc.close()

    return run, cleanup


def parse_only(parse: Callable[[bytes], object], bodies: list[bytes]) -> Trial:
    """The timed run parses every body with the product's parser, one thread: what one core
    of the data path's first step can do, whatever comes after it."""

    def run() -> int:
        return sum(parse(body).count for body in bodies)  # type: ignore[attr-defined]

    return run, lambda: None


def engines(cfg: Config, section: Section) -> list[str]:
    names = ["duckdb", "sqlite"]
    if cfg.postgres is None:
        section.add("", "PostgreSQL: skipped (no server; see the note at the top).")
        return names
    why = pg.accelerator_import_error()
    if why:
        section.add("", f"PostgreSQL: skipped: {why}.")
        return names
    return [*names, "postgres"]


def run(cfg: Config) -> Section:
    section = Section("Bootstrap and change apply (replayed DynamoDB bodies)")
    n_items = cfg.size(100_000, 4_000)
    n_records = cfg.size(100_000, 2_000)
    n_naive = cfg.size(1_000, 100)
    scan = scan_bodies(n_items)
    records = get_records_bodies(n_records, keys=n_records // 4)
    naive_scan = scan_bodies(n_naive, page_items=n_naive)
    naive_records = get_records_bodies(n_naive, keys=n_records // 4)
    rows = []
    parsing = []
    for label, parse, bodies in (
        ("Scan", parse_scan, scan),
        ("GetRecords", parse_get_records, records),
    ):
        m = _runs(cfg, partial(parse_only, parse, bodies), None)
        size = sum(map(len, bodies))
        parsing.append(
            [
                label,
                f"{m.records:,}",
                f"{size / m.records:,.0f}",
                f"{m.rate:,.0f}",
                f"{size / m.wall_s / 1e6:,.0f}",
                f"{m.cpu_ms_per_1000:,.1f}",
            ]
        )
        section.headline.append(
            (f"parse only, {label} bodies", f"{m.rate:,.0f} records/s on one thread")
        )
    for engine in engines(cfg, section):
        acc = settings(engine, cfg.postgres)
        server = pg.ServerCpu(cfg.postgres) if engine == "postgres" else None
        try:
            measured = {
                "bootstrap": _runs(cfg, partial(bootstrap_fast, acc, scan), server),
                "change apply": _runs(cfg, partial(changes_fast, acc, scan, records), server),
                "naive bootstrap": _runs(
                    cfg,
                    partial(naive.prepare, engine, cfg.postgres, [], naive_scan, "Scan"),
                    server,
                ),
                "naive change apply": _runs(
                    cfg,
                    partial(
                        naive.prepare, engine, cfg.postgres, scan[:1], naive_records, "GetRecords"
                    ),
                    server,
                ),
            }
        finally:
            if server is not None:
                server.close()
                pg.drop_tables(cfg.postgres, "orders")
        for path in ("bootstrap", "change apply"):
            fast, slow = measured[path], measured[f"naive {path}"]
            rows.append(_row(path, engine, fast, f"{fast.rate / slow.rate:,.1f}×"))
            rows.append(_row(f"naive {path}", engine, slow, "1×"))
            capacity = "" if path == "bootstrap" else f"{fast.shards_per_core:,.1f} shards/core; "
            unit = "items" if path == "bootstrap" else "records"
            section.targets.append(_target(path, engine, unit, fast.rate, fast.rate / slow.rate))
            section.headline.append(
                (
                    f"{path}, {engine}",
                    f"{fast.rate:,.0f} {unit}/s; {_cpu(fast)} CPU ms/1,000; {capacity}"
                    f"{fast.rate / slow.rate:,.1f}× naive",
                )
            )
        print("\n".join(table(HEADER, rows[-4:])), flush=True)
    section.add(
        "",
        f"{n_items:,} items in Scan pages of 2,000; {n_records:,} stream records in GetRecords "
        f"pages of 1,000 (60 % MODIFY, 25 % INSERT, 15 % REMOVE over {n_records // 4:,} keys, "
        "read as the runtime reads a stream: rounds of up to 10 pages, one transaction with "
        "its checkpoint per round, the next round read and parsed while one is applied); "
        "Scan pages through the runtime's parallel Scan (5 segment threads parse, batches of "
        "16,384 items per INSERT); the naive baseline on "
        f"{n_naive:,} items / records. Items have 18 attributes (strings, integers, decimals, "
        "booleans, a map, a list of maps, string and number sets, binary). DuckDB and SQLite "
        "in memory mode, PostgreSQL in its own database on the local server; each engine with "
        "its own type mapping (STRUCT / LIST on DuckDB, arrays on PostgreSQL, JSON on SQLite).",
        "",
        "The first step alone, parsing the raw bodies with pyarrow's JSON reader "
        "(`sync.dynamodb.rawparse`), on one thread:",
        "",
        *table(
            ("bodies", "records", "JSON bytes / record", "records/s", "MB/s", "CPU ms / 1,000"),
            parsing,
        ),
        "",
        *table(HEADER, rows),
        "",
        "- *records/s*: wall clock, one sync thread (DuckDB may use its own threads inside).",
        "- *CPU ms / 1,000*: this process's CPU time (all threads) per 1,000 records; "
        "*server CPU*: the PostgreSQL backends' and background writers' CPU, read from /proc.",
        "- *shards / core* (change apply): records per CPU-second (both CPU columns) ÷ 1,000 — "
        "how many fully loaded stream shards (1,000 writes/s each) one core keeps up with.",
        "- *naive*: botocore's response parser, boto3's TypeDeserializer per attribute and one "
        "upsert (`INSERT OR REPLACE`; PostgreSQL `INSERT … ON CONFLICT DO UPDATE`) or DELETE "
        "statement per record, one transaction per page, on a table preloaded like ours.",
    )
    return section


# The goals, parsing included: records (items) per second, and the ratio to the
# naive baseline every engine must reach.
GOALS = {
    ("change apply", "duckdb"): 200_000,
    ("change apply", "sqlite"): 150_000,
    ("change apply", "postgres"): 50_000,
    ("bootstrap", "duckdb"): 250_000,
    ("bootstrap", "sqlite"): 150_000,
}
GOAL_VS_NAIVE = 15


def _target(path: str, engine: str, unit: str, rate: float, vs_naive: float) -> Target:
    goal = GOALS.get((path, engine))
    wanted = [f"≥ {GOAL_VS_NAIVE}× naive"]
    met = vs_naive >= GOAL_VS_NAIVE
    if goal is not None:
        wanted.insert(0, f"≥ {goal:,} {unit}/s")
        met = met and rate >= goal
    return Target(
        f"{path}, {engine}", "; ".join(wanted), f"{rate:,.0f} {unit}/s; {vs_naive:,.1f}× naive", met
    )


HEADER = (
    "path",
    "engine",
    "records",
    "records/s",
    "CPU ms / 1,000",
    "server CPU ms / 1,000",
    "shards / core",
    "vs naive",
)


def _cpu(m: Measure) -> str:
    if m.extra_cpu_s:
        return f"{m.cpu_ms_per_1000:,.1f} + {m.extra_cpu_ms_per_1000:,.1f} (server)"
    return f"{m.cpu_ms_per_1000:,.1f}"


def _row(path: str, engine: str, m: Measure, ratio: str) -> list[object]:
    server = f"{m.extra_cpu_ms_per_1000:,.1f}" if engine == "postgres" else "—"
    return [
        path,
        engine,
        f"{m.records:,}",
        f"{m.rate:,.0f}",
        f"{m.cpu_ms_per_1000:,.1f}",
        server,
        f"{m.shards_per_core:,.1f}" if "change apply" in path else "—",
        ratio,
    ]


def _runs(cfg: Config, prepare: Callable[[], Trial], server: pg.ServerCpu | None) -> Measure:
    """Median of ``cfg.runs`` runs, each prepared and cleaned up untimed."""
    measures = []
    for _ in range(cfg.runs):
        trial, cleanup = prepare()
        try:
            measures.append(timed(trial, server))
        finally:
            cleanup()
    return median_measure(measures)
