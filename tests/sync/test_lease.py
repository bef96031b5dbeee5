"""The PostgreSQL lease on its own: one holder at a time, epochs, and the fence that stops a
runtime which lost the lease from ever committing again (see sync.accelerators.postgres_lease).
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from sync.accelerators.base import open_accelerator
from sync.accelerators.postgres import PostgresAccelerator
from sync.lease import LeaseLost, SharedEngine
from sync.settings import AccelerationSettings
from tests.sync.test_accelerators import batch, checkpoint, make_spec, query, upsert

TIMEOUT_S = 2.0


def engine(connection: dict[str, str]) -> PostgresAccelerator:
    accelerator = open_accelerator(AccelerationSettings("postgres", "file", None, connection))
    assert isinstance(accelerator, PostgresAccelerator) and isinstance(accelerator, SharedEngine)
    return accelerator


def test_one_holder_at_a_time_and_a_lost_lease_cannot_commit(
    pg_connection: dict[str, str],
) -> None:
    first, second = engine(pg_connection), engine(pg_connection)
    lease_a = first.lease("t", ("t", "t__bootstrap"), TIMEOUT_S)
    lease_b = second.lease("t", ("t", "t__bootstrap"), TIMEOUT_S)
    try:
        assert lease_a.holder() is None
        assert lease_a.try_acquire()
        assert not lease_b.try_acquire()  # held and renewed: nobody else takes it
        time.sleep(TIMEOUT_S)  # longer than its time to live: the keeper renews it
        assert not lease_b.try_acquire() and lease_a.held
        holder = lease_b.holder()
        assert holder is not None and holder.runtime == lease_a.runtime and holder.live
        spec = make_spec("t")
        first.create_table(spec)
        first.apply("t", spec, batch(spec, [upsert("a", n=1)], checkpoint("1")))

        lease_a.release()
        assert lease_b.try_acquire()
        assert lease_b.holder().epoch == holder.epoch + 1  # type: ignore[union-attr]
        with pytest.raises(LeaseLost):
            first.apply("t", spec, batch(spec, [upsert("a", n=2)], checkpoint("2")))
        with pytest.raises(LeaseLost):
            first.create_table(spec)  # the staging table and the table alike
        second.apply("t", spec, batch(spec, [upsert("b", n=3)], checkpoint("3")))
        rows = query(second, "SELECT pk, n FROM t ORDER BY pk").to_pylist()
        assert rows == [{"pk": "a", "n": 1}, {"pk": "b", "n": 3}]
        assert second.load_checkpoint("t") == checkpoint("3")
    finally:
        lease_a.release()
        lease_b.release()
        first.close()
        second.close()


def test_a_holder_whose_lease_expired_is_fenced_even_if_it_thinks_it_holds_it(
    pg_connection: dict[str, str],
) -> None:
    """The fence checks the row, not the holder's own view: a lease taken over behind its
    back (its renewals lost) refuses the next write."""
    first, second = engine(pg_connection), engine(pg_connection)
    lease_a = first.lease("u", ("u",), TIMEOUT_S)
    lease_b = second.lease("u", ("u",), TIMEOUT_S)
    admin = engine(pg_connection)
    try:
        assert lease_a.try_acquire()
        spec = make_spec("u")
        first.create_table(spec)
        # Expire it on the server, as if its renewals had not arrived.
        with admin._transaction() as cur:  # noqa: SLF001 - the test plays the network
            cur.execute("UPDATE _dynamirror_leases SET expires_at = now() - interval '1 s'")
        assert lease_b.try_acquire()
        assert lease_a.held  # its own clock says it still holds the lease…
        with pytest.raises(LeaseLost, match="taken over"):  # …the row says otherwise
            first.apply("u", spec, batch(spec, [upsert("a", n=1)], checkpoint("1")))
        assert query(second, "SELECT count(*) AS n FROM u").to_pylist() == [{"n": 0}]
    finally:
        for lease in (lease_a, lease_b):
            lease.release()
        for accelerator in (first, second, admin):
            accelerator.close()


def test_a_holder_frozen_inside_a_write_transaction_loses_it_to_the_server(
    pg_connection: dict[str, str],
) -> None:
    """The fenced transaction holds the lease row's lock; a holder frozen in it (SIGSTOP,
    a stalled disk) would block every taker, so the server ends its session after a TTL."""
    first, second = engine(pg_connection), engine(pg_connection)
    lease_a = first.lease("v", ("v",), TIMEOUT_S)
    lease_b = second.lease("v", ("v",), TIMEOUT_S)
    try:
        assert lease_a.try_acquire()
        spec = make_spec("v")
        first.create_table(spec)
        taken: list[float] = []

        def take() -> None:
            deadline = time.monotonic() + 4 * TIMEOUT_S
            while time.monotonic() < deadline and not taken:
                try:
                    if lease_b.try_acquire():
                        taken.append(time.monotonic())
                except psycopg.Error:
                    pass  # its lock_timeout: the row is still locked
                time.sleep(0.05)

        started = time.monotonic()
        taker = threading.Thread(target=take)
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            with first._writing("v") as cur:  # noqa: SLF001 - the frozen holder, played here
                taker.start()
                time.sleep(TIMEOUT_S)  # idle in its transaction for longer than the TTL
                cur.execute("SELECT 1")
        taker.join()
        assert taken and taken[0] - started < 2 * TIMEOUT_S
        with pytest.raises(LeaseLost):
            first.apply("v", spec, batch(spec, [upsert("a", n=1)], checkpoint("1")))
    finally:
        lease_a.release()
        lease_b.release()
        first.close()
        second.close()
