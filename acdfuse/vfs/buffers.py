"""Page-aligned receive buffers for range fetches, reused once nobody holds them any more.

Why aligned: the disk tier writes chunks with O_DIRECT, which needs page-aligned memory. A plain
``bytearray`` never is (malloc puts a header first), so each chunk used to be copied into an aligned
bounce buffer first, with the GIL held (35% of all GIL-held time of a cold read). Here each buffer is
a ``bytearray`` one page larger than asked for, and what is handed out is the page-aligned
memoryview inside it. (Anonymous ``mmap`` memory would be aligned by itself, but measured it cost
more CPU than the copy it saves: every fresh or freed map is a run of page faults or an munmap with
TLB shootdowns across threads, where malloc keeps reusing its heap.)

Reuse: a fresh buffer's pages must still be faulted in by the kernel, so a buffer nobody references
any more takes the next body as it is. "Nobody" is read off CPython's reference count: every
memoryview of the buffer (a chunk in the memory cache, a queued disk write, a read copying from it)
holds a reference, so only the pool's own references are left on a free one.

Lock order: ``AlignedBuffers._lock`` is a leaf lock.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
import threading
from collections.abc import Callable

ALIGN = mmap.PAGESIZE


def _maker() -> Callable[[int], bytearray]:
    """``bytearray(n)`` without the zero-filling pass (the socket overwrites the bytes right after)."""
    try:
        make = ctypes.pythonapi.PyByteArray_FromStringAndSize
    except AttributeError:  # not CPython
        return bytearray
    make.restype = ctypes.py_object
    make.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    return lambda size: make(None, size)


_new = _maker()


def _aligned_offset(buf: bytearray) -> int:
    address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    return -address % ALIGN


class AlignedBuffers:
    """Hands out writable, page-aligned memoryviews of exactly the size asked for."""

    # references of a free buffer, as ``sys.getrefcount(entry[0])`` counts them: its entry in the
    # pool's list and the call's own argument
    _FREE_REFS = 2

    def __init__(self, max_idle: int = 32 * 1024 * 1024, max_tracked: int = 1024 * 1024 * 1024) -> None:
        self._max_idle = max_idle
        self._max_tracked = max_tracked
        self._lock = threading.Lock()
        self._bufs: list[tuple[bytearray, int, int]] = []  # (buffer, aligned offset, usable size)
        self._reuse = hasattr(sys, "getrefcount")

    def get(self, size: int) -> memoryview:
        if not self._reuse:
            return self._view(*self._fresh(size))
        with self._lock:
            found: tuple[bytearray, int, int] | None = None
            idle = tracked = 0
            keep: list[tuple[bytearray, int, int]] = []
            for entry in self._bufs:
                if sys.getrefcount(entry[0]) == self._FREE_REFS:
                    if found is None and entry[2] == size:
                        found = entry
                    elif idle + entry[2] > self._max_idle:
                        continue  # dropped: freed once the old list goes
                    else:
                        idle += entry[2]
                keep.append(entry)
                tracked += entry[2]
            if found is None:
                found = self._fresh(size)
                if tracked + size <= self._max_tracked:
                    keep.append(found)
            self._bufs = keep
        return self._view(*found)

    @staticmethod
    def _fresh(size: int) -> tuple[bytearray, int, int]:
        buf = _new(size + ALIGN)
        return buf, _aligned_offset(buf), size

    @staticmethod
    def _view(buf: bytearray, offset: int, size: int) -> memoryview:
        return memoryview(buf)[offset:offset + size]

    def idle_bytes(self) -> int:
        """Bytes of free buffers kept for reuse (tests)."""
        with self._lock:
            return sum(entry[2] for entry in self._bufs if sys.getrefcount(entry[0]) == self._FREE_REFS)
