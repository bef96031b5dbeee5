"""One-off measurement: an S3 export's files read by ``export_pages`` (from the moto server's
S3 over HTTP) against the same items replayed as Scan pages through ``scan_table``, pages
alone and loaded into DuckDB by the bootstrap's ``scan_batches`` and ``apply_load``.

    .venv/bin/python -m benchmarks.export_replay --items 200000 --files 8 [--server-process]

``--server-process`` runs moto in a process of its own, so serving S3 does not share this
process's GIL (as AWS's S3 does not).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import boto3
import pyarrow as pa

from benchmarks.bodies import item, scan_bodies
from benchmarks.replay import ReplayScan
from sync.accelerators.base import open_accelerator
from sync.bootstrap import apply_load
from sync.dynamodb.client import DynamoDBClients
from sync.dynamodb.exportfiles import ExportFile, export_pages
from sync.dynamodb.load import scan_batches
from sync.dynamodb.scan import scan_table
from sync.dynamodb.typeoptions import TypeOptions
from sync.schema import Column, ColumnType, TableSpec
from sync.settings import AccelerationSettings
from tests.dynamo import CREDENTIALS, REGION, start_emulator

SPEC = TableSpec("orders", (Column("order_id", ColumnType.VARCHAR),), ("order_id",))


def write_export(s3: object, bucket: str, items: int, files: int) -> list[ExportFile]:
    """``items`` items as AWS writes an export: gzip DynamoDB JSON lines, ``files`` files."""
    rng = random.Random(1)  # the same items as scan_bodies(items)
    per_file = -(-items // files)
    out = []
    for n in range(files):
        keys = range(n * per_file, min((n + 1) * per_file, items))
        text = "".join(json.dumps({"Item": item(rng, k, 0)}) + "\n" for k in keys)
        key = f"bench/AWSDynamoDB/01700000000000-bench/data/{n:04d}.json.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(text.encode(), 6))  # type: ignore[attr-defined]
        out.append(ExportFile(key, len(keys)))
    return out


def timed(label: str, items: int, run: Callable[[], int]) -> None:
    started = time.perf_counter()
    got = run()
    elapsed = time.perf_counter() - started
    assert got == items, (label, got, items)
    print(f"{label:<44} {items:>8} items {elapsed:7.2f} s {items / elapsed:>10,.0f} items/s")


def count(pages: Iterable[pa.StructArray]) -> int:
    return sum(len(p) for p in pages)


def load(pages: Iterable[pa.StructArray]) -> int:
    with open_accelerator(AccelerationSettings("duckdb", "memory")) as acc:  # type: ignore[arg-type]
        acc.create_table(SPEC)
        batches = scan_batches(pages, SPEC, TypeOptions(support=acc.type_support), 10)
        _, loaded = apply_load(acc, "orders", SPEC, batches)
        return acc.row_count("orders") or loaded


def moto_process() -> tuple[subprocess.Popen[bytes], str]:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    return server, url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server-process", action="store_true")
    args = parser.parse_args()
    if args.server_process:
        process, url = moto_process()
        emulator = None
    else:
        emulator = start_emulator()
        url = emulator.url
    try:
        s3 = boto3.client("s3", endpoint_url=url, region_name=REGION, **CREDENTIALS)
        s3.create_bucket(Bucket="bench")
        files = write_export(s3, "bench", args.items, args.files)
        stop = threading.Event()
        bodies = scan_bodies(args.items)
        clients = DynamoDBClients(ReplayScan(bodies), None)

        def exported() -> Iterable[pa.StructArray]:
            return export_pages(s3, "bench", files, stop, workers=args.workers)

        def scanned() -> Iterable[pa.StructArray]:
            return scan_table(clients, "orders", 2, stop, lambda e: None)

        n = args.items
        timed(f"export_pages ({args.workers} workers, moto S3)", n, lambda: count(exported()))
        timed("scan_table (2 segments, replayed bodies)", n, lambda: count(scanned()))
        timed("export_pages -> apply_load -> DuckDB", n, lambda: load(exported()))
        timed("scan_table -> apply_load -> DuckDB", n, lambda: load(scanned()))
    finally:
        if emulator is not None:
            emulator.server.stop()
        else:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
