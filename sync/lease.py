"""Which runtime syncs a dataset when several serve the same shared engine: the interface.

Two writers on one database are never right, so a dataset on an engine other runtimes also
serve (:class:`SharedEngine`: PostgreSQL) is synced only by the runtime holding its
:class:`DatasetLease`; the others follow, serving what the holder commits. Each write of the
holder is fenced: checked against the lease in its own transaction, so a runtime that lost the
lease (paused, cut off) can never commit again. See :mod:`sync.accelerators.postgres_lease`.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sync.errors import SyncError

DEFAULT_LEASE_TIMEOUT_S = 10.0


class LeaseLost(SyncError):
    """A write was refused because this runtime no longer holds the dataset's lease."""


@dataclass(frozen=True)
class Holder:
    """Who holds a dataset's lease, as the shared engine records it."""

    runtime: str  # see :func:`runtime_id`
    epoch: int  # grows by one at every change of holder
    since: float  # epoch seconds the holder took the lease
    live: bool  # False once it expired without being renewed (the holder died or is cut off)


class DatasetLease(Protocol):
    """The right to sync one dataset, taken and kept against every other runtime."""

    @property
    def runtime(self) -> str:
        """This runtime's id, as :class:`Holder` names it."""
        ...

    @property
    def timeout_s(self) -> float:
        """How soon after this runtime dies or is cut off another one holds the lease."""
        ...

    @property
    def held(self) -> bool:
        """True while this runtime holds the lease and has renewed it in time."""
        ...

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it (or its holder let it expire); renewed from then
        on in the background until :meth:`release`, or until a renewal fails."""
        ...

    def holder(self) -> Holder | None:
        """Who holds it now (None: nobody ever did)."""
        ...

    def release(self) -> None:
        """Let another runtime take the lease at once (a clean stop); idempotent."""
        ...


@runtime_checkable
class SharedEngine(Protocol):
    """An accelerator several runtimes may serve from at once."""

    def lease(self, dataset: str, tables: Sequence[str], timeout_s: float) -> DatasetLease:
        """The lease of ``dataset``, fencing every write to ``tables`` (the dataset's table
        and its staging table); another runtime takes it within ``timeout_s`` of this one
        dying or being cut off."""
        ...


def runtime_id() -> str:
    """``host:pid/xxxx``: readable, and unique even when a restarted container reuses a pid."""
    return f"{socket.gethostname()}:{os.getpid()}/{_TOKEN}"


_TOKEN = secrets.token_hex(2)
