"""Bootstrap and change apply: raw Scan / GetRecords bodies replayed into the data path.

The data path is the product's own (``rawparse`` → ``convert``/``records`` → an accelerator's
``apply``); bodies come from :mod:`benchmarks.bodies` because the local emulator is far slower
than the code it would be measuring. Each engine is compared with :mod:`benchmarks.naive` in
the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

from benchmarks import naive, pg
from benchmarks.bodies import get_records_bodies, scan_bodies
from benchmarks.common import Config, Measure, Section, median_measure, table, timed
from sync.accelerators.base import Accelerator, open_accelerator
from sync.changes import ChangeBatch, Checkpoint, ShardPosition
from sync.dynamodb.convert import infer_columns
from sync.dynamodb.rawparse import parse_get_records, parse_scan
from sync.dynamodb.records import evolve_spec, image_rows, stream_rows, upserts
from sync.schema import Column, ColumnType, TableSpec
from sync.settings import AccelerationSettings

KEY_SPEC = TableSpec("orders", (Column("order_id", ColumnType.VARCHAR),), ("order_id",))
CHECKPOINT = Checkpoint("arn:stream", (ShardPosition("arn:stream", "shard-1", None, "1"),))
SHARD_RECORDS_PER_S = 1000  # a fully loaded shard: its partition's 1,000 writes/s


def settings(engine: str, postgres: str | None) -> AccelerationSettings:
    if engine == "postgres":
        assert postgres is not None
        return AccelerationSettings("postgres", "memory", None, pg.connection_keywords(postgres))
    return AccelerationSettings(engine, "memory")  # type: ignore[arg-type]


def load_pages(acc: Accelerator, bodies: list[bytes], table: str = "orders") -> TableSpec:
    """The bootstrap loop of ``DatasetSync``: infer from a sample, evolve, apply each page.
    Returns the table's final spec."""
    spec = replace(KEY_SPEC, name=table)
    for n, body in enumerate(bodies):
        page = parse_scan(body).items
        assert page is not None
        if n == 0:
            spec = spec.with_columns(infer_columns(page.slice(0, 10)))
            acc.create_table(spec)
        spec = evolve_spec(spec, page)
        rows = image_rows(spec, page, page, upserts(len(page)))
        acc.apply(table, spec, ChangeBatch(rows, None, len(page)))
    return spec


Trial = tuple[Callable[[], int], Callable[[], None]]  # the timed run, then the untimed cleanup


def bootstrap_fast(acc_settings: AccelerationSettings, bodies: list[bytes]) -> Trial:
    """Open the engine (untimed); the timed run loads every Scan body into a fresh table."""
    acc = open_accelerator(acc_settings)

    def run() -> int:
        load_pages(acc, bodies)
        return acc.row_count("orders")

    return run, acc.close


def changes_fast(
    acc_settings: AccelerationSettings, scan: list[bytes], bodies: list[bytes]
) -> Trial:
    """Load a table with the first Scan page (untimed); the timed run applies every GetRecords
    body, one batch (one transaction, with its checkpoint) per body."""
    acc = open_accelerator(acc_settings)
    spec = load_pages(acc, scan[:1])

    def run() -> int:
        nonlocal spec
        records = 0
        for body in bodies:
            page = parse_get_records(body)
            rows, spec, _ = stream_rows(spec, [page])
            acc.apply("orders", spec, ChangeBatch(rows, CHECKPOINT, page.count))
            records += page.count
        return records

    return run, acc.close


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
        "one transaction with its checkpoint per page); the naive baseline on "
        f"{n_naive:,} items / records. Items have 18 attributes (strings, integers, decimals, "
        "booleans, a map, a list of maps, string and number sets, binary). DuckDB and SQLite "
        "in memory mode, PostgreSQL in its own database on the local server.",
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
