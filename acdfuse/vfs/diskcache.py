"""Disk tier of the chunk cache: one file per chunk under ``cache_dir``, LRU, a strict byte budget.

A chunk file is named ``<node hex>.<content digest>.<index>.<crc32>.c``; the name alone rebuilds
the index after a restart (LRU order from mtimes, refreshed on every hit), and the crc32 plus the
expected length catch torn or corrupted files, which are dropped and never served.

The budget counts every file in its filesystem blocks plus a directory-entry allowance, from the
moment space is reserved for a write until the file is really unlinked.  Files being read are
pinned and never evicted under a reader, so the cap holds with open files included.

A full disk (ENOSPC/EDQUOT) turns writes off for a while with a warning; reads of what is
already cached go on, and the caller keeps the data in memory, so no read is lost.

Lock order: ``DiskCache._lock`` is a leaf lock; no file-system call is made while it is held.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

try:
    # ISA-L's CRC-32 gives the same values as zlib's (same polynomial, so chunk names stay valid) at
    # about 4x the speed: on a cold read the checksum of every fetched byte was a quarter of the
    # mount's CPU time.
    from isal.isal_zlib import crc32
except ImportError:  # no wheel for this platform
    from zlib import crc32

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_FORMAT_FILE = "format.json"
_CHUNK_DIR = "chunks"
_SUFFIX = ".c"
# Rough size of one directory entry with our ~100-character names; counted against the budget
# so that a directory full of small chunks still stays under the cap.
_ENTRY_OVERHEAD = 128
# Space taken by the cache directory itself, the chunk directory and the format file.
_FIXED_OVERHEAD = 3 * 4096
# How long writes stay off after the disk filled up, before one write tries again.
_FULL_BACKOFF = 30.0

Stem = tuple[str, str, int]  # (node id in hex, digest of content key, chunk index)


_ALIGN = 4096  # O_DIRECT wants buffer, offset and length in multiples of the device block
# copied 1 MiB at a time: the copy holds the GIL, the write (and its wait for the device) does not
_BOUNCE_MAX = 1024 * 1024


class _Bounce(threading.local):
    """A page-aligned buffer per writer thread, reused for every write (no fresh pages per chunk)."""

    buf: mmap.mmap | None = None


_bounce = _Bounce()
_direct_ok = hasattr(os, "O_DIRECT")


def _bounce_buffer(size: int) -> mmap.mmap:
    buf = _bounce.buf
    if buf is None or len(buf) < size:
        if buf is not None:
            buf.close()
        buf = _bounce.buf = mmap.mmap(-1, size)
    return buf


def _pwrite_all(fd: int, data: memoryview, offset: int, path: Path) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        if not written:
            raise OSError(errno.EIO, f"write to {path} made no progress")
        data = data[written:]
        offset += written


def _write_file(path: Path, data: memoryview) -> None:
    """Write a new file (no fsync: a torn file after a crash fails its checksum and is refetched).

    The block-aligned bulk goes with O_DIRECT from a reused aligned buffer: a buffered write would
    first fault in fresh page-cache pages and later cost the kernel a writeback pass, which on a
    small machine takes the CPU from the reads this cache is filled by. The tail (and filesystems
    without O_DIRECT, e.g. tmpfs) go the buffered way.
    """
    global _direct_ok
    n = data.nbytes
    bulk = n - n % _ALIGN if _direct_ok else 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = -1
    if bulk:
        try:
            fd = os.open(path, flags | os.O_DIRECT, 0o600)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _direct_ok = False  # this filesystem refuses O_DIRECT: buffered from now on
            log.debug("disk cache: no O_DIRECT on %s; buffered writes", path.parent)
            bulk = 0
    if fd < 0:
        fd = os.open(path, flags, 0o600)
    try:
        pos = 0
        if bulk:
            bounce = _bounce_buffer(min(bulk, _BOUNCE_MAX))
            window = memoryview(bounce)
            try:
                while pos < bulk:
                    k = min(len(bounce), bulk - pos)
                    window[:k] = data[pos : pos + k]
                    _pwrite_all(fd, window[:k], pos, path)
                    pos += k
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # opened with O_DIRECT but refused the write (some FUSE/network filesystems)
                _direct_ok = False
                log.debug("disk cache: O_DIRECT writes refused on %s; buffered writes", path.parent)
                pos = 0
            finally:
                window.release()
            if pos < n:
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        if pos < n:
            _pwrite_all(fd, data[pos:], pos, path)
    finally:
        os.close(fd)


def content_digest(content_key: str) -> str:
    return hashlib.blake2b(content_key.encode(), digest_size=8).hexdigest()


def make_stem(node_id: str, content_key: str, index: int) -> Stem:
    return (node_id.encode().hex(), content_digest(content_key), index)


@dataclass(eq=False)
class _Entry:
    stem: Stem
    name: str
    length: int
    cost: int
    crc: int
    ready: bool = False
    pins: int = 0
    doomed: bool = False  # out of the index; unlink (and uncount) once no reader holds it


class DiskCache:
    """Persistent chunk store with LRU eviction under a hard byte budget."""

    def __init__(self, root: Path, capacity: int, chunk_size: int) -> None:
        self._root = Path(root)
        self._dir = self._root / _CHUNK_DIR
        self._capacity = capacity
        self._chunk_size = chunk_size
        self._block = 4096
        self._lock = threading.Lock()
        self._index: OrderedDict[Stem, _Entry] = OrderedDict()  # LRU first
        self._by_node: dict[str, set[Stem]] = {}
        self._used = _FIXED_OVERHEAD  # bytes counted against capacity, doomed files included
        self._writes_off_until = 0.0
        self._enabled = False
        self.corrupt = 0  # entries found damaged and dropped (for stats/tests)

    # ---- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Create or reopen the cache directory and rebuild the index from the chunk files."""
        if self._capacity <= _FIXED_OVERHEAD:
            return
        try:
            # private: chunk files are the user's file contents (files themselves are 0600)
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._block = max(512, os.statvfs(self._dir).f_frsize)
            self._check_format()
            self._scan()
        except OSError as exc:
            log.warning("disk cache %s unusable (%s); caching in memory only", self._root, exc)
            return
        self._enabled = True
        log.debug("disk cache %s: %d chunks, %d of %d bytes", self._root, len(self._index), self._used,
                  self._capacity)

    def _check_format(self) -> None:
        fmt_path = self._root / _FORMAT_FILE
        want = {"version": FORMAT_VERSION, "chunk_size": self._chunk_size}
        try:
            have = json.loads(fmt_path.read_text())
        except FileNotFoundError:
            have = None
        except (OSError, ValueError) as exc:
            log.warning("disk cache format file %s unreadable (%s); starting empty", fmt_path, exc)
            have = {}
        if have != want:
            if have is not None:
                log.warning("disk cache %s has format %s, need %s; dropping its chunks",
                            self._root, have, want)
                for entry in os.scandir(self._dir):
                    os.unlink(entry.path)
            tmp = fmt_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(want))
            os.replace(tmp, fmt_path)

    def _scan(self) -> None:
        found: list[tuple[float, _Entry]] = []
        for dirent in os.scandir(self._dir):
            entry = self._parse(dirent.name)
            if entry is None:
                # our own leftovers (a write cut by a crash) or foreign files: not ours to keep
                log.debug("disk cache: removing stray %s", dirent.name)
                os.unlink(dirent.path)
                continue
            st = dirent.stat()
            entry.length = st.st_size
            entry.cost = self._cost(st.st_size)
            entry.ready = True
            found.append((st.st_mtime, entry))
        found.sort(key=lambda item: item[0])
        for _, entry in found:
            self._add_locked(entry)
        while self._used > self._capacity and self._index:
            _, victim = self._index.popitem(last=False)
            self._forget_node_locked(victim)
            os.unlink(self._dir / victim.name)
            self._used -= victim.cost

    @staticmethod
    def _parse(name: str) -> _Entry | None:
        if not name.endswith(_SUFFIX):
            return None
        parts = name[: -len(_SUFFIX)].split(".")
        if len(parts) != 4:
            return None
        node_hex, digest, index, crc = parts
        try:
            stem = (node_hex, digest, int(index))
            return _Entry(stem=stem, name=name, length=0, cost=0, crc=int(crc, 16))
        except ValueError:
            return None

    def _cost(self, length: int) -> int:
        return -(-length // self._block) * self._block + _ENTRY_OVERHEAD

    # ---- index helpers (lock held) ------------------------------------------------------------

    def _add_locked(self, entry: _Entry) -> None:
        self._index[entry.stem] = entry
        self._by_node.setdefault(entry.stem[0], set()).add(entry.stem)
        self._used += entry.cost

    def _forget_node_locked(self, entry: _Entry) -> None:
        stems = self._by_node.get(entry.stem[0])
        if stems is not None:
            stems.discard(entry.stem)
            if not stems:
                del self._by_node[entry.stem[0]]

    def _doom_locked(self, entry: _Entry) -> bool:
        """Take an entry out of the index; True if the caller must unlink it now."""
        if self._index.get(entry.stem) is entry:
            del self._index[entry.stem]
            self._forget_node_locked(entry)
        entry.doomed = True
        return entry.pins == 0 and entry.ready

    def _unlink(self, entries: list[_Entry]) -> None:
        """Remove files of doomed entries, then stop counting them (never the other way round)."""
        if not entries:
            return
        freed = 0
        for entry in entries:
            try:
                os.unlink(self._dir / entry.name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                # still counted: better a smaller cache than a broken cap
                log.warning("disk cache: cannot remove %s: %s", entry.name, exc)
                continue
            freed += entry.cost
        with self._lock:
            self._used -= freed

    # ---- public ----------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._enabled

    def contains(self, stem: Stem) -> bool:
        with self._lock:
            entry = self._index.get(stem)
            return entry is not None and entry.ready

    def get(self, stem: Stem, length: int) -> memoryview | None:
        """The chunk's bytes if a sound copy of ``length`` bytes is on disk, else None."""
        if not self._enabled:
            return None
        with self._lock:
            entry = self._index.get(stem)
            if entry is None or not entry.ready:
                return None
            entry.pins += 1
            self._index.move_to_end(stem)
        path = self._dir / entry.name
        data: bytes | None = None
        problem = ""
        try:
            with open(path, "rb", buffering=0) as fh:
                if os.fstat(fh.fileno()).st_size != length:
                    problem = "wrong size"
                else:
                    # read() into a new bytes object: no zero-filling pass as with bytearray+readinto
                    data = fh.read(length)
                    if len(data) != length:
                        problem = "short file"
                    elif crc32(data) != entry.crc:
                        problem = "checksum mismatch"
            if not problem:
                # mtime carries the LRU order over a restart
                os.utime(path)
        except OSError as exc:
            problem = f"unreadable ({exc})"
        finally:
            with self._lock:
                entry.pins -= 1
                if problem:
                    self.corrupt += 1
                    self._doom_locked(entry)
                release = entry.doomed and entry.pins == 0
        if release:
            self._unlink([entry])
        if problem:
            log.warning("disk cache: dropping chunk %s: %s", entry.name, problem)
            return None
        assert data is not None
        return memoryview(data)

    def put(self, stem: Stem, data: memoryview) -> bool:
        """Store a chunk if the budget allows; False if it was not stored (never an error)."""
        entry = self._reserve(stem, data.nbytes, lambda: crc32(data))
        if entry is None:
            return False
        tmp = self._dir / (entry.name + ".tmp")
        try:
            _write_file(tmp, data)
            os.replace(tmp, self._dir / entry.name)
        except OSError as exc:
            self._write_failed(entry, exc, tmp)
            return False
        return self._made_ready(entry)

    def take(self, stem: Stem, path: Path, length: int) -> bool:
        """Make the file at ``path`` the chunk by renaming it into the cache: no second copy of its bytes,
        and no new file. It must hold exactly ``length`` bytes that nobody changes any more, on the cache's
        filesystem. False (and the file left where it is) when it was not taken."""
        if not self._enabled or time.monotonic() < self._writes_off_until:
            return False
        try:
            with open(path, "rb", buffering=0) as fh:
                data = fh.read(length + 1)
        except OSError as exc:
            log.debug("disk cache: cannot read %s to take it: %s", path, exc)
            return False
        if len(data) != length:
            return False
        entry = self._reserve(stem, length, lambda: crc32(data))
        if entry is None:
            return False
        try:
            os.rename(path, self._dir / entry.name)
        except OSError as exc:
            self._write_failed(entry, exc)       # EXDEV: another filesystem; the caller copies instead
            return False
        return self._made_ready(entry)

    def _reserve(self, stem: Stem, length: int, crc_of: Callable[[], int]) -> _Entry | None:
        """Count a new chunk against the budget (evicting LRU chunks for room): its entry, not readable
        until ``_made_ready``; None when it is not to be stored."""
        if not self._enabled or time.monotonic() < self._writes_off_until:
            return None
        crc = crc_of()
        entry = _Entry(stem=stem, name=f"{stem[0]}.{stem[1]}.{stem[2]}.{crc:08x}{_SUFFIX}", length=length,
                       cost=self._cost(length), crc=crc)
        if entry.cost + _FIXED_OVERHEAD > self._capacity:
            return None
        for _attempt in range(4):
            victims: list[_Entry] = []
            with self._lock:
                if stem in self._index:
                    return None
                if self._used + entry.cost <= self._capacity:
                    self._add_locked(entry)  # reserved; not readable until ready
                    return entry
                room = self._capacity - self._used
                for victim in self._index.values():
                    if room >= entry.cost:
                        break
                    if victim.ready and victim.pins == 0:
                        victims.append(victim)
                        room += victim.cost
                if room < entry.cost:
                    # what is left is pinned or being written: skip this chunk rather than overshoot
                    return None
                for victim in victims:
                    self._doom_locked(victim)
            self._unlink(victims)
            if not victims:
                return None
        return None

    def _made_ready(self, entry: _Entry) -> bool:
        with self._lock:
            entry.ready = True
            release = entry.doomed and entry.pins == 0
        if release:
            self._unlink([entry])
        return True

    def _write_failed(self, entry: _Entry, exc: OSError, tmp: Path | None = None) -> None:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError as unlink_exc:
                log.warning("disk cache: cannot remove %s: %s", tmp, unlink_exc)
        with self._lock:
            if self._index.get(entry.stem) is entry:
                del self._index[entry.stem]
                self._forget_node_locked(entry)
            self._used -= entry.cost
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self._writes_off_until = time.monotonic() + _FULL_BACKOFF
            log.warning("disk cache %s is full (%s); caching in memory only for %.0f s",
                        self._root, exc, _FULL_BACKOFF)
        elif tmp is None:
            log.debug("disk cache: cannot move %s in: %s", entry.name, exc)
        else:
            log.warning("disk cache: cannot write %s: %s", entry.name, exc)

    def invalidate(self, node_id: str, keep_content: str | None = None) -> int:
        """Drop a node's chunks, except those of ``keep_content``; returns how many went."""
        node_hex = node_id.encode().hex()
        keep = content_digest(keep_content) if keep_content is not None else None
        unlink_now: list[_Entry] = []
        dropped = 0
        with self._lock:
            for stem in list(self._by_node.get(node_hex, ())):
                if stem[1] == keep:
                    continue
                entry = self._index[stem]
                dropped += 1
                if self._doom_locked(entry):
                    unlink_now.append(entry)
        self._unlink(unlink_now)
        return dropped

    def discard(self, stem: Stem) -> None:
        """Drop one chunk if present."""
        with self._lock:
            entry = self._index.get(stem)
            unlink_now = entry is not None and self._doom_locked(entry)
        if unlink_now:
            assert entry is not None
            self._unlink([entry])

    def prune(self, target: int) -> int:
        """Drop least recently used chunks until at most ``target`` bytes are counted (0: all that no
        reader holds); returns how many went. Chunks being read or written stay."""
        unlink_now: list[_Entry] = []
        dropped = 0
        with self._lock:
            used = self._used
            for entry in list(self._index.values()):
                if used <= target:
                    break
                if not entry.ready or entry.pins:
                    continue
                used -= entry.cost
                dropped += 1
                if self._doom_locked(entry):
                    unlink_now.append(entry)
        self._unlink(unlink_now)
        return dropped

    @property
    def used(self) -> int:
        with self._lock:
            return self._used

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)


def open_offline(root: Path) -> DiskCache | None:
    """The disk cache under ``root`` for ``acdfuse cache`` while no mount uses it (None: no cache
    there yet), indexed with its own recorded chunk size and no budget of its own."""
    try:
        have = json.loads((root / _FORMAT_FILE).read_text())
        chunk_size = int(have["chunk_size"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OSError(f"{root / _FORMAT_FILE} is unreadable: {exc}") from exc
    cache = DiskCache(root, 1 << 62, chunk_size)
    cache.start()
    return cache if cache.enabled else None
