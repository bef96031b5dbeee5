"""Pages read by several threads (Scan segments, export files) handed to one consumer through
a bounded queue, so memory stays flat whatever the table size."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sync.errors import SyncError
from sync.retry import Stopped

_DONE = object()
PUT_WAIT_S = 0.2  # how often a blocked reader or the waiting consumer looks at the stop event


class FanIn:
    """A bounded queue between reader threads and the one thread consuming their pages.

    A reader puts its pages with :meth:`put`; its first :class:`~sync.errors.SyncError` or
    ``Stopped`` ends it and is raised in the consumer. With ``keep_late``, pages a reader had
    read when the consumer stopped are kept and handed over by :meth:`pages` before it raises
    ``Stopped``, so a resumable reader need not read them again.
    """

    def __init__(self, stop: threading.Event, size: int, keep_late: bool = False) -> None:
        self._stop = stop
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._late: queue.SimpleQueue[Any] | None = queue.SimpleQueue() if keep_late else None
        self.cancelled = threading.Event()  # the consumer is gone: readers end

    def put(self, item: object) -> bool:
        """Queue ``item``; False once the consumer stopped (the reader should end)."""
        while not (self._stop.is_set() or self.cancelled.is_set()):
            try:
                self._queue.put(item, timeout=PUT_WAIT_S)
                return True
            except queue.Full:
                continue
        if self._late is not None and not self.cancelled.is_set():
            self._late.put(item)
        return False

    def pages(self, readers: Sequence[tuple[str, Callable[[], None]]]) -> Iterator[Any]:
        """Start ``readers`` (a thread name and what it runs) and yield their pages as they
        come.

        Raises:
            SyncError: a reader's, as it failed.
            Stopped: the stop event was set.
        """
        threads = [
            threading.Thread(target=self._read, args=(run,), name=name, daemon=True)
            for name, run in readers
        ]
        for thread in threads:
            thread.start()
        finished = 0
        try:
            while finished < len(threads):
                try:
                    item = self._queue.get(timeout=PUT_WAIT_S)
                except queue.Empty:
                    if self._stop.is_set():
                        if self._late is not None:
                            yield from self._drain(threads)
                        raise Stopped from None
                    continue
                if item is _DONE:
                    finished += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self.cancelled.set()
            for thread in threads:
                thread.join(timeout=5)

    def _read(self, run: Callable[[], None]) -> None:
        try:
            run()
        except (SyncError, Stopped) as e:
            self.put(e)
            return
        self.put(_DONE)

    def _drain(self, threads: list[threading.Thread]) -> Iterator[Any]:
        """The pages read when the consumer stopped: those queued, then those the readers were
        waiting to queue (each reader's in its order)."""
        for thread in threads:
            thread.join(timeout=5)
        assert self._late is not None
        for source in (self._queue, self._late):
            while True:
                try:
                    item = source.get_nowait()
                except queue.Empty:
                    break
                if item is not _DONE and not isinstance(item, BaseException):
                    yield item
