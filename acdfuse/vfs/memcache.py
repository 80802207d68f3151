"""Memory tier of the chunk cache: an LRU of read-only chunk buffers bounded in bytes.

Lock order: ``MemoryCache._lock`` is a leaf lock; nothing else is taken while it is held and no
I/O happens under it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

from cachetools import LRUCache


def _size(buf: memoryview) -> int:
    return buf.nbytes


class MemoryCache:
    """Thread-safe byte-bounded LRU of ``memoryview`` chunks keyed by any hashable chunk key.

    Values are read-only memoryviews so that a chunk sliced out of a larger range response is
    kept without copying; ``nbytes`` is what counts against the budget.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._lru: LRUCache[Hashable, memoryview] | None = (
            LRUCache(maxsize=capacity, getsizeof=_size) if capacity > 0 else None
        )

    def get(self, key: Hashable) -> memoryview | None:
        if self._lru is None:
            return None
        with self._lock:
            return self._lru.get(key)

    def __contains__(self, key: Hashable) -> bool:
        if self._lru is None:
            return False
        with self._lock:
            # ``in`` does not touch the LRU order: a read-ahead probe must not keep chunks alive.
            return key in self._lru

    def put(self, key: Hashable, buf: memoryview) -> None:
        if self._lru is None or buf.nbytes > self._capacity:
            return
        with self._lock:
            self._lru[key] = buf

    def discard_if(self, predicate: Callable[[Hashable], bool]) -> int:
        """Drop every key for which ``predicate(key)`` is true; returns how many went."""
        if self._lru is None:
            return 0
        with self._lock:
            victims = [k for k in self._lru.keys() if predicate(k)]
            for k in victims:
                del self._lru[k]
        return len(victims)

    @property
    def nbytes(self) -> int:
        if self._lru is None:
            return 0
        with self._lock:
            return int(self._lru.currsize)

    def clear(self) -> None:
        if self._lru is not None:
            with self._lock:
                self._lru.clear()
