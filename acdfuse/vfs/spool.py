"""Spool files: the local copy of a dirty file, one plain sparse file each, plus which bytes are real.

A spool starts as a hole the size of the file. Bytes become *local* when written, when fetched from
the content the file was based on, or when a truncate makes them zeros; only the bytes below
``base_limit`` that are not local still live on the server. Reads and the upload fill those on
demand through a ``FillBase`` callable (the base content's bytes, pinned to its version), so an
``O_TRUNC`` rewrite or a write that covers what is read later never downloads anything.

The spool is not the read cache: nothing evicts it. It is deleted only once its content is confirmed
on the server, or when its file is gone for good.

Lock order: ``Spool.lock`` is per file and a leaf. It is held across this file's ``pwrite`` and
``ftruncate`` (as the kernel holds an inode's lock across a write: a truncate must never interleave
with a write of the same file), never across a fetch or any network I/O.
"""

from __future__ import annotations

import bisect
import errno
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

# fill(offset, length) -> exactly those bytes of the base content (short only at its end)
FillBase = Callable[[int, int], "bytes | bytearray | memoryview"]

# the largest piece fetched from the base in one call: bounded memory however big the hole
FILL_PIECE = 8 * 1024 * 1024


class RangeSet:
    """Disjoint, sorted half-open ranges [start, end) with merge-on-add."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return len(self._starts)

    def pairs(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        # every range touching [start, end] (adjacent ones too) merges into one
        lo = bisect.bisect_left(self._ends, start)
        hi = bisect.bisect_right(self._starts, end)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def clip(self, limit: int) -> None:
        """Drop everything at or past ``limit``."""
        i = bisect.bisect_left(self._ends, limit + 1)
        del self._starts[i + 1:]
        del self._ends[i + 1:]
        if i < len(self._starts):
            if self._starts[i] >= limit:
                del self._starts[i]
                del self._ends[i]
            else:
                self._ends[i] = min(self._ends[i], limit)

    def missing(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of [start, end) not covered."""
        gaps: list[tuple[int, int]] = []
        pos = start
        i = bisect.bisect_right(self._ends, start)
        while pos < end and i < len(self._starts):
            s, e = self._starts[i], self._ends[i]
            if s >= end:
                break
            if s > pos:
                gaps.append((pos, s))
            pos = max(pos, e)
            i += 1
        if pos < end:
            gaps.append((pos, end))
        return gaps

    def covers(self, start: int, end: int) -> bool:
        return not self.missing(start, end)


