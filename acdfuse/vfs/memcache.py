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
from typing import Any

from cachetools import LRUCache


def _size(buf: memoryview) -> int:
    return buf.nbytes


ChunkKey = tuple[str, str, int]  # (node id, content key, chunk index)


class _LRU(LRUCache[ChunkKey, memoryview]):
    """An LRUCache that reports what it evicts on its own."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize=maxsize, getsizeof=_size)
        self.evicted: list[tuple[ChunkKey, memoryview]] = []

    def popitem(self) -> tuple[ChunkKey, memoryview]:
        key, value = super().popitem()
        self.evicted.append((key, value))
        return key, value


class MemoryCache:
    """Thread-safe byte-bounded LRU of ``memoryview`` chunks keyed by (node, content, index)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._lock = threading.Lock()
        self._lru: _LRU | None = _LRU(capacity) if capacity > 0 else None
        # id(buffer) -> keys of the cached slices of that buffer; the slices keep the buffer (and
        # so its id) alive for as long as an entry exists
        self._groups: dict[int, set[ChunkKey]] = {}
        self._by_node: dict[str, set[ChunkKey]] = {}  # so that a node's chunks go without a full scan

    @staticmethod
    def _base(buf: memoryview) -> Any:
        return buf.obj if buf.obj is not None else buf

    def get(self, key: ChunkKey) -> memoryview | None:
        if self._lru is None:
            return None
        with self._lock:
            return self._lru.get(key)

    def __contains__(self, key: object) -> bool:
        if self._lru is None:
            return False
        with self._lock:
            # ``in`` does not touch the LRU order: a read-ahead probe must not keep chunks alive
            return key in self._lru

    def put(self, key: ChunkKey, buf: memoryview) -> None:
        if self._lru is None or buf.nbytes > self._capacity:
            return
        with self._lock:
            old = self._lru.get(key)
            if old is not None:
                self._ungroup_locked(key, old)
            self._lru[key] = buf
            self._groups.setdefault(id(self._base(buf)), set()).add(key)
            self._by_node.setdefault(key[0], set()).add(key)
            self._drop_evicted_locked()

    def _ungroup_locked(self, key: ChunkKey, buf: memoryview) -> None:
        base_id = id(self._base(buf))
        keys = self._groups.get(base_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._groups[base_id]
        node_keys = self._by_node.get(key[0])
        if node_keys is not None:
            node_keys.discard(key)
            if not node_keys:
                del self._by_node[key[0]]

    def _drop_evicted_locked(self) -> None:
        assert self._lru is not None
        while self._lru.evicted:
            key, buf = self._lru.evicted.pop()
            self._ungroup_locked(key, buf)
            for sibling in self._groups.pop(id(self._base(buf)), set()):
                sibling_buf = self._lru.pop(sibling, None)
                if sibling_buf is not None:
                    self._ungroup_locked(sibling, sibling_buf)

    def discard_node(self, node_id: str, keep: str | None = None) -> int:
        """Drop the chunks of ``node_id`` (keys ``(node, content, index)``) except ``keep``'s content."""
        if self._lru is None:
            return 0
        with self._lock:
            keys = self._by_node.get(node_id)
            if not keys:
                return 0
            victims = [k for k in keys if k[1] != keep]
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
                self._by_node.clear()
