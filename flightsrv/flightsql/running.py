"""Result streams in progress, so that CancelFlightInfo can stop them."""

from __future__ import annotations

import threading
from collections import OrderedDict

# Cancelled query ids remembered so that a DoGet arriving after its cancellation is refused too;
# ids are random per GetFlightInfo, so an old one is never seen again once its client gave up.
REMEMBERED_CANCELLATIONS = 4096


class QueryCancelled(Exception):
    """The client (or another one holding its FlightInfo) cancelled the query."""


class RunningQueries:
    """Cancellation flags of the result streams being sent, by query id (thread-safe)."""

    def __init__(self, remember: int = REMEMBERED_CANCELLATIONS) -> None:
        self._lock = threading.Lock()
        self._running: dict[bytes, set[threading.Event]] = {}
        self._cancelled: OrderedDict[bytes, None] = OrderedDict()
        self._remember = remember

    def start(self, query_id: bytes) -> threading.Event:
        """Register a stream of ``query_id``; its flag is set when the query is cancelled.

        Raises:
            QueryCancelled: the query was cancelled before its stream started.
        """
        flag = threading.Event()
        with self._lock:
            if query_id in self._cancelled:
                raise QueryCancelled("the query was cancelled")
            self._running.setdefault(query_id, set()).add(flag)
        return flag

    def finish(self, query_id: bytes, flag: threading.Event) -> None:
        with self._lock:
            flags = self._running.get(query_id)
            if flags is not None:
                flags.discard(flag)
                if not flags:
                    del self._running[query_id]

    def cancel(self, query_ids: list[bytes]) -> int:
        """Stop the streams of ``query_ids`` at their next batch; returns how many were running."""
        stopped = 0
        with self._lock:
            for query_id in query_ids:
                self._cancelled[query_id] = None
                self._cancelled.move_to_end(query_id)
                for flag in self._running.get(query_id, ()):
                    flag.set()
                    stopped += 1
            while len(self._cancelled) > self._remember:
                self._cancelled.popitem(last=False)
        return stopped

    def __len__(self) -> int:
        """Streams being sent right now."""
        with self._lock:
            return sum(len(flags) for flags in self._running.values())
