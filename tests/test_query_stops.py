"""A query that would run for hours stops *in its engine* when the client cancels it, when the
client process dies, when it outlives ``runtime.query.timeout``, and when the runtime is told to
stop: the CPU of the process running it (read from /proc: the runtime for DuckDB and SQLite, the
server backend for PostgreSQL) falls back to idle and the server keeps answering.

Each engine gets a statement that computes without producing a row: DuckDB a count over a huge
cross join, SQLite and PostgreSQL a count over an endless recursive CTE.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from tests.dynamo import Emulator, create_table, random_item
from tests.harness import mutate, wait_for
from tests.runtime_process import RuntimeProcess, dataset_entry

pytestmark = pytest.mark.slow

ENGINES = ["duckdb", "sqlite", "postgres"]
ENDLESS = {
    "duckdb": "SELECT count(*) FROM orders, range(1000000000000) r",
    "sqlite": "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
    "SELECT count(*) FROM r, orders",
    "postgres": "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
    "SELECT count(*) FROM r, orders",
}
# The report's statement: no table, so the runtime's scratch DuckDB runs it.
SCRATCH_ENDLESS = "SELECT count(*) FROM range(100000000) a, range(100000000) b"
TIMEOUT_S = 3
ITEMS = 30
IDLE_CORES = 0.1
# A query holding (most of) a core; lower than 1 so that a loaded machine still counts.
BUSY_CORES = 0.3


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), from /proc; 0 once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def cores_used(pid: int, window: float = 0.5) -> float:
    start = cpu_seconds(pid)
    time.sleep(window)
    return (cpu_seconds(pid) - start) / window


def falls_idle(pid: int, within: float) -> float:
    """Seconds until ``pid`` uses under :data:`IDLE_CORES` over half a second (fails past
    ``within``)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if cores_used(pid) < IDLE_CORES:
            return time.monotonic() - started
    raise AssertionError(f"the runtime still burns {cores_used(pid):.2f} cores after {within} s")


def query(uri: str, sql: str) -> list[tuple[Any, ...]]:
    with flightsql.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


