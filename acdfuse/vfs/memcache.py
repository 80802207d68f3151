"""Memory tier of the chunk cache: an LRU of read-only chunk buffers bounded in bytes.

Chunks cut from one range response are memoryview slices of that response's buffer (no copy:
copying every chunk costs CPU and, worse, fragments the heap).  A slice keeps its whole buffer
alive, so when any chunk of a buffer is evicted its siblings go with it; the byte budget then
bounds the buffers really held, not just the slices.

Lock order: ``MemoryCache._lock`` is a leaf lock; nothing else is taken while it is held and no
I/O happens under it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from cachetools import LRUCache


def _size(buf: memoryview) -> int:
    return buf.nbytes


class _LRU(LRUCache[Hashable, memoryview]):
    """An LRUCache that reports what it evicts on its own."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize=maxsize, getsizeof=_size)
        self.evicted: list[tuple[Hashable, memoryview]] = []

    def popitem(self) -> tuple[Hashable, memoryview]:
        key, value = super().popitem()
        self.evicted.append((key, value))
        return key, value


class MemoryCache:
    """Thread-safe byte-bounded LRU of ``memoryview`` chunks keyed by any hashable chunk key."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._lru: _LRU | None = _LRU(capacity) if capacity > 0 else None
        # id(buffer) -> keys of the cached slices of that buffer; the slices keep the buffer (and
        # so its id) alive for as long as an entry exists
        self._groups: dict[int, set[Hashable]] = {}

    @staticmethod
    def _base(buf: memoryview) -> Any:
        return buf.obj if buf.obj is not None else buf

    def get(self, key: Hashable) -> memoryview | None:
        if self._lru is None:
            return None
        with self._lock:
            return self._lru.get(key)

    def __contains__(self, key: Hashable) -> bool:
        if self._lru is None:
            return False
        with self._lock:
            # ``in`` does not touch the LRU order: a read-ahead probe must not keep chunks alive
            return key in self._lru

    def put(self, key: Hashable, buf: memoryview) -> None:
        if self._lru is None or buf.nbytes > self._capacity:
            return
        with self._lock:
            old = self._lru.get(key)
            if old is not None:
                self._ungroup_locked(key, old)
            self._lru[key] = buf
            self._groups.setdefault(id(self._base(buf)), set()).add(key)
            self._drop_evicted_locked()

    def _ungroup_locked(self, key: Hashable, buf: memoryview) -> None:
        base_id = id(self._base(buf))
        keys = self._groups.get(base_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._groups[base_id]

    def _drop_evicted_locked(self) -> None:
        assert self._lru is not None
        while self._lru.evicted:
            key, buf = self._lru.evicted.pop()
            base_id = id(self._base(buf))
            for sibling in self._groups.pop(base_id, set()):
                if sibling != key:
                    self._lru.pop(sibling, None)

    def discard_if(self, predicate: Callable[[Hashable], bool]) -> int:
        """Drop every key for which ``predicate(key)`` is true; returns how many went."""
        if self._lru is None:
            return 0
        with self._lock:
            victims = [k for k in self._lru.keys() if predicate(k)]
            for key in victims:
                self._ungroup_locked(key, self._lru.pop(key))
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
                self._lru.evicted.clear()
                self._groups.clear()
