"""A small thread-safe LRU map, bounded in entries and optionally in total weight."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """Least recently used entries are dropped first, once there are more than ``limit`` or
    their weights (``weigh``, 0 by default) add up to more than ``limit_weight``. A value
    heavier than ``limit_weight`` on its own is not kept."""

    def __init__(
        self,
        limit: int,
        limit_weight: int = 0,
        weigh: Callable[[V], int] = lambda value: 0,
    ) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._weight = 0
        self._limit = limit
        self._limit_weight = limit_weight
        self._weigh = weigh

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(value)
        if self._limit_weight and weight > self._limit_weight:
            return
        with self._lock:
            self._pop(key)
            self._entries[key] = value
            self._weight += weight
            while len(self._entries) > self._limit or (
                self._limit_weight and self._weight > self._limit_weight
            ):
                self._pop(next(iter(self._entries)))

    def pop(self, key: K) -> None:
        with self._lock:
            self._pop(key)

    def take(self, key: K) -> V | None:
        """The value kept for ``key``, no longer kept (None when there is none)."""
        with self._lock:
            value = self._entries.get(key)
            self._pop(key)
            return value

    def _pop(self, key: K) -> None:
        value = self._entries.pop(key, None)
        if value is not None:
            self._weight -= self._weigh(value)