class Spool:
    """One dirty file's local copy (see the module docstring).

    ``size`` is the file's logical size; the spool file always has exactly that size. ``base_limit``
    is the number of leading bytes that may still come from the base content: the base's size at
    first, lowered by every truncate (bytes past a truncate point are zeros or written, never base).
    """

    def __init__(self, path: Path, *, size: int | None, base_limit: int,
                 ranges: Iterable[tuple[int, int]] = (), create: bool) -> None:
        """``size`` None: the file's own size (a spool whose last writes the journal never saw)."""
        self.path = Path(path)
        self.lock = threading.Lock()
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT | os.O_TRUNC if create else 0)
        self._fd = os.open(self.path, flags, 0o600)
        try:
            if size is None:
                size = os.fstat(self._fd).st_size
            self.size = size
            self.base_limit = min(base_limit, size)
            self.local = RangeSet(ranges)
            self.local.clip(size)
            if os.fstat(self._fd).st_size != size:
                os.ftruncate(self._fd, size)
        except BaseException:
            os.close(self._fd)
            raise
        self._closed = False

    @property
    def fd(self) -> int:
        return self._fd

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def delete(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    # ---- state -------------------------------------------------------------------------------
    def missing_locked(self, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
        """Byte ranges in [start, end) that must still come from the base content."""
        stop = min(self.base_limit if end is None else end, self.base_limit)
        if stop <= start:
            return []
        return self.local.missing(start, stop)

    def complete(self) -> bool:
        with self.lock:
            return not self.missing_locked()

    def snapshot(self) -> tuple[int, int, list[tuple[int, int]]]:
        """(size, base_limit, local ranges) for the journal."""
        with self.lock:
            return self.size, self.base_limit, self.local.pairs()

    # ---- writing -----------------------------------------------------------------------------
    def write(self, offset: int, data: bytes | memoryview, append: bool = False) -> int:
        """Write at ``offset`` (at the end with ``append``, decided under the lock)."""
        if offset < 0:
            raise OSError(errno.EINVAL, "negative write offset")
        n = len(data)
        if n == 0:
            return 0
        with self.lock:
            if append:
                offset = self.size
            try:
                _pwrite_all(self._fd, data, offset)
            except OSError:
                if offset + n > self.size:
                    # a write past the end that failed (a full disk) leaves no half-written tail
                    os.ftruncate(self._fd, self.size)
                raise
            end = offset + n
            if end > self.size:
                # the hole between the old end and this write reads as zeros: local, not base
                self.local.add(self.size, offset)
                self.size = end
            self.local.add(offset, end)
        return n

    def truncate(self, size: int) -> None:
        if size < 0:
            raise OSError(errno.EINVAL, "negative size")
        with self.lock:
            os.ftruncate(self._fd, size)
            if size < self.size:
                self.local.clip(size)
            else:
                self.local.add(self.size, size)   # zeros, as a local file would read
            self.base_limit = min(self.base_limit, size)
            self.size = size

    # ---- reading -----------------------------------------------------------------------------
    def read(self, offset: int, length: int, fill: FillBase | None) -> bytes:
        """Up to ``length`` bytes at ``offset`` (short only at the end), fetching base bytes first."""
        if offset < 0 or length < 0:
            raise OSError(errno.EINVAL, f"bad read range {offset}+{length}")
        with self.lock:
            end = min(offset + length, self.size)
            gaps = self.missing_locked(offset, end)
        if gaps:
            self.fill(gaps, fill)
        if end <= offset:
            return b""
        return _pread_all(self._fd, end - offset, offset)

    def fill_all(self, fill: FillBase | None) -> int:
        """Fetch every byte still missing (before an upload); returns how many were fetched."""
        with self.lock:
            gaps = self.missing_locked()
        return self.fill(gaps, fill)

    def fill(self, gaps: list[tuple[int, int]], fill: FillBase | None) -> int:
        fetched = 0
        for start, end in gaps:
            pos = start
            while pos < end:
                want = min(FILL_PIECE, end - pos)
                if fill is None:
                    raise OSError(errno.EIO, f"{self.path}: bytes {pos}-{pos + want - 1} of the base "
                                             f"content are not local and there is nothing to fetch them from")
                data = memoryview(fill(pos, want)).cast("B")
                if len(data) != want:
                    raise OSError(errno.EIO, f"{self.path}: the base content gave {len(data)} of {want} "
                                             f"bytes at {pos}")
                self._put_base(pos, data)
                fetched += want
                pos += want
        return fetched

    def _put_base(self, offset: int, data: memoryview) -> None:
        """Write fetched base bytes where nothing newer landed meanwhile (a write wins over a fill)."""
        with self.lock:
            end = min(offset + len(data), self.base_limit)
            for start, stop in self.missing_locked(offset, end):
                _pwrite_all(self._fd, data[start - offset:stop - offset], start)
                self.local.add(start, stop)

    def reader(self, size: int) -> SpoolReader:
        """A file-like reader of the first ``size`` bytes, for a streamed upload."""
        return SpoolReader(self._fd, size)


class SpoolReader:
    """A read-only, seekable stream over a spool's fd with its own position (pread, no shared offset)."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        if n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = _pread_all(self._fd, n, self._pos)
        self._pos += len(data)
        return data


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break   # the file is shorter than its logical size: only after a crash mid-truncate
        parts.append(more)
        got += len(more)
    out = b"".join(parts)
    return out + bytes(length - len(out))


class SpoolPool:
    """Empty spool files made ahead of need by a background thread.

    Creating a file in the spool dir (a directory entry and an inode: filesystem journal work) was the
    largest single cost of a new small file in the mount: 10,000 small files spent about a fifth of the
    mount's busy time there. A create takes a file made ahead (opening an existing file is a lookup),
    and the thread makes the next ones meanwhile, with the GIL released in the kernel. Files made and
    never taken have no journal row: the next start deletes them with the other orphans.

    Lock order: ``SpoolPool._cond`` is a leaf; no file is created while it is held.
    """

    def __init__(self, directory: Path, take_id: Callable[[], int], low: int = 64, high: int = 256) -> None:
        self._dir = Path(directory)
        self._take_id = take_id
        self._low, self._high = low, high
        self._cond = threading.Condition(threading.Lock())
        self._ready: list[tuple[int, Path]] = []
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._fill, name="acdfuse-spool-pool", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)

    def take(self) -> tuple[int, Path] | None:
        """(local id, path of an empty spool file) made ahead, or None when none is ready."""
        with self._cond:
            item = self._ready.pop() if self._ready else None
            if len(self._ready) < self._low:
                self._cond.notify_all()
        return item

    def _fill(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and len(self._ready) >= self._low:
                    self._cond.wait()
                if self._stopping:
                    return
                want = self._high - len(self._ready)
            made = 0
            for _ in range(want):
                local_id = self._take_id()
                path = self._dir / str(local_id)
                try:
                    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600))
                except OSError:
                    break           # a full disk: the creates make their own files (and say ENOSPC)
                made += 1
                # each file is offered as soon as it exists: a burst of creates right after the
                # start (or after the pool ran dry) must not wait for a whole batch
                with self._cond:
                    self._ready.append((local_id, path))
            if not made:
                with self._cond:
                    # nothing could be made: wait for a take (or the stop) before trying again
                    self._cond.wait()
