"""Several runtimes over one PostgreSQL database: one syncs each dataset (its lease holder),
the others follow and serve; kill -9, SIGSTOP or a cut connection moves the lease, and the
mirror still equals the source exactly. The seed of the random kill instants is printed."""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as flightsql
import psycopg
import pytest

from tests.dynamo import Emulator, create_table, fill_table
from tests.harness import wait_for
from tests.replicas import Replicas
from tests.runtime_process import RuntimeProcess, dataset_entry
from tests.tcpproxy import TcpProxy
from tests.test_crash_consistency import Writer, assert_served_equals_source, converged

pytestmark = pytest.mark.slow  # runtime processes killed and frozen in real time

LEASE_TIMEOUT_S = 3.0
KILLS = 10
FAST_PARAMS = {"error_retry_interval": "500ms", "shard_discovery_interval": "500ms"}


@pytest.fixture
def table(emulator: Emulator, request: pytest.FixtureRequest) -> str:
    name = f"replicas_{request.node.name[5:30]}"
    ddb = emulator.client()
    create_table(ddb, name)
    fill_table(ddb, name, 300)
    return name


@pytest.fixture
def replicas(
    tmp_path: Path, emulator: Emulator, pg_connection: dict[str, str], table: str
) -> Iterator[Replicas]:
    dataset = dataset_entry(
        "orders", table, emulator.url, "postgres", pg_connection=pg_connection, **FAST_PARAMS
    )
    group = Replicas(tmp_path, dataset, {"lease_timeout": f"{LEASE_TIMEOUT_S:g}s"})
    try:
        yield group
    finally:
        group.close()


