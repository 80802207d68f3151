"""LRU of resolved paths with precise invalidation.

A cached answer for ``/a/b/c`` depends on exactly the directory entries it looked up
((root, "a"), (a, "b"), (b, "c")) and on the node it returned. Writers report the entries they
removed or added and the node ids they changed; every cached path that used one of them is
dropped. Negative answers (no such path) are cached too and die when the missing entry appears.

Lock order: the store's write lock -> ``PathCache._lock``. Readers take only ``_lock``.
A reader takes a token before reading the database and may insert its answer only if no
invalidation happened since, so a slow reader can never put a stale answer back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from cachetools import LRUCache

from acdfuse.store.node import Node

Edge = tuple[str, str]
Entry = tuple["Node | None", tuple[Edge, ...]]


class _LRU(LRUCache[str, Entry]):
    """LRUCache that reports evictions, so the reverse indexes never point at dropped paths."""

    def __init__(self, maxsize: int, on_evict: Callable[[str, Entry], None]) -> None:
        super().__init__(maxsize)
        self._on_evict = on_evict

    def popitem(self) -> tuple[str, Entry]:
        key, value = super().popitem()
        self._on_evict(key, value)
        return key, value


class PathCache:
    def __init__(self, maxsize: int = 8192) -> None:
        self._lock = threading.Lock()
        self._maxsize = maxsize
        self._entries = _LRU(maxsize, self._unindex_locked)
        self._by_edge: dict[Edge, set[str]] = {}
        self._by_node: dict[str, set[str]] = {}
        self._epoch = 0

    def token(self) -> int:
        return self._epoch

    def get(self, path: str) -> Entry | None:
        with self._lock:
            return self._entries.get(path)

    def put(self, path: str, node: Node | None, edges: tuple[Edge, ...], token: int) -> None:
        with self._lock:
            if token != self._epoch:
                return
            if path in self._entries:
                self._unindex_locked(path, self._entries[path])
            self._entries[path] = (node, edges)
            for edge in edges:
                self._by_edge.setdefault(edge, set()).add(path)
            if node is not None:
                self._by_node.setdefault(node.id, set()).add(path)

    def _unindex_locked(self, path: str, entry: Entry) -> None:
        node, edges = entry
        for edge in edges:
            paths = self._by_edge.get(edge)
            if paths is not None:
                paths.discard(path)
                if not paths:
                    del self._by_edge[edge]
        if node is not None:
            paths = self._by_node.get(node.id)
            if paths is not None:
                paths.discard(path)
                if not paths:
                    del self._by_node[node.id]

    def invalidate(self, edges: Iterable[Edge], node_ids: Iterable[str]) -> int:
        """Drop every cached path that used one of ``edges`` or ended at one of ``node_ids``."""
        with self._lock:
            self._epoch += 1
            doomed: set[str] = set()
            for edge in edges:
                doomed.update(self._by_edge.get(edge, ()))
            for node_id in node_ids:
                doomed.update(self._by_node.get(node_id, ()))
            for path in doomed:
                entry = self._entries.pop(path, None)
                if entry is not None:
                    self._unindex_locked(path, entry)
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._entries = _LRU(self._maxsize, self._unindex_locked)
            self._by_edge.clear()
            self._by_node.clear()

    def __len__(self) -> int:
        return len(self._entries)
