"""The runtime under load, as a user runs it (a subprocess, the real ADBC client): many clients
while the sync applies changes, and a result far larger than the memory it may take."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.compute as pc
import pytest

from tests.dynamo import Emulator, create_table, random_item
from tests.harness import wait_for
from tests.runtime_process import RuntimeProcess, dataset_entry
from tests.test_end_to_end import mirror_versions, source_versions

pytestmark = pytest.mark.slow  # many clients against a syncing runtime

CLIENTS = 16
WRITES = 3000  # written at up to WRITES_PER_SECOND: about 10 s while the clients query
WRITES_PER_SECOND = 300
CHANGES_PER_REQUEST = 10
KEYS = 500

BIG_ROWS = 5_000_000
# The result is ~400 MB as Arrow; streamed, the server holds a few batches of it at a time.
BIG_QUERY = (
    "SELECT range AS i, range * 2 AS j, 'row-' || range::VARCHAR AS s, "
    f"repeat('x', 40) AS pad FROM range({BIG_ROWS})"
)
MAX_SERVER_GROWTH_BYTES = 96 * 1024 * 1024


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def test_big_result_streams_with_bounded_server_memory(
    tmp_path: Path, runtimes: list[RuntimeProcess]
) -> None:
    runtime = RuntimeProcess(tmp_path, [])  # table-less queries run on the scratch engine
    runtimes.append(runtime.start())
    assert runtime.proc is not None
    pid = runtime.proc.pid
    with flightsql.connect(runtime.flight_uri) as conn, conn.cursor() as cur:
        cur.execute(BIG_QUERY.replace(str(BIG_ROWS), "200000"))  # warm every code path up
        assert cur.fetch_arrow_table().num_rows == 200_000
        before = _memory_kib(pid)
        started = time.perf_counter()
        cur.execute(BIG_QUERY)
        rows = total = nbytes = 0
        for batch in cur.fetch_record_batch():
            rows += batch.num_rows
            nbytes += batch.nbytes
            total += pc.sum(batch.column("i")).as_py()
        elapsed = time.perf_counter() - started
    after = _memory_kib(pid)
    assert rows == BIG_ROWS
    assert total == BIG_ROWS * (BIG_ROWS - 1) // 2
    growth = (after["VmHWM"] - before["VmHWM"]) * 1024
    print(
        f"\n{rows:,} rows, {nbytes / 1e6:,.0f} MB in {elapsed:.2f} s: "
        f"{rows / elapsed:,.0f} rows/s, {nbytes / 1e6 / elapsed:,.0f} MB/s; server peak RSS "
        f"{before['VmHWM'] / 1024:,.0f} -> {after['VmHWM'] / 1024:,.0f} MiB "
        f"(+{growth / 2**20:,.0f} MiB)"
    )
    assert nbytes > 2.5 * MAX_SERVER_GROWTH_BYTES  # the result could not have fit
    assert growth < MAX_SERVER_GROWTH_BYTES


class _Clients:
    """Threads, each with its own ADBC connection, querying in a loop until stopped."""

    QUERIES: list[tuple[str, Any]] = [
        ("SELECT count(*) AS n FROM orders", None),
        ("SELECT pk, version, status FROM orders WHERE pk = ?", "key"),
        ("SELECT status, count(*) AS n, sum(qty) AS qty FROM orders GROUP BY status", None),
        ("SELECT * FROM orders ORDER BY pk LIMIT 200", None),
        ("SELECT max(version) AS v FROM orders WHERE price > ?", 100.0),
    ]

    def __init__(self, uri: str, count: int) -> None:
        self.uri = uri
        self.queries = [0] * count
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(count)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, index: int) -> None:
        rng = random.Random(index)
        try:
            with flightsql.connect(self.uri) as conn, conn.cursor() as cur:
                while not self._stop.is_set():
                    sql, param = rng.choice(self.QUERIES)
                    if param == "key":
                        param = f"k{rng.randrange(KEYS)}"
                    cur.execute(sql, None if param is None else (param,))
                    cur.fetch_arrow_table()
                    self.queries[index] += 1
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)


def _write(ddb: Any, table: str, total: int, done: list[int]) -> None:
    """``total`` changes (puts and deletes of distinct keys) at up to WRITES_PER_SECOND, in paced
    BatchWriteItem requests: single-item calls cost the emulator too much CPU for this rate on a
    small machine. The emulator shares the machine's cores with the runtime and the clients, so
    the rate is a ceiling and the count is what the test relies on.
    """
    rng = random.Random(11)
    interval = CHANGES_PER_REQUEST / WRITES_PER_SECOND
    next_at = time.monotonic()
    version = 1
    while done[0] < total:
        requests = []
        for key in rng.sample(range(KEYS), CHANGES_PER_REQUEST):
            if rng.random() < 0.8:
                item = random_item(rng, f"k{key}", version)
                requests.append({"PutRequest": {"Item": item}})
            else:
                requests.append({"DeleteRequest": {"Key": {"pk": {"S": f"k{key}"}}}})
        ddb.batch_write_item(RequestItems={table: requests})
        done[0] += len(requests)
        version += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


@pytest.mark.parametrize("engine", ["duckdb", "sqlite"])
def test_many_clients_query_while_the_sync_applies_changes(
    emulator: Emulator,
    ddb: Any,
    table_name: str,
    tmp_path: Path,
    runtimes: list[RuntimeProcess],
    engine: str,
) -> None:
    create_table(ddb, table_name)
    rng = random.Random(7)
    for i in range(KEYS):
        ddb.put_item(TableName=table_name, Item=random_item(rng, f"k{i}", 0))
    runtime = RuntimeProcess(tmp_path, [dataset_entry("orders", table_name, emulator.url, engine)])
    runtimes.append(runtime.start())
    runtime.wait_ready()

    clients = _Clients(runtime.flight_uri, CLIENTS)
    clients.start()
    writes = [0]
    writer = threading.Thread(
        target=_write, args=(emulator.client("dynamodb"), table_name, WRITES, writes)
    )
    started = time.monotonic()
    writer.start()
    writer.join()
    elapsed = time.monotonic() - started
    clients.stop()

    print(
        f"\n{engine}: {CLIENTS} clients, {sum(clients.queries):,} queries "
        f"({sum(clients.queries) / elapsed:,.0f}/s), {len(clients.errors)} errors, while "
        f"{sum(writes):,} changes were written ({sum(writes) / elapsed:,.0f}/s)"
    )
    assert clients.errors == []
    assert min(clients.queries) >= 5, clients.queries  # every client kept being served
    wait_for(
        lambda: mirror_versions(runtime.flight_uri, "orders") == source_versions(ddb, table_name),
        timeout=60,
        what="the mirror to catch up with every change",
    )
