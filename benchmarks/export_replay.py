"""An S3 export's files against Scan pages, both replayed in process, loaded into DuckDB and
SQLite by the product's own bootstrap path; then the peak memory of an export load.

    .venv/bin/python -m benchmarks.export_replay                 # updates RESULTS.md
    .venv/bin/python -m benchmarks.export_replay --items 20000 --rss-items 20000 80000 --no-write

The same items (:func:`benchmarks.bodies.item`) are written as AWS writes an export (gzip
DynamoDB JSON lines, ``--files`` objects) and as Scan response bodies. The export is read by
``export_pages`` from an in-process S3 stand-in (:class:`benchmarks.replay.ReplayS3`: bytes in
memory, no HTTP), its ``--workers`` readers decompressing and parsing in parallel; the Scan by
``scan_table`` from :class:`benchmarks.replay.ReplayScan` with 2 segments. Both go through
``scan_batches`` (inference, conversion) and ``apply_load`` into a file-mode engine: the
figures are the loader's, with the network and DynamoDB left out on both sides (against AWS a
Scan is bound by read capacity, an export by S3's bandwidth). Each load is timed with this
process's CPU time, so the cores it keeps busy show.

Peak RSS: each ``--rss-items`` size is loaded from its export into a file-mode DuckDB in a
process of its own, which reports its ``ru_maxrss``; the export's compressed bytes are held by
the stand-in in that process too, and are subtracted (they stand for S3, not the loader).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from functools import partial
from pathlib import Path

import pyarrow as pa

from benchmarks.bodies import item, scan_bodies
from benchmarks.common import machine_line, table, timed, write_section
from benchmarks.replay import ReplayS3, ReplayScan
from sync.accelerators.base import open_accelerator
from sync.bootstrap import apply_load
from sync.dynamodb.client import DynamoDBClients
from sync.dynamodb.exportfiles import ExportFile, export_pages
from sync.dynamodb.load import scan_batches
from sync.dynamodb.scan import scan_table
from sync.dynamodb.typeoptions import TypeOptions
from sync.schema import Column, ColumnType, TableSpec
from sync.settings import AccelerationSettings

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Initial load: export files vs Scan pages (replayed)"
SPEC = TableSpec("orders", (Column("order_id", ColumnType.VARCHAR),), ("order_id",))
BUCKET = "bench"


def export_objects(items: int, files: int) -> tuple[dict[str, bytes], list[ExportFile]]:
    """``items`` items as AWS writes an export: gzip DynamoDB JSON lines in ``files`` objects
    (the same items as ``scan_bodies(items)``)."""
    rng = random.Random(1)
    per_file = -(-items // files)
    objects, listed = {}, []
    for n in range(files):
        keys = range(n * per_file, min((n + 1) * per_file, items))
        text = "".join(json.dumps({"Item": item(rng, k, 0)}) + "\n" for k in keys)
        key = f"bench/AWSDynamoDB/01700000000000-bench/data/{n:04d}.json.gz"
        objects[key] = gzip.compress(text.encode(), 6)
        listed.append(ExportFile(key, len(keys)))
    return objects, listed


def load(engine: str, path: Path, pages: Iterable[pa.StructArray]) -> int:
    """Load ``pages`` into a new file-mode ``engine`` table; the rows it then holds."""
    with open_accelerator(AccelerationSettings(engine, "file", path)) as acc:  # type: ignore[arg-type]
        acc.create_table(SPEC)
        batches = scan_batches(pages, SPEC, TypeOptions(support=acc.type_support), 10)
        apply_load(acc, "orders", SPEC, batches)
        return acc.row_count("orders")


def throughput(args: argparse.Namespace, workdir: Path) -> list[list[str]]:
    objects, files = export_objects(args.items, args.files)
    bodies = scan_bodies(args.items)
    stop = threading.Event()
    rows = []
    for engine in ("duckdb", "sqlite"):
        for run in range(args.runs):
            target = workdir / f"{engine}-{run}"
            export = timed(
                partial(
                    load,
                    engine,
                    target.with_suffix(".export"),
                    export_pages(ReplayS3(objects), BUCKET, files, stop, workers=args.workers),
                )
            )
            clients = DynamoDBClients(ReplayScan(bodies), None)
            scan = timed(
                partial(
                    load,
                    engine,
                    target.with_suffix(".scan"),
                    scan_table(clients, "orders", 2, stop, lambda e: None),
                )
            )
            assert export.records == scan.records == args.items, (export, scan)
            rows.append(
                [
                    engine,
                    f"{export.rate:,.0f}",
                    f"{export.cpu_s / export.wall_s:.2f}",
                    f"{scan.rate:,.0f}",
                    f"{scan.cpu_s / scan.wall_s:.2f}",
                    f"{export.rate / scan.rate:.2f}×",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    return rows


def peak_rss(items: int, files: int, workers: int) -> tuple[float, float]:
    """The peak RSS (MB) of a process loading ``items`` items from an export into a
    file-mode DuckDB, and the MB of compressed export it held meanwhile."""
    script = (
        "import sys; from benchmarks.export_replay import rss_child; "
        f"rss_child({items}, {files}, {workers}, sys.argv[1])"
    )
    with tempfile.TemporaryDirectory() as workdir:
        out = subprocess.run(
            [sys.executable, "-c", script, workdir], capture_output=True, text=True, check=True
        )
    rss_mb, held_mb = (float(v) for v in out.stdout.split()[-2:])
    return rss_mb, held_mb


def rss_child(items: int, files: int, workers: int, workdir: str) -> None:
    """Run in a process of its own by :func:`peak_rss`: print peak RSS and export MB."""
    objects, listed = export_objects(items, files)
    held = sum(len(b) for b in objects.values())
    pages = export_pages(ReplayS3(objects), BUCKET, listed, threading.Event(), workers=workers)
    assert load("duckdb", Path(workdir) / "rss.duckdb", pages) == items
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, held / 1e6)


def report(
    args: argparse.Namespace, rows: list[list[str]], rss: dict[int, tuple[float, float]]
) -> str:
    command = "python -m benchmarks.export_replay " + " ".join(sys.argv[1:])
    lines = [
        HEADING,
        "",
        f"`{command.strip()}` — {args.items:,} items; the export in {args.files} gzip files "
        f"read by {args.workers} workers, the Scan in 2 segments; {args.runs} runs per engine, "
        "each the export then the Scan. *cores*: this process's CPU time over the wall time.",
        "",
        f"Machine: {machine_line()}.",
        "",
        *table(
            ["engine", "export items/s", "cores", "Scan items/s", "cores", "export / Scan"], rows
        ),
        "",
        "Peak RSS of an export load into file-mode DuckDB (a process per size; the compressed "
        "export the in-process S3 stand-in holds is subtracted):",
        "",
    ]
    base = min(rss)
    rss_rows = []
    for items, (mb, held) in sorted(rss.items()):
        loader = mb - held
        ratio = loader / (rss[base][0] - rss[base][1])
        rss_rows.append(
            [f"{items:,}", f"{mb:,.0f}", f"{held:,.0f}", f"{loader:,.0f}", f"{ratio:.2f}×"]
        )
    lines += table(
        ["items", "peak RSS MB", "export held MB", "loader MB", f"vs {base:,}"], rss_rows
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=250_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rss-items", type=int, nargs="*", default=[250_000, 1_000_000])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        rows = throughput(args, Path(workdir))
    rss = {n: peak_rss(n, args.files, args.workers) for n in args.rss_items}
    text = report(args, rows, rss)
    print(text)
    if not args.no_write:
        write_section(RESULTS, HEADING, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
