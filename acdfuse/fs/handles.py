"""File and directory handle tables, and the memory of what content the kernel has cached.

Lock order: HandleTable._lock is a leaf; nothing else is taken while it is held and no I/O runs under it.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class OpenFile:
    node_id: str
    content_key: str
    reader_handle: Any       # whatever ContentReader.open returned
    ino: int
    direct: bool = False     # opened with direct_io: its reads bypass the kernel's page cache
    node: Any = None         # the store's Node as opened: attributes of an fd whose node is gone
    write: Any = None        # a WriteSide handle: the file is read and written through its local copy
    path: str = ""           # the path it was opened at (see DriveOperations._opened_at)


@dataclass(frozen=True, slots=True)
class OpenMode:
    """How the kernel should treat the page cache for one open (fuse_file_info flags)."""

    keep_cache: bool
    direct_io: bool


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
        # The kernel has one page cache per inode, shared by all its open files. Per inode: the
        # content key its pages were filled under since the kernel last dropped them (an open without
        # keep_cache), and the inodes where a read under another key may have added pages since.
        self._page_key: dict[int, str] = {}
        self._mixed: set[int] = set()

    def add_file(self, entry: OpenFile, direct: bool = False) -> tuple[int, OpenMode]:
        """Register an open file; returns (fh, how the kernel should treat the inode's page cache).

        keep_cache only when every page the kernel may hold for the inode was read under this same
        content key; otherwise the open drops them (keep_cache false). While files of another content
        key are still open on the inode (a long-open handle across a remote overwrite), the new file
        gets direct_io as well: its reads bypass the shared page cache, so neither handle can see the
        other's bytes, and each keeps reading its own content version. ``direct``: direct_io in any
        case (the kernel may hold another size for the inode than this content's: kernelcache.py).
        """
        with self._lock:
            fh = next(self._next)
            ino, key = entry.ino, entry.content_key
            if entry.write is not None:
                # a local copy: its pages are dropped at every open (its bytes change under other
                # handles' writes), and it never gets direct_io, so a shared writable mmap works
                # (save where the kernel's size may be another: then the mmap gets ENODEV)
                self._page_key[ino] = key
                self._mixed.discard(ino)
                self._files[fh] = replace(entry, direct=direct)
                return fh, OpenMode(keep_cache=False, direct_io=direct)
            others = {f.content_key for f in self._files.values()
                      if f.ino == ino and not f.direct and f.write is None}
            if direct or others - {key}:
                mode = OpenMode(keep_cache=False, direct_io=True)
                # the drop at this open leaves the page cache to the other key's handles
                if len(others) == 1:
                    self._page_key[ino] = next(iter(others))
                    self._mixed.discard(ino)
                else:
                    self._mixed.add(ino)
            else:
                keep = self._page_key.get(ino) == key and ino not in self._mixed
                mode = OpenMode(keep_cache=keep, direct_io=False)
                if not keep:
                    self._page_key[ino] = key
                    self._mixed.discard(ino)
            self._files[fh] = replace(entry, direct=mode.direct_io)
            return fh, mode

    def note_read(self, entry: OpenFile) -> None:
        """A read reached us through ``entry``: pages under its key may now be in the page cache.

        By the rules of ``add_file`` only this inode's page-cache key reads through a cached file; a
        read under another key (a private mmap of a direct_io file goes through the page cache) makes
        the next open drop the pages rather than keep them.
        """
        if self._page_key.get(entry.ino) != entry.content_key and entry.ino not in self._mixed:
            with self._lock:
                self._mixed.add(entry.ino)

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

    def rename_paths(self, old: str, new: str) -> None:
        """A local rename: files opened at ``old`` (or below it) are open at the new path now."""
        prefix = old.rstrip("/") + "/"
        with self._lock:
            for fh, entry in list(self._files.items()):
                if entry.path == old:
                    self._files[fh] = replace(entry, path=new)
                elif entry.path.startswith(prefix):
                    self._files[fh] = replace(entry, path=new.rstrip("/") + "/" + entry.path[len(prefix):])

    def forget_content(self, ino: int) -> None:
        """The content of this inode changed: the next open must not keep the kernel's pages."""
        with self._lock:
            self._page_key.pop(ino, None)
            self._mixed.discard(ino)