class Served:
    def __init__(
        self, runtime: RuntimeProcess, engine: str, pg: dict[str, str] | None = None
    ) -> None:
        self.runtime = runtime
        self.engine = engine
        self.pg = pg
        self.pid = 0  # the process running the endless query, once it runs

    def _running_pid(self) -> int | None:
        """The process that computes a query: the runtime, or PostgreSQL's backend running it."""
        assert self.runtime.proc is not None
        if self.pg is None:
            return self.runtime.proc.pid
        import psycopg

        with psycopg.connect(**self.pg, autocommit=True) as con:
            row = con.execute(
                "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
                "AND application_name = 'dynamirror-query' AND query LIKE 'WITH RECURSIVE%'"
            ).fetchone()
        return None if row is None else int(row[0])

    def start_endless(self, sql: str) -> tuple[flightsql.Cursor, threading.Thread, list[Any]]:
        """Run ``sql`` from a thread; returns the cursor, the thread and where its outcome goes."""
        conn = flightsql.connect(self.runtime.flight_uri)
        cur = conn.cursor()
        outcome: list[Any] = []

        def run() -> None:
            try:
                cur.execute(sql)
                outcome.append(cur.fetchall())
            except flightsql.Error as e:
                outcome.append(e)
            finally:
                cur.close()
                conn.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return cur, thread, outcome

    def start_endless_client(self, sql: str) -> subprocess.Popen[bytes]:
        """Run ``sql`` from a client process of its own (to be killed, or left to fail)."""
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, adbc_driver_flightsql.dbapi as f\n"
                "c = f.connect(sys.argv[1]).cursor()\nc.execute(sys.argv[2])\nc.fetchall()\n",
                self.runtime.flight_uri,
                sql,
            ],
            stderr=subprocess.DEVNULL,
        )

    def wait_busy(self) -> float:
        """Wait until the query holds a core; returns the cores used then."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid = self._running_pid()
            if pid is None:
                time.sleep(0.1)
                continue
            used = cores_used(pid)
            if used > BUSY_CORES:
                self.pid = pid
                return used
        raise AssertionError("the endless query never got going")


def _runtime(
    emulator: Emulator,
    ddb: Any,
    table: str,
    engine: str,
    workdir: Path,
    pg: Any,
    timeout: str = f"{TIMEOUT_S}s",
) -> RuntimeProcess:
    create_table(ddb, table)
    rng = random.Random(engine)
    for i in range(ITEMS):
        ddb.put_item(TableName=table, Item=random_item(rng, f"k{i}", 0))
    return RuntimeProcess(
        workdir,
        [dataset_entry("orders", table, emulator.url, engine, pg_connection=pg)],
        runtime={"query": {"timeout": timeout}},
    )


@pytest.fixture(params=ENGINES)
def served(
    request: pytest.FixtureRequest,
    emulator: Emulator,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    runtimes: list[RuntimeProcess],
) -> Iterator[Served]:
    engine = request.param
    pg = request.getfixturevalue("pg_connection") if engine == "postgres" else None
    runtime = _runtime(emulator, ddb, table_name, engine, tmp_path, pg)
    runtimes.append(runtime.start())
    runtime.wait_ready()
    yield Served(runtime, engine, pg)
    runtime.kill()  # before the PostgreSQL schema is dropped


def test_a_cancelled_query_stops_in_the_engine(served: Served) -> None:
    cur, thread, outcome = served.start_endless(ENDLESS[served.engine])
    before = served.wait_busy()
    cur.adbc_cancel()
    thread.join(5)
    assert not thread.is_alive() and isinstance(outcome[0], flightsql.Error)
    idle_after = falls_idle(served.pid, within=2)
    print(f"{served.engine}: {before:.2f} cores before cancel, idle {idle_after:.1f} s after")
    assert query(served.runtime.flight_uri, "SELECT 1") == [(1,)]
    assert query(served.runtime.flight_uri, "SELECT count(*) FROM orders") == [(ITEMS,)]


def test_a_query_whose_client_died_stops_in_the_engine(served: Served) -> None:
    client = served.start_endless_client(ENDLESS[served.engine])
    try:
        served.wait_busy()
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(5)
    falls_idle(served.pid, within=2)
    assert query(served.runtime.flight_uri, "SELECT 1") == [(1,)]


def test_a_query_past_the_timeout_stops_with_a_clear_error(served: Served) -> None:
    started = time.monotonic()
    _, thread, outcome = served.start_endless(ENDLESS[served.engine])
    served.wait_busy()
    thread.join(TIMEOUT_S + 5)
    took = time.monotonic() - started
    assert not thread.is_alive() and isinstance(outcome[0], flightsql.Error)
    assert TIMEOUT_S <= took < TIMEOUT_S + 2
    message = str(outcome[0])
    assert "TIMEOUT" in message and "runtime.query.timeout" in message
    assert "Traceback" not in message
    falls_idle(served.pid, within=2)
    assert query(served.runtime.flight_uri, "SELECT 1") == [(1,)]


def test_the_reported_scratch_query_stops_on_cancel(
    emulator: Emulator, ddb: Any, table_name: str, tmp_path: Path, runtimes: list[RuntimeProcess]
) -> None:
    runtime = _runtime(emulator, ddb, table_name, "duckdb", tmp_path, None)
    runtimes.append(runtime.start())
    runtime.wait_ready()
    served = Served(runtime, "duckdb")
    cur, thread, _ = served.start_endless(SCRATCH_ENDLESS)
    served.wait_busy()
    code, body = runtime.get("/v1/status")
    assert code == 200 and SCRATCH_ENDLESS[:40] in body  # an operator sees what holds a core
    cur.adbc_cancel()
    thread.join(5)
    falls_idle(served.pid, within=2)
    assert '"queries": []' in runtime.get("/v1/status")[1]


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_with_a_query_running_exits_at_once_and_resumes(
    emulator: Emulator,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    runtimes: list[RuntimeProcess],
    engine: str,
    request: pytest.FixtureRequest,
) -> None:
    pg = request.getfixturevalue("pg_connection") if engine == "postgres" else None
    runtime = _runtime(emulator, ddb, table_name, engine, tmp_path, pg, timeout="0s")
    runtimes.append(runtime.start())
    runtime.wait_ready()
    served = Served(runtime, engine, pg)
    client = served.start_endless_client(ENDLESS[engine])
    request.addfinalizer(client.kill)
    served.wait_busy()
    rng = random.Random(7)
    for version in range(1, 41):  # changes in flight while it stops
        mutate(ddb, table_name, rng, ITEMS + 10, version)
    started = time.monotonic()
    assert runtime.terminate() == 0
    assert time.monotonic() - started < 5
    assert client.wait(5) != 0  # its query failed: the server went away
    falls_idle(served.pid, within=2)  # PostgreSQL's backend too
    restarted = RuntimeProcess(
        tmp_path, [dataset_entry("orders", table_name, emulator.url, engine, pg_connection=pg)]
    )
    runtimes.append(restarted.start())
    restarted.wait_ready()
    expected = sorted(i["pk"]["S"] for i in ddb.scan(TableName=table_name)["Items"])
    wait_for(
        lambda: (
            [r[0] for r in query(restarted.flight_uri, "SELECT pk FROM orders ORDER BY pk")]
            == expected
        ),
        what="the restarted runtime to hold every item",
    )
    assert "resuming from its checkpoint" in restarted.log.read_text()
