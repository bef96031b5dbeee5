"""Failover: three runtimes over one PostgreSQL database, the one syncing ``orders`` killed
with SIGKILL again and again while a writer changes the table.

A failover is timed from the kill to the first commit by the runtime that took the lease over,
as that runtime's ``/v1/datasets`` reports it (``last_checkpoint_at``); each killed runtime is
replaced at once, as an orchestrator would. The kills come at random instants (seeded). At the
end the mirror is checked against the table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import machine_line, table, write_section
from benchmarks.processes import Emulator, Runtime, dynamodb_dataset
from flightsrv.durations import parse_duration

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Failover between runtimes over one PostgreSQL database"
POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def status(runtime: Runtime) -> dict[str, Any] | None:
    try:
        code, body = runtime.get("/v1/datasets")
    except OSError:
        return None
    return dict(json.loads(body)[0]) if code == 200 else None


def first_commit_after(runtimes: list[Runtime], after: float, timeout: float) -> float:
    """When a runtime syncing the dataset first committed after ``after`` (epoch seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for runtime in runtimes:
            found = status(runtime)
            if found and found["role"] == "syncing" and (found["last_checkpoint_at"] or 0) > after:
                return float(found["last_checkpoint_at"])
        time.sleep(0.02)
    raise RuntimeError(f"no runtime committed within {timeout:.0f} s of the kill")


def writer(emulator: Emulator, stop: threading.Event, keys: int) -> None:
    client, rng, version = emulator.client(), random.Random(1), 0
    while not stop.is_set():
        version += 1
        item = {"order_id": {"S": f"o-{rng.randrange(keys):06d}"}, "v": {"N": str(version)}}
        client.put_item(TableName="orders", Item=item)
        stop.wait(0.02)


def measure(workdir: Path, args: argparse.Namespace) -> list[float]:
    import psycopg

    server = os.environ.get("DYNAMIRROR_TEST_POSTGRES", POSTGRES)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {schema}")
    connection = f"{server} options='-c search_path={schema}'"
    emulator = Emulator(workdir)
    runtimes: list[Runtime] = []
    stop = threading.Event()
    started = 0

    def start() -> Runtime:
        nonlocal started
        started += 1
        runtime = Runtime(
            workdir / f"runtime{started}",
            [
                dynamodb_dataset(
                    "orders",
                    emulator.url,
                    engine="postgres",
                    accelerator={"pg_connection_string": connection},
                    scan_interval="100ms",
                )
            ],
            runtime={"lease_timeout": args.lease_timeout},
        )
        runtimes.append(runtime)
        return runtime

    try:
        emulator.create_table("orders")
        emulator.put_items(
            "orders", [{"order_id": {"S": f"o-{i:06d}"}, "v": {"N": "0"}} for i in range(2000)]
        )
        for _ in range(3):
            start().wait_ready()
        rng = random.Random(args.seed)
        thread = threading.Thread(target=writer, args=(emulator, stop, 2000), daemon=True)
        thread.start()
        failovers = []
        for kill in range(args.kills):
            holder = next(r for r in runtimes if (status(r) or {}).get("role") == "syncing")
            time.sleep(rng.uniform(0.5, 2.5))
            killed_at = time.time()
            holder.proc.kill()
            holder.proc.wait(10)
            runtimes.remove(holder)
            replacement = start()
            timeout = parse_duration(args.lease_timeout).total_seconds() + 60
            failovers.append(first_commit_after(runtimes, killed_at, timeout) - killed_at)
            replacement.wait_ready()
            print(f"kill {kill + 1}: first commit by the new holder {failovers[-1]:.2f} s after")
        stop.set()
        thread.join()
        source = emulator.client().scan(TableName="orders", Select="COUNT")["Count"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all((status(r) or {}).get("rows") == source for r in runtimes):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the mirror did not converge to {source} rows")
        return failovers
    finally:
        stop.set()
        for runtime in runtimes:
            runtime.stop()
        emulator.stop()
        with psycopg.connect(server, autocommit=True) as con:
            con.execute(f"DROP SCHEMA {schema} CASCADE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--lease-timeout", default="10s", help="runtime.lease_timeout")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m benchmarks.failover " + " ".join(given)
    with tempfile.TemporaryDirectory() as workdir:
        failovers = measure(Path(workdir), args)
    ordered = sorted(failovers)
    rows = [
        [
            str(len(failovers)),
            args.lease_timeout,
            f"{statistics.median(ordered):.2f}",
            f"{ordered[-1]:.2f}",
            f"{ordered[0]:.2f}",
        ]
    ]
    text = "\n".join(
        [
            HEADING,
            "",
            f"`{command.strip()}` — three runtimes, one PostgreSQL database, a writer changing "
            "the table throughout; the runtime syncing the dataset killed with SIGKILL at "
            "random instants and replaced at once; time from the kill to the first commit by "
            "the runtime that took the lease over. The mirror equals the table at the end.",
            "",
            f"Machine: {machine_line()}.",
            "",
            *table(["kills", "lease_timeout", "failover p50, s", "max, s", "min, s"], rows),
        ]
    )
    print(text)
    print(f"failover p50 {statistics.median(ordered):.2f} s, max {ordered[-1]:.2f} s")
    if not args.no_write:
        write_section(RESULTS, HEADING, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
