"""Cayenne against DuckDB file mode: at the accelerator interface, then served over Flight SQL.

    .venv/bin/python -m benchmarks.cayenne                      # 1,000,000 rows; updates RESULTS.md
    .venv/bin/python -m benchmarks.cayenne --rows 20000 --no-write   # a quick look

Both engines get the same Arrow batches: a bootstrap of ``--rows`` items in 64k-row pages into
a staging table swapped in; then ``--batches`` change batches of ``--changes`` records each
(random keys, one in ten a delete); then a grouped aggregate over the table (the first one,
the first after one more small batch, then the median of 3) and ``--lookups`` point lookups by
key through the query handle (p50); then the bytes on disk.
Cayenne is measured as the changes leave it (one file per batch), during one compaction (point
lookups on another thread) and after it. Then each engine's file is served by a runtime
(``flightsrv run``, resuming from the file's checkpoint on an idle stream) and the same point
lookups and grouped aggregate run through the ADBC Flight SQL driver, as a client sees them.
Figures are of one run on a shared machine: compare the ratios.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks.common import machine_line, table, write_section
from benchmarks.fakedynamo import SEQUENCE_NUMBER, SHARD_ID, stream_arn
from benchmarks.processes import Runtime, dynamodb_dataset
from benchmarks.tables import FakeDynamoProcess
from sync.accelerators.base import open_accelerator
from sync.accelerators.cayenne.spec import options
from sync.changes import OP_COLUMN, ChangeBatch, Checkpoint, Op, ShardPosition
from sync.pipeline import STAGING_SUFFIX
from sync.schema import Column, ColumnType, TableSpec
from sync.settings import AccelerationSettings

SPEC_FILE_PARAM = {"duckdb": "duckdb_file", "cayenne": "cayenne_file_path"}
RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Cayenne vs DuckDB"
PAGE = 64 * 1024
STATUSES = ["new", "paid", "shipped", "returned", "cancelled"]
SPEC = TableSpec(
    "orders",
    (
        Column("pk", ColumnType.VARCHAR),
        Column("qty", ColumnType.BIGINT),
        Column("price", ColumnType.DOUBLE),
        Column("status", ColumnType.VARCHAR),
        Column("version", ColumnType.BIGINT),
    ),
    ("pk",),
)
ARN = stream_arn("orders")  # the idle stream of the fake endpoint the served runtime resumes on
GROUPED = "SELECT status, count(*), sum(price), avg(qty) FROM orders GROUP BY status"
LOOKUP = "SELECT * FROM orders WHERE pk = ?"
WARMUP = 30


def rows(keys: list[int], ops: list[int], version: int, rng: random.Random) -> pa.Table:
    n = len(keys)
    return pa.table(
        {
            OP_COLUMN: pa.array(ops, pa.int8()),
            "pk": pa.array([f"k{k:09}" for k in keys]),
            "qty": pa.array([rng.randrange(100) for _ in range(n)], pa.int64()),
            "price": pa.array([rng.random() * 100 for _ in range(n)], pa.float64()),
            "status": pa.array([STATUSES[k % 5] for k in keys]),
            "version": pa.array([version] * n, pa.int64()),
        }
    )


def at(version: int) -> Checkpoint:
    """A checkpoint on the fake stream's one shard (``version`` later than the bootstrap's),
    so the served runtime resumes with nothing to catch up on."""
    return Checkpoint(
        ARN, (ShardPosition(ARN, SHARD_ID, None, str(int(SEQUENCE_NUMBER) + version)),)
    )


def disk_bytes(path: Path) -> int:
    if path.is_file():
        wal = path.with_name(path.name + ".wal")
        return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def file_of(engine: str, workdir: Path) -> Path:
    return workdir / f"orders.{engine}"


def measure(engine: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    path = file_of(engine, workdir)
    quiet = {"cayenne_compaction_background_interval_ms": "0"}
    settings = AccelerationSettings(
        engine, "file", path, options=options(quiet) if engine == "cayenne" else None
    )
    rng = random.Random(7)
    out: dict[str, Any] = {}
    with open_accelerator(settings) as accelerator:
        staging = replace(SPEC, name=f"orders{STAGING_SUFFIX}")
        pages = []
        for first in range(0, args.rows, PAGE):
            keys = list(range(first, min(first + PAGE, args.rows)))
            pages.append(rows(keys, [int(Op.UPSERT)] * len(keys), 0, rng))
        start = time.perf_counter()
        accelerator.create_table(staging)
        for page in pages:
            accelerator.apply("orders", staging, ChangeBatch(page, None, page.num_rows))
        accelerator.swap_in("orders", staging, "orders", at(0))
        out["bootstrap items/s"] = args.rows / (time.perf_counter() - start)

        batches = []
        for version in range(1, args.batches + 1):
            keys = [rng.randrange(args.rows) for _ in range(args.changes)]
            ops = [int(Op.DELETE) if rng.random() < 0.1 else int(Op.UPSERT) for _ in keys]
            batches.append(ChangeBatch(rows(keys, ops, version, rng), at(version), len(keys)))
        start = time.perf_counter()
        for batch in batches:
            accelerator.apply("orders", SPEC, batch)
        out["change apply records/s"] = args.batches * args.changes / (time.perf_counter() - start)

        def queries(suffix: str) -> None:
            handle = accelerator.query_handle()
            # The first aggregate over this state (Cayenne resolves the table from its files),
            # then the first after one more commit (Cayenne applies just that commit's file).
            start = time.perf_counter()
            handle.execute(GROUPED).read_all()
            out[f"group-by s, first{suffix}"] = time.perf_counter() - start
            extra = random.Random(len(suffix))
            keys = [extra.randrange(args.rows) for _ in range(args.changes // 10)]
            version = args.batches + 1 + len(suffix)
            change = rows(keys, [int(Op.UPSERT)] * len(keys), version, extra)
            accelerator.apply("orders", SPEC, ChangeBatch(change, at(version), len(keys)))
            start = time.perf_counter()
            handle.execute(GROUPED).read_all()
            out[f"group-by s, first after a commit{suffix}"] = time.perf_counter() - start
            times = []
            for _ in range(3):
                start = time.perf_counter()
                handle.execute(GROUPED).read_all()
                times.append(time.perf_counter() - start)
            out[f"group-by s{suffix}"] = statistics.median(times)
            times = []
            for _ in range(args.lookups):
                key = f"k{rng.randrange(args.rows):09}"
                start = time.perf_counter()
                handle.execute(LOOKUP, [key]).read_all()
                times.append(time.perf_counter() - start)
            out[f"point lookup p50 ms{suffix}"] = statistics.median(times) * 1000
            out[f"disk MB{suffix}"] = disk_bytes(path) / 1e6

        queries("")
        if engine == "cayenne":
            # Lookups keep running on another thread while the merge runs: their latency then.
            during: list[float] = []
            done = threading.Event()

            def lookups() -> None:
                handle = accelerator.query_handle()
                while not done.is_set():
                    key = f"k{rng.randrange(args.rows):09}"
                    began = time.perf_counter()
                    handle.execute(LOOKUP, [key]).read_all()
                    during.append(time.perf_counter() - began)

            looker = threading.Thread(target=lookups)
            looker.start()
            start = time.perf_counter()
            try:
                accelerator.compact("orders")  # type: ignore[attr-defined]
                out["compaction s"] = time.perf_counter() - start
            finally:
                done.set()
                looker.join(60)
            out["point lookup p50 ms during compaction"] = statistics.median(during) * 1000
            queries(" (compacted)")
    if engine == "cayenne":  # the merged-away files are gone after their grace period
        with open_accelerator(settings) as reopened:
            live = reopened.files_of("orders")  # type: ignore[attr-defined]
        out["disk MB (compacted)"] = (
            sum(f.bytes for f in live) + disk_bytes(path / "cayenne.db")
        ) / 1e6
    return out


def served(engine: str, workdir: Path, endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    """The engine's file served by a runtime: lookups and the aggregate through ADBC."""
    import adbc_driver_flightsql.dbapi as flightsql

    dataset = dynamodb_dataset("orders", endpoint, engine=engine)
    dataset["acceleration"]["params"] = {SPEC_FILE_PARAM[engine]: str(file_of(engine, workdir))}
    rng = random.Random(11)
    out: dict[str, Any] = {}
    with Runtime(workdir / f"runtime-{engine}", [dataset]) as runtime:
        runtime.wait_ready()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Cannot disable autocommit": a read-only server
            conn = flightsql.connect(runtime.uri)
        try:
            with conn.cursor() as cur:
                times = []
                for i in range(WARMUP + args.lookups):
                    key = f"k{rng.randrange(args.rows):09}"
                    start = time.perf_counter()
                    cur.execute(LOOKUP, (key,))
                    cur.fetch_arrow_table()
                    if i >= WARMUP:
                        times.append(time.perf_counter() - start)
                out["point lookup p50 ms (ADBC)"] = statistics.median(times) * 1000
                times = []
                for i in range(4):  # the first one warms up, as the lookups' first 30 do
                    start = time.perf_counter()
                    cur.execute(GROUPED)
                    cur.fetch_arrow_table()
                    if i:
                        times.append(time.perf_counter() - start)
                out["group-by s (ADBC)"] = statistics.median(times)
        finally:
            conn.close()
    return out


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    duck, cay = results["duckdb"], results["cayenne"]
    names = [
        k
        for k in cay
        if k in duck or k.endswith(("(compacted)", "compaction")) or "compaction s" == k
    ]
    lines = [
        HEADING,
        "",
        f"`{command}` — {args.rows:,} rows, {args.batches} change batches of "
        f"{args.changes:,} records, {args.lookups} lookups through the query handle; then each "
        "file served by a runtime, the same lookups and aggregate through ADBC (Cayenne's "
        "file compacted).",
        "",
        f"Machine: {machine_line()}.",
        "",
    ]
    body = []
    for name in names:
        if name in duck:
            d = duck[name]
        else:
            d = duck.get(name.replace(" (compacted)", "").replace(" during compaction", ""))
        c = cay[name]
        ratio = f"{c / d:.2f}×" if d else ""
        body.append([name, f"{d:,.2f}" if d is not None else "", f"{c:,.2f}", ratio])
    lines += table(["figure", "duckdb (file)", "cayenne", "cayenne / duckdb"], body)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.cayenne " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for engine in ("duckdb", "cayenne"):
            results[engine] = measure(engine, Path(workdir), args)
        with FakeDynamoProcess(Path(workdir), {"orders": 0}, {"orders": "pk:S"}) as fake:
            for engine in ("duckdb", "cayenne"):
                results[engine].update(served(engine, Path(workdir), fake.url, args))
    text = report(results, args, command.strip())
    print(text)
    if not args.no_write:
        write_section(RESULTS, HEADING, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
