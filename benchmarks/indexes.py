"""A lookup by a non-key column, without and with ``acceleration.indexes`` declaring it.

    .venv/bin/python -m benchmarks.indexes                  # 1,000,000 rows; updates RESULTS.md
    .venv/bin/python -m benchmarks.indexes --rows 20000 --no-write

Each engine (DuckDB and SQLite in file mode, PostgreSQL on the test server) gets the same rows
through the accelerator interface, as a load writes them: a staging table swapped in. Then
``--lookups`` random ``SELECT * FROM orders WHERE email = ?`` through the engine's query handle
(p50), once with no index, then again after ``declare_indexes`` made one on ``email`` (the time
that took is shown too). Figures are of one run on a shared machine: compare the ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks.common import machine_line, table, write_section
from sync.accelerators.base import CHECKPOINT_TABLE, Accelerator, open_accelerator
from sync.changes import OP_COLUMN, ChangeBatch, Checkpoint, Op, ShardPosition
from sync.pipeline import STAGING_SUFFIX
from sync.schema import Column, ColumnType, Index, TableSpec
from sync.settings import AccelerationSettings

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Lookups by an indexed column (acceleration.indexes)"
PAGE = 100_000
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def spec_of(name: str) -> TableSpec:
    columns = (
        Column("pk", ColumnType.VARCHAR),
        Column("email", ColumnType.VARCHAR),
        Column("status", ColumnType.VARCHAR),
        Column("amount", ColumnType.DOUBLE),
    )
    return TableSpec(name, columns, ("pk",))


def page(first: int, last: int, spec: TableSpec) -> pa.Table:
    n = range(first, last)
    return pa.table(
        {
            OP_COLUMN: pa.array([int(Op.UPSERT)] * len(n), pa.int8()),
            "pk": [f"o-{i:08d}" for i in n],
            "email": [f"user{i * 7919 % 1_000_003}@example.com" for i in n],
            "status": [("new", "paid", "shipped")[i % 3] for i in n],
            "amount": [i * 0.25 for i in n],
        }
    ).cast(pa.schema([pa.field(OP_COLUMN, pa.int8())] + list(spec.arrow_schema())))


def settings_for(engine: str, workdir: Path) -> AccelerationSettings:
    if engine == "postgres":
        import psycopg

        server = os.environ.get("DYNAMIRROR_TEST_POSTGRES", POSTGRES)
        keywords = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(server).items()}
        return AccelerationSettings("postgres", "file", None, keywords)
    return AccelerationSettings(engine, "file", workdir / f"orders.{engine}")  # type: ignore[arg-type]


def _drop_postgres(name: str) -> None:
    import psycopg

    server = os.environ.get("DYNAMIRROR_TEST_POSTGRES", POSTGRES)
    with psycopg.connect(server, autocommit=True) as con:
        con.execute(f'DROP TABLE IF EXISTS "{name}", "{name}{STAGING_SUFFIX}"')
        con.execute(f"DELETE FROM {CHECKPOINT_TABLE} WHERE dataset = %s", [name])


def lookups(accelerator: Accelerator, spec: TableSpec, rows: int, count: int) -> float:
    handle = accelerator.query_handle()
    placeholder = "$1" if handle.dialect == "postgres" else "?"
    statement = f'SELECT * FROM "{spec.name}" WHERE email = {placeholder}'
    rng = random.Random(3)
    times = []
    for i in range(count + 5):
        email = f"user{rng.randrange(rows) * 7919 % 1_000_003}@example.com"
        began = time.perf_counter()
        found = handle.execute(statement, [email]).read_all()
        if i >= 5:  # the first few warm the engine's caches
            times.append(time.perf_counter() - began)
        assert found.num_rows == 1, (email, found.num_rows)
    return statistics.median(times) * 1000


def measure(engine: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    name = f"ix_{uuid.uuid4().hex[:8]}" if engine == "postgres" else "orders"
    spec = spec_of(name)
    with open_accelerator(settings_for(engine, workdir)) as accelerator:
        staging = replace(spec, name=f"{name}{STAGING_SUFFIX}")
        accelerator.create_table(staging)
        for first in range(0, args.rows, PAGE):
            rows = page(first, min(first + PAGE, args.rows), spec)
            accelerator.apply(name, staging, ChangeBatch(rows, None, rows.num_rows))
        position = Checkpoint(ARN, (ShardPosition(ARN, "shardId-1", None, "1"),))
        accelerator.swap_in(name, staging, name, position)
        try:
            without = lookups(accelerator, spec, args.rows, args.lookups)
            began = time.perf_counter()
            accelerator.declare_indexes(name, (Index(("email",)),))
            built = time.perf_counter() - began
            with_index = lookups(accelerator, spec, args.rows, args.lookups)
        finally:
            if engine == "postgres":
                _drop_postgres(name)
    return {"without": without, "with": with_index, "built": built}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--engines", nargs="*", default=["duckdb", "sqlite", "postgres"])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.indexes " + " ".join(argv if argv is not None else sys.argv[1:])
    body = []
    with tempfile.TemporaryDirectory() as workdir:
        for engine in args.engines:
            m = measure(engine, Path(workdir), args)
            body.append(
                [
                    engine,
                    f"{m['without']:,.2f}",
                    f"{m['with']:,.2f}",
                    f"{m['without'] / m['with']:,.1f}×",
                    f"{m['built']:,.2f}",
                ]
            )
            print(" | ".join(body[-1]), flush=True)
    text = "\n".join(
        [
            HEADING,
            "",
            f"`{command.strip()}` — {args.rows:,} rows, {args.lookups} lookups "
            "`WHERE email = ?` through each engine's query handle, p50.",
            "",
            f"Machine: {machine_line()}.",
            "",
            *table(["engine", "no index, ms", "indexed, ms", "faster", "index built in, s"], body),
        ]
    )
    print(text)
    if not args.no_write:
        write_section(RESULTS, HEADING, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