def count(runtime: RuntimeProcess) -> int:
    with flightsql.connect(runtime.flight_uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM orders")
        return int(cur.fetchone()[0])  # type: ignore[index]


def test_kill_9_the_syncing_runtime_again_and_again(
    replicas: Replicas, emulator: Emulator, table: str
) -> None:
    seed = int(os.environ.get("KILL_SEED", time.time_ns() % 10**6))
    print(f"kill-instant seed: {seed} (rerun with KILL_SEED={seed})")
    rng = random.Random(seed)
    ddb = emulator.client()
    for _ in range(3):
        replicas.start()
    for runtime in replicas.live:
        runtime.wait_ready()
    holders = replicas.syncing()
    assert len(holders) == 1  # exactly one syncs, with no setting asking for it
    followers = [r for r in replicas.live if r is not holders[0][0]]
    for runtime in followers:
        status = replicas.status(runtime)
        assert status is not None and status["role"] == "following"
        assert status["synced_by"] == holders[0][1]["synced_by"]
        assert status["commits"] == 0 and status["records_consumed"] == 0  # no stream read
    failovers = []
    with Writer(ddb, table, random.Random(seed + 1), 400):
        for kill in range(KILLS):
            holder, _ = replicas.wait_commit(0, 30)
            time.sleep(rng.uniform(0.0, 1.5))  # a random instant of its life
            killed_at = time.time()
            replicas.kill(holder)
            survivors = list(replicas.live)
            replacement = replicas.start()  # the orchestrator's restart, while the lease moves
            for runtime in survivors:
                assert count(runtime) > 0  # the survivors keep answering queries
            new_holder, committed_at = replicas.wait_commit(killed_at, LEASE_TIMEOUT_S + 20)
            assert new_holder is not holder
            failovers.append(committed_at - killed_at)
            replacement.wait_ready()
            print(f"kill {kill + 1}: lease moved, first commit {failovers[-1]:.2f} s after")
    for runtime in replicas.live:
        wait_for(lambda r=runtime: converged(r.flight_uri, ddb, table), 60, "convergence")
        assert_served_equals_source(runtime.flight_uri, ddb, table)
    print(
        f"failover p50 {sorted(failovers)[len(failovers) // 2]:.2f} s, max {max(failovers):.2f} s"
    )
    assert max(failovers) < LEASE_TIMEOUT_S + 10


def test_a_frozen_holder_commits_nothing_after_its_lease_moves(
    tmp_path: Path, emulator: Emulator, pg_connection: dict[str, str], table: str
) -> None:
    # Idle commits only every 5 s (a quarter of ready_lag), so the test can freeze the holder
    # between two and know how many it made.
    dataset = dataset_entry(
        "orders",
        table,
        emulator.url,
        "postgres",
        pg_connection=pg_connection,
        ready_lag="20s",
        **FAST_PARAMS,
    )
    replicas = Replicas(tmp_path, dataset, {"lease_timeout": f"{LEASE_TIMEOUT_S:g}s"})
    ddb = emulator.client()
    try:
        first = replicas.start()
        first.wait_ready()
        second = replicas.start()
        second.wait_ready()
        [(frozen, _)] = replicas.syncing()
        other = second if frozen is first else first

        def just_committed() -> bool:
            status = replicas.status(frozen)
            return status is not None and time.time() - status["last_checkpoint_at"] < 1.0

        wait_for(just_committed, 15, "an idle commit")
        status = replicas.status(frozen)
        assert status is not None
        commits = status["commits"]
        assert frozen.proc is not None
        os.kill(frozen.proc.pid, signal.SIGSTOP)
        frozen_at = time.time()
        try:
            with Writer(ddb, table, random.Random(9), 300) as writer:
                wait_for(lambda: writer.changes > 20, 30, "changes while frozen")
                new_holder, committed_at = replicas.wait_commit(frozen_at, LEASE_TIMEOUT_S + 20)
                assert new_holder is other
                assert committed_at - frozen_at < LEASE_TIMEOUT_S + 10
        finally:
            os.kill(frozen.proc.pid, signal.SIGCONT)
        # Changes it read before freezing are pending: it must step down, not commit them.
        with Writer(ddb, table, random.Random(10), 300):

            def stepped_down() -> bool:
                status = replicas.status(frozen)
                return status is not None and status["role"] == "following"

            wait_for(stepped_down, 15, "the frozen runtime stepping down")
            time.sleep(2)
        status = replicas.status(frozen)
        assert status is not None and status["commits"] == commits
        assert status["synced_by"] == replicas.status(other)["synced_by"]  # type: ignore[index]
        assert "lease" in frozen.log.read_text()
        for runtime in (frozen, other):
            wait_for(lambda r=runtime: converged(r.flight_uri, ddb, table), 60, "convergence")
    finally:
        replicas.close()


def test_a_cut_postgres_connection_moves_the_lease(
    tmp_path: Path, emulator: Emulator, pg_connection: dict[str, str], table: str
) -> None:
    proxy = TcpProxy((pg_connection.get("host", "127.0.0.1"), int(pg_connection.get("port", 5432))))
    proxy.up()
    through_proxy = {**pg_connection, "host": "127.0.0.1", "port": str(proxy.port)}
    cut = dataset_entry(
        "orders", table, emulator.url, "postgres", pg_connection=through_proxy, **FAST_PARAMS
    )
    direct = dataset_entry(
        "orders", table, emulator.url, "postgres", pg_connection=pg_connection, **FAST_PARAMS
    )
    runtime_block = {"lease_timeout": f"{LEASE_TIMEOUT_S:g}s"}
    behind_proxy = Replicas(tmp_path / "a", cut, runtime_block)
    beside = Replicas(tmp_path / "b", direct, runtime_block)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ddb = emulator.client()
    try:
        first = behind_proxy.start()
        first.wait_ready()  # it took the lease: nobody else was there
        assert behind_proxy.syncing()
        second = beside.start()
        second.wait_ready()
        assert not beside.syncing()
        with Writer(ddb, table, random.Random(11), 300):
            cut_at = time.time()
            proxy.down()
            _, committed_at = beside.wait_commit(cut_at, LEASE_TIMEOUT_S + 20)
            assert committed_at - cut_at < LEASE_TIMEOUT_S + 10
            time.sleep(1)
            proxy.up()  # back: it follows, and serves again once the shared data is fresh

            def follows() -> bool:
                status = Replicas.status(first)
                return status is not None and status["role"] == "following"

            wait_for(follows, 30, "the cut-off runtime following")
        for runtime in (first, second):
            wait_for(lambda r=runtime: converged(r.flight_uri, ddb, table), 60, "convergence")
        assert len(beside.syncing()) == 1 and not behind_proxy.syncing()
    finally:
        behind_proxy.close()
        beside.close()
        proxy.down()


def test_the_lease_is_a_row_with_an_epoch(
    replicas: Replicas, pg_connection: dict[str, str]
) -> None:
    first = replicas.start()
    first.wait_ready()
    second = replicas.start()
    second.wait_ready()

    def lease() -> tuple[Any, ...]:
        with psycopg.connect(**pg_connection) as con:
            row = con.execute(
                "SELECT holder, epoch FROM _dynamirror_leases WHERE dataset = 'orders'"
            ).fetchone()
        assert row is not None
        return tuple(row)

    holder, epoch = lease()
    [(syncing, status)] = replicas.syncing()
    assert status["synced_by"] == holder
    [follower] = [r for r in replicas.live if r is not syncing]
    code, body = follower.get("/v1/datasets/orders/acceleration/refresh", method="POST")
    assert code == 409 and holder in body  # the refresh is the syncing runtime's to do
    assert syncing.terminate() == 0  # a clean stop releases the lease: no wait for expiry
    replicas.live.remove(syncing)
    stopped_at = time.time()
    _, committed_at = replicas.wait_commit(stopped_at, LEASE_TIMEOUT_S + 20)
    assert committed_at - stopped_at < LEASE_TIMEOUT_S  # taken at the next poll, not expiry
    assert lease()[1] == epoch + 1


def test_a_runtime_that_cannot_reach_the_table_lets_another_sync_it(
    tmp_path: Path, emulator: Emulator, pg_connection: dict[str, str], table: str
) -> None:
    """The lease holder in error releases the lease: another runtime may reach what it cannot."""
    with socket.socket() as sock:  # a port nothing listens on: DynamoDB unreachable
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    runtime_block = {"lease_timeout": f"{LEASE_TIMEOUT_S:g}s"}
    cut_off = Replicas(
        tmp_path / "a",
        dataset_entry(
            "orders", table, dead, "postgres", pg_connection=pg_connection, **FAST_PARAMS
        ),
        runtime_block,
    )
    reaching = Replicas(
        tmp_path / "b",
        dataset_entry(
            "orders", table, emulator.url, "postgres", pg_connection=pg_connection, **FAST_PARAMS
        ),
        runtime_block,
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        first = cut_off.start()

        def in_error() -> bool:
            status = Replicas.status(first)
            return status is not None and status["status"] == "error"

        wait_for(in_error, 60, "the cut-off runtime in error")
        second = reaching.start()
        second.wait_ready()
        assert len(reaching.syncing()) == 1 and not cut_off.syncing()
        first.wait_ready()  # it serves what the other syncs
    finally:
        cut_off.close()
        reaching.close()
