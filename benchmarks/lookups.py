"""Small queries: prepared point lookups through ADBC, one client and eight.

The runtime serves an ``orders`` mirror from a file-mode DuckDB (:mod:`benchmarks.tables`:
rows made by the product's own bootstrap path from :func:`benchmarks.bodies.item` items, then
copied under new keys ``o-%08d``). Each
client prepares ``SELECT * FROM orders WHERE order_id = ?`` once (ADBC prepares on the first
``execute`` of a statement text) and then binds a random existing key per lookup, fetching the
result as Arrow. A lookup's latency is measured by the client around ``execute`` +
``fetch_arrow_table()``: three Flight calls (DoPut of the parameters, GetFlightInfo, DoGet).

Clients are separate processes (each its own ADBC connection and Python interpreter), as
independent applications would be; eight threads in one process are measured too, since the
driver releases the GIL while it waits. Every client, the runtime and DuckDB share the
machine's cores.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.flight as flight

from benchmarks import spy, tables
from benchmarks.common import Config, Section, Target, median, percentile, process_cpu_s, table
from benchmarks.flight import RawServerProcess
from benchmarks.lookup_client import QUERY, WARMUP_LOOKUPS, lookups, process_client
from benchmarks.processes import Runtime


@dataclass(frozen=True)
class Round:
    lookups: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float | None = None  # the server process's CPU per lookup
    client_cpu_ms: float | None = None  # the clients' CPU per lookup

    @property
    def per_s(self) -> float:
        return self.lookups / self.seconds


def _round(
    latencies: list[float],
    seconds: float,
    cpu_s: float | None = None,
    client_cpu_s: float | None = None,
) -> Round:
    count = max(len(latencies), 1)
    return Round(
        len(latencies),
        seconds,
        1000 * percentile(latencies, 50),
        1000 * percentile(latencies, 99),
        None if cpu_s is None else 1000 * cpu_s / count,
        None if client_cpu_s is None else 1000 * client_cpu_s / count,
    )


def _median_round(rounds: list[Round]) -> Round:
    cpu = [r.server_cpu_ms for r in rounds if r.server_cpu_ms is not None]
    client = [r.client_cpu_ms for r in rounds if r.client_cpu_ms is not None]
    return Round(
        int(median([r.lookups for r in rounds])),
        rounds[0].seconds,
        median([r.p50_ms for r in rounds]),
        median([r.p99_ms for r in rounds]),
        median(cpu) if cpu else None,
        median(client) if client else None,
    )


def _timed_loop(lookup: Callable[[str], object], rows: int, seconds: float) -> list[float]:
    rng = random.Random(5)
    for _ in range(WARMUP_LOOKUPS):
        lookup(f"o-{rng.randrange(rows):08d}")
    latencies = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        key = f"o-{rng.randrange(rows):08d}"
        began = time.perf_counter()
        lookup(key)
        latencies.append(time.perf_counter() - began)
    return latencies


def duckdb_lookups(database: Path, rows: int, rounds: int, seconds: float) -> list[Round]:
    """The floor: the same statement on DuckDB in this process (no server, no network)."""
    cur = duckdb.connect(str(database), read_only=True).cursor()
    sql = QUERY.replace("?", "$1")

    def lookup(key: str) -> object:
        return cur.sql(sql, params=[key]).to_arrow_reader(64 * 1024).read_all()

    result = []
    for _ in range(rounds):
        cpu = time.process_time()
        latencies = _timed_loop(lookup, rows, seconds)
        result.append(_round(latencies, seconds, None, time.process_time() - cpu))
    return result


def raw_lookups(uri: str, pid: int, rows: int, rounds: int, seconds: float) -> list[Round]:
    """One DoGet per lookup on the raw pyarrow.flight server (key inlined in the SQL)."""
    client = flight.FlightClient(uri)

    def lookup(key: str) -> object:
        ticket = json.dumps({"sql": QUERY.replace("?", f"'{key}'")}).encode()
        return client.do_get(flight.Ticket(ticket)).read_all()

    result = []
    for _ in range(rounds):
        cpu, own = process_cpu_s(pid), time.process_time()
        latencies = _timed_loop(lookup, rows, seconds)
        result.append(
            _round(latencies, seconds, process_cpu_s(pid) - cpu, time.process_time() - own)
        )
    return result


def run_clients(
    uri: str, pid: int, rows: int, clients: int, rounds: int, seconds: float, mode: str
) -> list[Round]:
    """``clients`` clients (processes or threads) doing ``rounds`` rounds; one Round each,
    with the CPU the server process ``pid`` used from the round's start until every client
    reported (warm-ups and connections excluded)."""
    per_round: list[list[float]] = [[] for _ in range(rounds)]
    cpu: list[float] = []
    if mode == "process":
        ctx = multiprocessing.get_context("spawn")
        barrier: Any = ctx.Barrier(clients + 1)  # the clients, and this process
        reports: Any = ctx.Queue()
        workers: list[Any] = [
            ctx.Process(
                target=process_client, args=(uri, rows, rounds, seconds, i, barrier, reports)
            )
            for i in range(clients)
        ]
    else:
        barrier = threading.Barrier(clients + 1)
        reports = queue.Queue()
        workers = [
            threading.Thread(
                target=_thread_client, args=(uri, rows, rounds, seconds, 100 + i, barrier, reports)
            )
            for i in range(clients)
        ]
    for w in workers:
        w.start()
    client: list[float] = []

    def client_cpu() -> float:
        if mode == "process":
            return sum(process_cpu_s(w.pid) for w in workers)
        return time.process_time()  # the client threads are this process's

    deadline = time.monotonic() + 120 + seconds * rounds
    try:
        for _ in range(rounds):
            barrier.wait(timeout=max(1.0, deadline - time.monotonic()))
            began, client_began = process_cpu_s(pid), client_cpu()
            for _ in range(clients):
                got, latencies = _next_report(reports, workers, deadline)
                per_round[got].extend(latencies)
            cpu.append(process_cpu_s(pid) - began)
            client.append(client_cpu() - client_began)
    except BaseException:
        barrier.abort()
        for w in workers:
            if isinstance(w, multiprocessing.process.BaseProcess):
                w.kill()
        raise
    for w in workers:
        w.join(30)
    return [_round(lat, seconds, c, k) for lat, c, k in zip(per_round, cpu, client, strict=True)]


def _thread_client(
    uri: str, rows: int, rounds: int, seconds: float, seed: int, barrier: Any, reports: Any
) -> None:
    try:
        lookups(
            uri, rows, rounds, seconds, seed, barrier.wait, lambda r, lat: reports.put((r, lat))
        )
    except BaseException as e:  # noqa: BLE001 - handed to the caller through the queue
        reports.put((-1, e))


def _next_report(reports: Any, workers: list[Any], deadline: float) -> tuple[int, list[float]]:
    while True:
        try:
            r, latencies = reports.get(timeout=0.5)
        except queue.Empty:
            dead = [getattr(w, "exitcode", None) for w in workers]
            if any(code not in (None, 0) for code in dead) or time.monotonic() > deadline:
                raise RuntimeError(f"lookup clients failed (exit codes {dead})") from None
            continue
        if r < 0:
            raise RuntimeError("a lookup client failed") from latencies  # type: ignore[misc]
        return r, latencies


def run(cfg: Config) -> Section:
    section = Section("Small queries: prepared point lookups through ADBC")
    rows = cfg.size(1_000_000, 20_000)
    seconds = cfg.seconds(3, 0.4)
    workdir = cfg.workdir / "lookups"
    mirror = cfg.workdir / "mirrors" / f"orders-{rows}.duckdb"
    write_s = tables.write_orders_mirror(mirror, rows)
    copy = workdir / "raw-copy.duckdb"
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mirror, copy)
    results: dict[str, Round] = {}
    profile: list[str] = []
    with (
        tables.FakeDynamoProcess(workdir, {"orders": rows}) as fake,
        Runtime(workdir / "runtime", [tables.mirror_dataset("orders", fake.url, mirror)]) as rt,
    ):
        rt.wait_ready()
        for label, clients, mode in CONFIGS:
            rounds = run_clients(rt.uri, rt.pid, rows, clients, cfg.runs, seconds, mode)
            results[label] = _median_round(rounds)
            _print(label, results[label])
        if seconds >= PROFILE_MIN_S:
            profile = _profile_one_client(rt, rows, seconds, workdir)
    raw = RawServerProcess(workdir, copy)
    try:
        results[RAW] = _median_round(raw_lookups(raw.uri, raw.proc.pid, rows, cfg.runs, seconds))
        _print(RAW, results[RAW])
        bare = run_clients(raw.uri, raw.proc.pid, rows, 1, cfg.runs, seconds, "process")
        results[BARE] = _median_round(bare)
        _print(BARE, results[BARE])
    finally:
        raw.stop()
    results[IN_PROCESS] = _median_round(duckdb_lookups(copy, rows, cfg.runs, seconds))
    _print(IN_PROCESS, results[IN_PROCESS])
    copy.unlink()
    one, eight, threads = results["1 client"], results["8 clients"], results["8 threads"]
    scaling = eight.per_s / one.per_s
    section.add(
        "",
        f"`{QUERY}` on a {rows:,}-row mirror (18 columns; written in {write_s:,.1f} s, not "
        f"timed). {cfg.runs} rounds of {seconds:g} s per configuration, all clients "
        "starting each round together after 30 warm-up lookups each; the median over rounds "
        "of each figure is shown. *server CPU / lookup*: CPU time of the server process "
        "(all its threads, from /proc) during the rounds, divided by the lookups; *client "
        "CPU*: the same for the client processes (or this process, for threads). For "
        "reference, the same lookup from one client on the raw pyarrow.flight server "
        "(`benchmarks/rawflight.py`): by pyarrow.flight, one DoGet with the key inlined in the "
        "SQL; by the same ADBC client as above, through the raw server's bare Flight SQL; and "
        "on DuckDB in the benchmark's own process, all on a copy of the mirror's file.",
        "",
        *table(
            (
                "clients",
                "lookups/s",
                "p50 ms",
                "p99 ms",
                "server CPU / lookup",
                "client CPU / lookup",
                "vs 1 client",
            ),
            [
                (
                    label,
                    f"{m.per_s:,.0f}",
                    f"{m.p50_ms:,.2f}",
                    f"{m.p99_ms:,.2f}",
                    "—" if m.server_cpu_ms is None else f"{m.server_cpu_ms:,.2f} ms",
                    "—" if m.client_cpu_ms is None else f"{m.client_cpu_ms:,.2f} ms",
                    f"{m.per_s / one.per_s:,.2f}×",
                )
                for label, m in results.items()
            ],
        ),
    )
    raw, bare, duck = results[RAW], results[BARE], results[IN_PROCESS]
    section.add("", *_bounds(one, eight, threads, raw, bare, duck))
    section.targets += [
        Target(
            "point lookup p50, 1 client",
            "≤ 2 ms",
            f"{one.p50_ms:,.2f} ms (the same ADBC client on the bare Flight SQL server: "
            f"{bare.p50_ms:,.2f} ms)",
            one.p50_ms <= 2,
        ),
        Target(
            "point lookups, 8 clients vs 1",
            "≥ 1.4× the throughput",
            f"{scaling:,.2f}× (processes); {threads.per_s / one.per_s:,.2f}× (threads)",
            scaling >= 1.4,
        ),
    ]
    section.headline += [
        ("point lookup, 1 client", f"p50 {one.p50_ms:,.2f} ms, p99 {one.p99_ms:,.2f} ms"),
        ("point lookups, 8 clients", f"{eight.per_s:,.0f}/s ({scaling:,.2f}× one client)"),
    ]
    if profile:
        section.add(
            "",
            "### Where the runtime spends a lookup",
            "",
            "py-spy sampling the runtime process while one client runs lookups (an extra "
            "round, not counted above):",
            "",
            *profile,
        )
    return section


def _bounds(
    one: Round, eight: Round, threads: Round, raw: Round, bare: Round, duck: Round
) -> list[str]:
    """What the figures say bounds a lookup, computed from them."""

    def busy(m: Round) -> float:  # cores kept busy by the server and the clients together
        return ((m.server_cpu_ms or 0) + (m.client_cpu_ms or 0)) * m.per_s / 1000

    return [
        f"- One client: a lookup takes {one.p50_ms:,.2f} ms (p50), of which the runtime "
        f"spends {one.server_cpu_ms or 0:,.2f} ms of CPU and the client "
        f"{one.client_cpu_ms or 0:,.2f} ms. The same lookup costs the raw server "
        f"{raw.server_cpu_ms or 0:,.2f} ms of CPU ({raw.p50_ms:,.2f} ms p50, one DoGet) and "
        f"DuckDB alone {duck.p50_ms:,.2f} ms.",
        f"- The floor for this client: the same ADBC lookup against the raw server answering "
        f"the driver's Flight SQL calls in the most direct way (no SQL check, no catalog) takes "
        f"{bare.p50_ms:,.2f} ms p50, with {bare.client_cpu_ms or 0:,.2f} ms of client CPU and "
        f"{bare.server_cpu_ms or 0:,.2f} ms of server CPU per lookup. The driver's three calls "
        "(DoPut of the parameters, GetFlightInfo, DoGet) and its own CPU set that floor; the "
        f"runtime adds {one.p50_ms - bare.p50_ms:,.2f} ms to it.",
        f"- Eight clients: server and clients together keep {busy(eight):,.2f} cores busy "
        f"(processes; {busy(threads):,.2f} with threads) of the machine's "
        f"{os.cpu_count()}, and the runtime's CPU per lookup rises to "
        f"{eight.server_cpu_ms or 0:,.2f} ms: throughput is bounded by CPU, and the "
        "runtime's CPU per lookup is the larger part of it.",
    ]


CONFIGS = (("1 client", 1, "process"), ("8 clients", 8, "process"), ("8 threads", 8, "thread"))
RAW = "raw pyarrow.flight server, 1 client"
BARE = "ADBC → raw server (bare Flight SQL), 1 client"
PROFILE_MIN_S = 2.0  # shorter runs (smoke scale) skip the runtime profile
FLIGHT_CALLS = {
    "DoPut (bind parameters)": "FlightSqlServer.do_put",
    "GetFlightInfo": "FlightSqlServer.get_flight_info",
    "DoGet": "FlightSqlServer.do_get",
    "DoAction (prepare)": "FlightSqlServer.do_action",
    "DuckDB statements (any call)": "DuckDBQueryHandle.start",
    "SQL check and planning (sqlglot)": "QueryRunner.plan",
}
IN_PROCESS = "in-process DuckDB (no server)"


def _print(label: str, m: Round) -> None:
    print(f"{label}: {m.per_s:,.0f}/s p50 {m.p50_ms:.2f} ms p99 {m.p99_ms:.2f} ms", flush=True)


def _profile_one_client(rt: Runtime, rows: int, seconds: float, workdir: Any) -> list[str]:
    out = workdir / "lookups.collapsed"
    recorder = spy.record(rt.pid, seconds + 1, out)
    if recorder is None:
        return ["(py-spy is not installed: no profile)"]
    time.sleep(0.5)
    run_clients(rt.uri, rt.pid, rows, 1, 1, seconds, "thread")
    _, err = recorder.communicate(timeout=60)
    if recorder.returncode != 0 or not out.exists():
        return [f"(py-spy failed: {err.decode(errors='replace').strip()[-300:]})"]
    return spy.summarise(out, 15, FLIGHT_CALLS)
