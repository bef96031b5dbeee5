"""Queries/s with 16 clients for ``flightsrv run --workers 1, 2, 4`` on SQLite and PostgreSQL.

Each client is a process of its own with one ADBC connection (as 16 applications would be),
running a mix of prepared point lookups (``SELECT * FROM orders WHERE order_id = ?``), a
group-by over the table and range reads, for a fixed time after a common start. Two mixes:
lookup-heavy, where the clients' own CPU is a large share of each query's, and scan-heavy,
where the runtime's (encoding rows) is. The clients, the runtime's processes and the engine
share the machine's cores. The lookups' p50 is measured under that load.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import machine_line, process_cpu_s, table, write_section
from benchmarks.processes import Emulator, Runtime, dynamodb_dataset

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## Flight SQL from several processes (--workers)"
POSTGRES = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
LOOKUP = "SELECT * FROM orders WHERE order_id = ?"
AGGREGATE = "SELECT status, count(*), sum(amount) FROM orders GROUP BY status"
GOAL = 1.7  # from --workers 1 to 2
WARMUP = 20  # queries per client before the timed window
READ = "SELECT * FROM orders WHERE order_id >= ? ORDER BY order_id LIMIT {rows}"


@dataclass(frozen=True)
class Mix:
    name: str
    lookups: float  # shares of the queries; the rest are range reads
    aggregates: float
    read_rows: int

    def describe(self) -> str:
        reads = 1 - self.lookups - self.aggregates
        return (
            f"{self.name}: {self.lookups:.0%} lookups, {self.aggregates:.0%} group-bys, "
            f"{reads:.0%} reads of {self.read_rows:,} rows"
        )


MIXES = {
    "lookup-heavy": Mix("lookup-heavy", 0.80, 0.15, 500),
    "scan-heavy": Mix("scan-heavy", 0.40, 0.20, 5000),
}


def client(
    uri: str, rows: int, mix: Mix, seconds: float, seed: int, start: Any, results: Any
) -> None:  # pragma: no cover - runs in a process of its own
    import adbc_driver_flightsql.dbapi as flightsql

    rng = random.Random(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cannot disable autocommit": a read-only server
        conn = flightsql.connect(uri)
    lookups: list[float] = []
    done = 0
    try:
        with conn.cursor() as cur:

            def one() -> None:
                nonlocal done
                roll = rng.random()
                key = f"o-{rng.randrange(rows):06d}"
                began = time.perf_counter()
                if roll < mix.lookups:
                    cur.execute(LOOKUP, (key,))
                elif roll < mix.lookups + mix.aggregates:
                    cur.execute(AGGREGATE)
                else:
                    cur.execute(READ.format(rows=mix.read_rows), (key,))
                cur.fetch_arrow_table()
                if roll < mix.lookups:
                    lookups.append(time.perf_counter() - began)
                done += 1

            for _ in range(WARMUP):  # connect, prepare, fill the caches
                one()
            start.wait()  # every client and the benchmark: the timed window begins
            lookups.clear()
            done = 0
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                one()
        results.put((done, lookups))
    finally:
        conn.close()


def serving(runtime: Runtime, workers: int) -> list[int] | None:
    """The workers' pids once all of them serve (None until then)."""
    code, body = runtime.get("/v1/status")
    found = json.loads(body)["runtime"]["workers"] if code == 200 else []
    pids = [w["pid"] for w in found if w["serving"]]
    return pids if len(pids) == workers - 1 else None


def machine_busy_s() -> tuple[float, float]:
    """CPU seconds the machine spent busy and in all, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


def measure(
    engine: str, workers: int, emulator: Emulator, workdir: Path, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Each mix's figures against one runtime started with ``--workers workers``."""
    connection = None
    server = os.environ.get("DYNAMIRROR_TEST_POSTGRES", POSTGRES)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    if engine == "postgres":
        import psycopg

        with psycopg.connect(server, autocommit=True) as con:
            con.execute(f"CREATE SCHEMA {schema}")
        connection = f"{server} options='-c search_path={schema}'"
    runtime = Runtime(
        workdir / f"{engine}-{workers}",
        [
            dynamodb_dataset(
                "orders",
                emulator.url,
                engine=engine,
                accelerator=None if connection is None else {"pg_connection_string": connection},
            )
        ],
        args=("--workers", str(workers)),
    )
    try:
        runtime.wait_ready()
        deadline = time.monotonic() + 60
        while (pids := serving(runtime, workers)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"--workers {workers}: the workers did not serve in 60 s")
            time.sleep(0.1)
        servers = [runtime.pid, *pids]
        return {name: _clients(runtime.uri, MIXES[name], servers, args) for name in args.mixes}
    finally:
        runtime.stop()
        if engine == "postgres":
            import psycopg

            with psycopg.connect(server, autocommit=True) as con:
                con.execute(f"DROP SCHEMA {schema} CASCADE")


