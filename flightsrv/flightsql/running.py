"""Queries running in the engines, so that a cancel, the query timeout, a client that went away
or shutdown can stop each one *in its engine*, and an operator can see what holds a core."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

# Cancelled query ids remembered so that a DoGet arriving after its cancellation is refused too;
# ids are random per GetFlightInfo, so an old one is never seen again once its client gave up.
REMEMBERED_CANCELLATIONS = 4096
# How often deadlines and clients' connections are looked at: the bound on how late a timeout
# or a vanished client stops its query.
WATCH_INTERVAL_S = 0.1
SQL_SHOWN_CHARS = 200


class QueryCancelled(Exception):
    """The client (or another one holding its FlightInfo) cancelled the query, or went away."""


class QueryTimedOut(Exception):
    """The query ran longer than ``runtime.query.timeout``."""


class ServerStopping(Exception):
    """The server is shutting down."""


class CallContext(Protocol):
    """What the watch needs of a gRPC call: whether its client cancelled it or went away."""

    def is_cancelled(self) -> bool: ...


class StopFlag:
    """Set once, with its cause, to stop one query.

    Engine handles register how to interrupt their statement (:meth:`on_set`) before running
    it; a result sent from Python also checks :meth:`is_set` between batches.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cause: Exception | None = None
        self._callbacks: list[Callable[[], None]] = []

    def is_set(self) -> bool:
        return self._cause is not None

    @property
    def cause(self) -> Exception | None:
        """What to tell the client: :class:`QueryCancelled`, :class:`QueryTimedOut`…"""
        return self._cause

    def set(self, cause: Exception) -> None:
        with self._lock:
            if self._cause is not None:
                return
            self._cause = cause
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_set(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the flag is set, or now if it already is."""
        with self._lock:
            if self._cause is None:
                self._callbacks.append(callback)
                return
        callback()

    def forget(self) -> None:
        """Drop the callbacks: the query ended, and they hold its engine cursor."""
        with self._lock:
            self._callbacks = []


@dataclass(eq=False)
class _Entry:
    query_id: bytes
    call: str
    sql: str
    started: float  # wall clock, for people
    deadline: float | None  # monotonic
    flag: StopFlag = field(default_factory=StopFlag)
    # The gRPC call while its handler runs; None once it returned (the C++ context behind it
    # may be freed any time after, so it is never touched then).
    context: CallContext | None = None


class RunningQueries:
    """Every query running in an engine, by query id (thread-safe).

    A watch thread stops queries past their deadline and those whose client cancelled the call
    or went away; it sleeps while no query runs, and ends at shutdown.
    """

    def __init__(
        self, timeout: timedelta | None = None, remember: int = REMEMBERED_CANCELLATIONS
    ) -> None:
        self._timeout_s = timeout.total_seconds() if timeout else None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._running: dict[bytes, set[_Entry]] = {}
        self._cancelled: OrderedDict[bytes, None] = OrderedDict()
        self._remember = remember
        self._stopping: Exception | None = None
        self._watch: threading.Thread | None = None

    def start(
        self, query_id: bytes, call: str, sql: str, context: CallContext | None = None
    ) -> StopFlag:
        """Register a query (``call`` names the RPC); its flag is set when it must stop.

        ``context`` is watched until :meth:`detach`; the caller must detach (or finish) before
        its RPC handler returns.

        Raises:
            QueryCancelled: the query was cancelled before it started.
            ServerStopping: the server is shutting down.
        """
        now = time.monotonic()
        deadline = now + self._timeout_s if self._timeout_s else None
        entry = _Entry(query_id, call, sql[:SQL_SHOWN_CHARS], time.time(), deadline)
        entry.context = context
        with self._lock:
            if self._stopping is not None:
                raise self._stopping
            if query_id in self._cancelled:
                raise QueryCancelled("the query was cancelled")
            if not self._running:
                self._wake.notify()
            self._running.setdefault(query_id, set()).add(entry)
            if self._watch is None:
                self._watch = threading.Thread(target=self._watching, name="query-watch")
                self._watch.daemon = True
                self._watch.start()
        return entry.flag

    @contextmanager
    def tracking(
        self, query_id: bytes, call: str, sql: str, context: CallContext | None
    ) -> Iterator[StopFlag]:
        """:meth:`start` … :meth:`finish` around an engine call made inside an RPC handler; an
        error raised once the flag is set becomes the flag's cause (cancelled, timed out…)."""
        flag = self.start(query_id, call, sql, context)
        try:
            yield flag
        except Exception as e:
            if flag.cause is not None:
                raise flag.cause from e
            raise
        finally:
            self.finish(query_id, flag)

    def detach(self, query_id: bytes, flag: StopFlag) -> None:
        """The RPC handler is returning: stop watching its call context."""
        with self._lock:
            for entry in self._running.get(query_id, ()):
                if entry.flag is flag:
                    entry.context = None

    def finish(self, query_id: bytes, flag: StopFlag) -> None:
        with self._lock:
            entries = self._running.get(query_id, set())
            for entry in [e for e in entries if e.flag is flag]:
                entries.discard(entry)
            if not entries:
                self._running.pop(query_id, None)
        flag.forget()

    def cancel(self, query_ids: list[bytes]) -> int:
        """Stop the queries of ``query_ids``; returns how many were running."""
        flags: list[StopFlag] = []
        with self._lock:
            for query_id in query_ids:
                self._cancelled[query_id] = None
                self._cancelled.move_to_end(query_id)
                flags.extend(e.flag for e in self._running.get(query_id, ()))
            while len(self._cancelled) > self._remember:
                self._cancelled.popitem(last=False)
        for flag in flags:
            flag.set(QueryCancelled("the query was cancelled (CancelFlightInfo)"))
        return len(flags)

    def stop_all(self) -> None:
        """Stop every query and refuse new ones (shutdown)."""
        cause = ServerStopping("the server is shutting down")
        with self._lock:
            self._stopping = cause
            flags = [e.flag for entries in self._running.values() for e in entries]
            self._wake.notify()
        for flag in flags:
            flag.set(cause)  # outside the lock: it may interrupt an engine

    def snapshot(self) -> list[dict[str, Any]]:
        """The running queries, oldest first, as ``/v1/status`` shows them."""
        now = time.time()
        with self._lock:
            entries = [e for entries in self._running.values() for e in entries]
        entries.sort(key=lambda e: e.started)
        return [
            {
                "id": e.query_id.hex(),
                "call": e.call,
                "sql": e.sql,
                "started": e.started,
                "age_s": round(now - e.started, 3),
                "stopping": e.flag.is_set(),
            }
            for e in entries
        ]

    def __len__(self) -> int:
        """Queries running right now."""
        with self._lock:
            return sum(len(entries) for entries in self._running.values())

    def _watching(self) -> None:
        """Stop queries past their deadline or whose client left, until shutdown."""
        while True:
            with self._lock:
                while not self._running and self._stopping is None:
                    self._wake.wait()
                if self._stopping is not None:
                    return  # every query was stopped already
            time.sleep(WATCH_INTERVAL_S)
            now = time.monotonic()
            due: list[tuple[StopFlag, Exception]] = []
            with self._lock:
                for entries in self._running.values():
                    for e in entries:
                        if e.flag.is_set():
                            continue
                        if e.deadline is not None and now >= e.deadline:
                            due.append((e.flag, QueryTimedOut(self._timed_out())))
                        elif e.context is not None and e.context.is_cancelled():
                            due.append((e.flag, QueryCancelled("the client went away")))
            for flag, cause in due:
                flag.set(cause)

    def _timed_out(self) -> str:
        return (
            f"the query ran longer than runtime.query.timeout ({self._timeout_s:g} s) "
            "and was stopped"
        )
