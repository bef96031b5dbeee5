"""``flightsrv run --workers N``: several processes answer Flight SQL on one port, each serving
what the first one syncs; a DuckDB dataset is served from one process, with the reason."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from tests.dynamo import Emulator, create_table, fill_table, random_item
from tests.harness import wait_for
from tests.runtime_process import RuntimeProcess, dataset_entry

pytestmark = pytest.mark.slow  # runtime processes and their workers

CLIENTS = 16


def connections_by_process(pids: list[int], port: int) -> dict[int, int]:
    """How many established connections on ``port`` each process holds (from /proc)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":
                established.add(inode)
    counts = {}
    for pid in pids:
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in established:
                held += 1
        counts[pid] = held
    return counts


def worker_pids(runtime: RuntimeProcess, serving: bool = False) -> list[int]:
    """The workers ``/v1/status`` lists (only those serving: their datasets Ready)."""
    code, body = runtime.get("/v1/status")
    assert code == 200, body
    workers = json.loads(body)["runtime"]["workers"]
    return [w["pid"] for w in workers if w["serving"] or not serving]


@pytest.fixture
def table(emulator: Emulator, request: pytest.FixtureRequest) -> str:
    name = f"workers_{uuid.uuid4().hex[:12]}"
    ddb = emulator.client()
    create_table(ddb, name)
    fill_table(ddb, name, 200)
    return name


@pytest.mark.parametrize("engine", ["sqlite", "postgres", "cayenne"])
def test_four_workers_answer_sixteen_clients_from_several_processes(
    tmp_path: Path, emulator: Emulator, pg_connection: dict[str, str], table: str, engine: str
) -> None:
    pg = pg_connection if engine == "postgres" else None
    dataset = dataset_entry("orders", table, emulator.url, engine, pg_connection=pg)
    runtime = RuntimeProcess(tmp_path, [dataset], args=["--workers", "4"])
    runtime.start()
    try:
        runtime.wait_ready()
        wait_for(lambda: len(worker_pids(runtime, serving=True)) == 3, 60, "three workers")
        assert runtime.proc is not None
        pids = [runtime.proc.pid, *worker_pids(runtime)]
        conns = [flightsql.connect(runtime.flight_uri) for _ in range(CLIENTS)]
        errors: list[BaseException] = []
        answered = [0] * CLIENTS

        def client(index: int) -> None:
            deadline = time.monotonic() + 3
            try:
                with conns[index].cursor() as cur:
                    while time.monotonic() < deadline:
                        cur.execute("SELECT count(*) FROM orders WHERE qty >= ?", (-1000,))
                        assert cur.fetchone() == (200,)
                        answered[index] += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        try:
            # Connect every client before counting: each connection is one process's.
            threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
            for thread in threads:
                thread.start()
            time.sleep(1)
            held = connections_by_process(pids, runtime.flight_port)
            for thread in threads:
                thread.join()
            assert not errors, errors[:3]
            assert all(answered)
            assert sum(held.values()) == CLIENTS, held
            assert sum(1 for n in held.values() if n) >= 2, held  # several processes answer
            # A change is seen through every connection: the workers follow the first process.
            ddb = emulator.client()
            ddb.put_item(TableName=table, Item=random_item(random.Random(1), "new", 1))

            def everyone_sees_it() -> bool:
                for conn in conns:
                    with conn.cursor() as cur:
                        cur.execute("SELECT count(*) FROM orders WHERE pk = 'new'")
                        if cur.fetchone() != (1,):
                            return False
                return True

            wait_for(everyone_sees_it, 30, "the change on every worker")
        finally:
            for conn in conns:
                conn.close()
        workers = worker_pids(runtime)
        assert runtime.terminate() == 0
        for pid in workers:  # the workers go with the first process
            wait_for(lambda p=pid: not _alive(p), 10, f"worker {pid} to exit")
    finally:
        runtime.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[1].split()[0] != "Z"


def test_a_worker_that_dies_is_started_again(
    tmp_path: Path, emulator: Emulator, table: str, runtimes: list[RuntimeProcess]
) -> None:
    dataset = dataset_entry("orders", table, emulator.url, "sqlite")
    runtime = RuntimeProcess(tmp_path, [dataset], args=["--workers", "2"])
    runtimes.append(runtime.start())
    runtime.wait_ready()
    wait_for(lambda: len(worker_pids(runtime)) == 1, 30, "one worker")
    [first] = worker_pids(runtime)
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: worker_pids(runtime) not in ([], [first]), 30, "a new worker")
    assert "exited with status -9; starting it again" in runtime.log.read_text()


def test_duckdb_datasets_are_served_from_one_process_with_the_reason(
    tmp_path: Path, emulator: Emulator, table: str, runtimes: list[RuntimeProcess]
) -> None:
    dataset = dataset_entry("orders", table, emulator.url, "duckdb")
    runtime = RuntimeProcess(tmp_path, [dataset], args=["--workers", "3"])
    runtimes.append(runtime.start())
    runtime.wait_ready()
    assert worker_pids(runtime) == []
    log = runtime.log.read_text()
    assert "--workers 3: dataset orders is on DuckDB, which allows one process" in log
    with flightsql.connect(runtime.flight_uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchone() == (200,)


def test_a_port_in_use_is_still_refused_with_workers(
    tmp_path: Path, emulator: Emulator, table: str, runtimes: list[RuntimeProcess]
) -> None:
    """Workers share their port with each other only: a second runtime on it is refused."""
    dataset = dataset_entry("orders", table, emulator.url, "sqlite")
    first = RuntimeProcess(tmp_path, [dataset], args=["--workers", "2"])
    runtimes.append(first.start())
    (tmp_path / "second").mkdir()
    second = RuntimeProcess(tmp_path / "second", [dataset], args=["--workers", "2"])
    second.flight_port = first.flight_port
    runtimes.append(second)
    with pytest.raises(AssertionError, match="cannot listen on"):
        second.start()