def _clients(uri: str, mix: Mix, servers: list[int], args: argparse.Namespace) -> dict[str, float]:
    """Run the clients on ``mix`` and measure the window they share."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(args.clients + 1)
    results = context.Queue()
    procs = [
        context.Process(
            target=client, args=(uri, args.rows, mix, args.seconds, seed, start, results)
        )
        for seed in range(args.clients)
    ]
    for proc in procs:
        proc.start()
    start.wait(timeout=120)  # every client connected, prepared and warmed up
    busy, total = machine_busy_s()
    served = sum(process_cpu_s(pid) for pid in servers)
    time.sleep(args.seconds)
    busy, total = (a - b for a, b in zip(machine_busy_s(), (busy, total), strict=True))
    served = sum(process_cpu_s(pid) for pid in servers) - served
    outcomes = [results.get(timeout=args.seconds + 120) for _ in procs]
    for proc in procs:
        proc.join(30)
    queries = sum(done for done, _ in outcomes)
    lookups = [latency for _, latencies in outcomes for latency in latencies]
    return {
        "per_s": queries / args.seconds,
        "p50_ms": statistics.median(lookups) * 1000,
        "p99_ms": statistics.quantiles(lookups, n=100)[98] * 1000,
        "busy": busy / total,
        "runtime_cores": served / args.seconds,
    }


def cpu_ms(figures: dict[str, float]) -> float:
    """The machine's busy CPU milliseconds per query answered."""
    return figures["busy"] * (os.cpu_count() or 1) / figures["per_s"] * 1000


def ceiling(one: dict[str, float]) -> str:
    """What the machine left free at ``--workers 1`` allows at 2, each query costing the same.

    More processes add no core: when the clients share the machine, the most a second one
    can bring is the idle share, unless each query gets cheaper.
    """
    return (
        f"at --workers 1 the machine was already {one['busy']:.0%} busy: with each query "
        f"costing the {cpu_ms(one):.1f} CPU ms it cost there, --workers 2 could answer at most "
        f"{1 / one['busy']:.2f}× as many."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--engines", nargs="*", default=["sqlite", "postgres"])
    parser.add_argument("--mixes", nargs="*", default=list(MIXES), choices=list(MIXES))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    command = "python -m benchmarks.workers " + " ".join(given)
    rows = []
    ratios: dict[tuple[str, str, int], float] = {}
    runs_by: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        emulator = Emulator(Path(workdir))
        try:
            emulator.create_table("orders")
            rng = random.Random(4)
            emulator.put_items(
                "orders",
                [
                    {
                        "order_id": {"S": f"o-{i:06d}"},
                        "status": {"S": rng.choice(["new", "paid", "shipped"])},
                        "amount": {"N": f"{rng.uniform(1, 500):.2f}"},
                        "customer": {"S": f"c-{rng.randrange(1000):04d}"},
                    }
                    for i in range(args.rows)
                ],
            )
            for engine in args.engines:
                runs = {w: measure(engine, w, emulator, Path(workdir), args) for w in args.workers}
                runs_by[engine] = runs
                for name in args.mixes:
                    base = runs[args.workers[0]][name]["per_s"]
                    for workers, figures in runs.items():
                        m = figures[name]
                        ratios[engine, name, workers] = m["per_s"] / base
                        rows.append(
                            [
                                engine,
                                name,
                                str(workers),
                                f"{m['per_s']:,.0f}",
                                f"{m['per_s'] / base:.2f}×",
                                f"{m['p50_ms']:.1f}",
                                f"{m['p99_ms']:.1f}",
                                f"{m['busy']:.0%}",
                                f"{m['runtime_cores']:.2f}",
                                f"{cpu_ms(m):.1f}",
                            ]
                        )
                        print(" | ".join(rows[-1]), flush=True)
        finally:
            emulator.stop()
    text = "\n".join(
        [
            HEADING,
            "",
            f"`{command.strip()}` — {args.rows:,} rows; {args.clients} client processes, one "
            f"ADBC connection each, {args.seconds:g} s after a common start, on each mix ("
            + "; ".join(MIXES[name].describe() for name in args.mixes)
            + "). Clients, runtime processes and engine share the machine.",
            "",
            f"Machine: {machine_line()}.",
            "",
            *table(
                [
                    "engine",
                    "mix",
                    "--workers",
                    "queries/s",
                    "vs 1",
                    "lookup p50 ms",
                    "lookup p99 ms",
                    "machine busy",
                    "runtime cores",
                    "CPU ms/query",
                ],
                rows,
            ),
            "",
            "*machine busy*: the share of the machine's cores busy during the timed window "
            "(/proc/stat); *runtime cores*: CPU seconds of the runtime's processes (the first "
            "and its workers) per second of the window; the rest of the busy time is the "
            "clients' and the engine's (PostgreSQL's server processes); *CPU ms/query*: the "
            "machine's busy CPU time (runtime, clients and engine) per query answered.",
            "",
            *(
                f"Goal ≥ {GOAL:g}× the queries/s from --workers 1 to 2, {engine}, {name}: "
                f"{ratio:.2f}× ({'met' if ratio >= GOAL else 'not met'}); "
                + ceiling(runs_by[engine][1][name])
                for (engine, name, workers), ratio in ratios.items()
                if workers == 2 and 1 in args.workers
            ),
        ]
    )
    print(text)
    if not args.no_write:
        write_section(RESULTS, HEADING, text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
