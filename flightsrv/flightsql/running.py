"""Result streams in progress, so that CancelFlightInfo (or shutdown) can stop them."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

# Cancelled query ids remembered so that a DoGet arriving after its cancellation is refused too;
# ids are random per GetFlightInfo, so an old one is never seen again once its client gave up.
REMEMBERED_CANCELLATIONS = 4096


class QueryCancelled(Exception):
    """The client (or another one holding its FlightInfo) cancelled the query."""


class StopFlag:
    """Set once to stop one result stream.

    A stream sent batch by batch from Python checks :meth:`is_set` between batches; one sent by
    Flight's C++ writer registers :meth:`on_set` to interrupt the engine, since no Python runs
    there until it ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._callbacks: list[Callable[[], None]] = []

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lock:
            if self._set:
                return
            self._set = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_set(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the flag is set, or now if it already is."""
        with self._lock:
            if not self._set:
                self._callbacks.append(callback)
                return
        callback()


class RunningQueries:
    """Stop flags of the result streams being sent, by query id (thread-safe)."""

    def __init__(self, remember: int = REMEMBERED_CANCELLATIONS) -> None:
        self._lock = threading.Lock()
        self._running: dict[bytes, set[StopFlag]] = {}
        self._cancelled: OrderedDict[bytes, None] = OrderedDict()
        self._remember = remember

    def start(self, query_id: bytes) -> StopFlag:
        """Register a stream of ``query_id``; its flag is set when the query is cancelled.

        Raises:
            QueryCancelled: the query was cancelled before its stream started.
        """
        flag = StopFlag()
        with self._lock:
            if query_id in self._cancelled:
                raise QueryCancelled("the query was cancelled")
            self._running.setdefault(query_id, set()).add(flag)
        return flag

    def finish(self, query_id: bytes, flag: StopFlag) -> None:
        with self._lock:
            flags = self._running.get(query_id)
            if flags is not None:
                flags.discard(flag)
                if not flags:
                    del self._running[query_id]

    def cancel(self, query_ids: list[bytes]) -> int:
        """Stop the streams of ``query_ids``; returns how many were running."""
        flags: list[StopFlag] = []
        with self._lock:
            for query_id in query_ids:
                self._cancelled[query_id] = None
                self._cancelled.move_to_end(query_id)
                flags.extend(self._running.get(query_id, ()))
            while len(self._cancelled) > self._remember:
                self._cancelled.popitem(last=False)
        for flag in flags:
            flag.set()  # outside the lock: it may interrupt an engine
        return len(flags)

    def stop_all(self) -> None:
        """Stop every stream (shutdown); their query ids stay valid."""
        with self._lock:
            flags = [flag for flags in self._running.values() for flag in flags]
        for flag in flags:
            flag.set()

    def __len__(self) -> int:
        """Streams being sent right now."""
        with self._lock:
            return sum(len(flags) for flags in self._running.values())
