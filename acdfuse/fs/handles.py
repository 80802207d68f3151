"""File and directory handle tables, and the memory of what content the kernel has cached.

Lock order: HandleTable._lock is a leaf; nothing else is taken while it is held and no I/O runs under it.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class OpenFile:
    node_id: str
    content_key: str
    reader_handle: Any       # whatever ContentReader.open returned
    ino: int


@dataclass(frozen=True, slots=True)
class OpenDir:
    node_id: str


class HandleTable:
    """Maps the integer handles FUSE passes around to open files and folders."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = itertools.count(1)
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, OpenDir] = {}
        # inode -> content key the kernel's page cache was last filled from; used to decide keep_cache
        self._cached_content: dict[int, str] = {}

    def add_file(self, entry: OpenFile) -> tuple[int, bool]:
        """Register an open file; returns (fh, keep_cache).

        keep_cache is true when the kernel may keep the pages it holds for this inode: only when the
        last open of the inode saw the same content. A changed file gets keep_cache false, which makes
        the kernel drop its pages, so stale bytes are never served from the page cache.
        """
        with self._lock:
            fh = next(self._next)
            self._files[fh] = entry
            keep = self._cached_content.get(entry.ino) == entry.content_key
            self._cached_content[entry.ino] = entry.content_key
            return fh, keep

    def file(self, fh: int) -> OpenFile | None:
        return self._files.get(fh)

    def pop_file(self, fh: int) -> OpenFile | None:
        with self._lock:
            return self._files.pop(fh, None)

    def add_dir(self, entry: OpenDir) -> int:
        with self._lock:
            fh = next(self._next)
            self._dirs[fh] = entry
            return fh

    def dir(self, fh: int) -> OpenDir | None:
        return self._dirs.get(fh)

    def pop_dir(self, fh: int) -> OpenDir | None:
        with self._lock:
            return self._dirs.pop(fh, None)

    def open_files(self) -> list[OpenFile]:
        with self._lock:
            return list(self._files.values())

    def forget_content(self, ino: int) -> None:
        """The content of this inode changed: the next open must not keep the kernel's pages."""
        with self._lock:
            self._cached_content.pop(ino, None)
