"""A dataset's lease in PostgreSQL: a row with a holder, an epoch and an expiry.

Why a row rather than an advisory lock: a session's advisory lock is held for as long as its
connection lives, and a frozen holder (SIGSTOP, a swap storm) keeps its TCP connection open,
so nobody could take over. A row expires by time, on one clock (the server's), whatever the
holder's state. The row lives in the database the dataset is mirrored in, next to its data and
checkpoint, so there is no other service to run.

- Taking: insert the row, or take it over once expired, bumping the epoch (one statement).
- Keeping: a thread renews it every third of its time to live (TTL); the holder stops counting
  itself holder once a TTL has passed since its last renewal began.
- Fencing: every write transaction of the holder first renews the row *if it is still its own
  epoch and unexpired* (:meth:`PostgresLease.fence`); when that updates nothing, the
  transaction rolls back with :class:`~sync.lease.LeaseLost`. The renewal holds the row's lock
  until commit, so a taker waits for that commit and then finds the lease renewed. The same
  transaction sets ``idle_in_transaction_session_timeout``: a holder frozen inside it has its
  session (and the lock) ended by the server after a TTL.

The TTL is 60 % of ``lease_timeout`` and followers try to take the lease every tenth of it, so
another runtime holds it within ``lease_timeout`` of the holder dying.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

try:
    import psycopg
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError("the postgres lease needs psycopg: pip install 'dynamirror[postgres]'") from e

from sync.lease import Holder, LeaseLost, runtime_id

log = logging.getLogger(__name__)

LEASE_TABLE = "_dynamirror_leases"
TTL_SHARE = 0.6  # of lease_timeout: the rest covers a follower's poll and its takeover
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (dataset text PRIMARY KEY, holder text NOT NULL, "
    "epoch bigint NOT NULL, acquired_at timestamptz NOT NULL, expires_at timestamptz NOT NULL)"
)
_TAKE = (
    f"INSERT INTO {LEASE_TABLE} AS l (dataset, holder, epoch, acquired_at, expires_at) "
    "VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp() + $3::float8 * interval '1 second') "
    "ON CONFLICT (dataset) DO UPDATE SET holder = EXCLUDED.holder, epoch = l.epoch + 1, "
    "acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at "
    "WHERE l.expires_at <= clock_timestamp() RETURNING epoch"
)
_RENEW = (
    f"UPDATE {LEASE_TABLE} SET expires_at = clock_timestamp() + $4::float8 * interval '1 second' "
    "WHERE dataset = $1 AND holder = $2 AND epoch = $3 AND expires_at > clock_timestamp()"
)
_RELEASE = (
    f"UPDATE {LEASE_TABLE} SET expires_at = clock_timestamp() "
    "WHERE dataset = $1 AND holder = $2 AND epoch = $3"
)
_HOLDER = (
    "SELECT holder, epoch, extract(epoch FROM acquired_at)::float8, "
    f"expires_at > clock_timestamp() FROM {LEASE_TABLE} WHERE dataset = $1"
)


class PostgresLease:
    """The lease of one dataset (see the module's docstring), on a connection of its own.

    ``connect`` opens an autocommit connection to the dataset's database.
    """

    def __init__(
        self, connect: Callable[[], psycopg.Connection[Any]], dataset: str, timeout_s: float
    ) -> None:
        self._connect = connect
        self._dataset = dataset
        self._runtime = runtime_id()
        self._timeout = timeout_s
        self._ttl = timeout_s * TTL_SHARE
        self._con: psycopg.Connection[Any] | None = None
        self._con_lock = threading.Lock()  # one statement at a time on the connection
        self._epoch: int | None = None
        self._fenced_epoch: int | None = None
        self._valid_until = 0.0  # monotonic: the holder's own, conservative, view of the TTL
        self._keeper: threading.Thread | None = None
        self._released = threading.Event()
        self._created = False

    @property
    def runtime(self) -> str:
        return self._runtime

    @property
    def timeout_s(self) -> float:
        return self._timeout

    @property
    def held(self) -> bool:
        return self._epoch is not None and time.monotonic() < self._valid_until

    def try_acquire(self) -> bool:
        if self.held:
            return True
        started = time.monotonic()
        row = self._execute(_TAKE, [self._dataset, self._runtime, self._ttl])
        if row is None:
            return False
        self._epoch = int(row[0])
        self._valid_until = started + self._ttl
        self._released.clear()
        self._keeper = threading.Thread(
            target=self._keep, name=f"lease-{self._dataset}", daemon=True
        )
        self._keeper.start()
        log.info(
            "dataset %s: this runtime (%s) took the lease, epoch %d",
            self._dataset,
            self._runtime,
            self._epoch,
        )
        return True

    def _keep(self) -> None:
        """Renew every third of the TTL, until released or a renewal finds the lease gone."""
        epoch = self._epoch
        while not self._released.wait(self._ttl / 3) and self._epoch == epoch:
            started = time.monotonic()
            try:
                renewed = self._execute(
                    _RENEW, [self._dataset, self._runtime, epoch, self._ttl], rows=True
                )
            except psycopg.Error as e:
                log.warning("dataset %s: renewing the lease failed: %s", self._dataset, e)
                continue  # held lapses by itself if this goes on for a TTL
            if not renewed:
                log.warning("dataset %s: the lease expired before it was renewed", self._dataset)
                self._epoch = None
                return
            self._valid_until = started + self._ttl

    def fence(self, cur: Any) -> bool:
        """In the caller's write transaction: renew the lease or refuse the transaction.
        True the first time in a term (other runtimes may have written since the last)."""
        epoch = self._epoch
        if epoch is None or not self.held:
            raise LeaseLost(f"dataset {self._dataset}: this runtime no longer holds the lease")
        cur.execute(f"SET LOCAL idle_in_transaction_session_timeout = {int(self._ttl * 1000)}")
        cur.execute(_RENEW, [self._dataset, self._runtime, epoch, self._ttl])
        if cur.rowcount != 1:
            self._epoch = None
            raise LeaseLost(
                f"dataset {self._dataset}: the lease (epoch {epoch}) expired or was taken over; "
                "the write was refused"
            )
        first, self._fenced_epoch = self._fenced_epoch != epoch, epoch
        return first

    def holder(self) -> Holder | None:
        row = self._execute(_HOLDER, [self._dataset])
        if row is None:
            return None
        return Holder(str(row[0]), int(row[1]), float(row[2]), bool(row[3]))

    def release(self) -> None:
        epoch, self._epoch = self._epoch, None
        self._released.set()
        if epoch is not None:
            try:
                self._execute(_RELEASE, [self._dataset, self._runtime, epoch], rows=True)
                log.info("dataset %s: released the lease", self._dataset)
            except psycopg.Error as e:  # it expires by itself
                log.warning("dataset %s: releasing the lease failed: %s", self._dataset, e)
        with self._con_lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def _execute(self, statement: str, params: list[Any], rows: bool = False) -> Any:
        """One statement on the lease's connection (reopened after any error): its first row,
        or with ``rows`` the number of rows it changed."""
        with self._con_lock:
            try:
                if self._con is None or self._con.closed:
                    self._con = self._open()
                cur = self._con.execute(statement, params)
                return cur.rowcount if rows else cur.fetchone()
            except psycopg.Error:
                if self._con is not None:
                    self._con.close()
                    self._con = None
                raise

    def _open(self) -> psycopg.Connection[Any]:
        con = self._connect()
        # A statement is bounded: a server that stopped answering does not hold the keeper.
        con.execute(f"SET statement_timeout = {int(self._ttl * 1000 / 3)}")
        con.execute(f"SET lock_timeout = {int(self._ttl * 1000 / 6)}")
        if not self._created:
            con.execute("SELECT pg_advisory_lock(hashtext($1))", [LEASE_TABLE])
            try:
                con.execute(_DDL)
            finally:
                con.execute("SELECT pg_advisory_unlock(hashtext($1))", [LEASE_TABLE])
            self._created = True
        return con
