"""The content read path: file reads served from a two-tier chunk cache, fed by range fetches.

``ContentReader`` knows nothing of FUSE or HTTP.  It gets one plain callable,
``fetch(node_id, offset, length, content_key) -> bytes`` (the bytes of exactly that content
version, or an error), and splits every file into fixed-size chunks keyed by
(node id, content key, chunk index), so a file whose content changed (new md5 / content version)
can never be served old bytes.  A chunk is looked up in memory, then on disk, then fetched; one
fetch at most is in flight per chunk and every other reader of that chunk waits on its Event.
Sequential readers get a growing read-ahead window fetched as several concurrent range requests,
bounded for all files together by ``read_ahead_budget``. The first read of an open file near its start
fetches just the file's head (``head_size``) and no read-ahead: thumbnailers read the first bytes of
many files. Heads are kept in memory; a later fetch of the first chunk fetches only what follows.

Writes: dirty files are read from their spool (vfs/writes.py), never from here. Once one is uploaded,
``adopt`` takes its bytes as the new content's chunks, so a re-read needs no download; nothing here
assumes the remote copy is the only source of a chunk.

Lock order: ``ContentReader._lock`` -> (``MemoryCache._lock`` | ``DiskCache._lock``).
``_stats_lock``, ``FetchPool._cond``, ``WriteBehind._cond`` and ``HeapTrimmer._lock`` are leaves
taken with no other lock held.  No fetch, file read or file write ever happens with any lock held;
readers wait for fetches on per-chunk Events, with the read's deadline as timeout.
"""

from __future__ import annotations

import errno
import functools
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .diskcache import DiskCache, Stem, content_digest
from .heap import HeapTrimmer
from .memcache import ChunkKey, MemoryCache
from .options import ReaderOptions
from .pool import FetchPool, Job
from .readahead import ReadAheadState
from .writebehind import WriteBehind

log = logging.getLogger(__name__)

# fetch(node_id, offset, length, content_key): the key is the handle's, so the caller can pin the
# request to that content version and fail rather than hand out bytes of newer content
Fetch = Callable[[str, int, int, str], "bytes | bytearray | memoryview"]


class _Pending:
    """A chunk on its way from the server; readers wait on ``event``."""

    __slots__ = ("ahead_cost", "data", "error", "event", "gen", "job")

    def __init__(self, gen: int, ahead_cost: int) -> None:
        self.event = threading.Event()
        self.data: memoryview | None = None
        self.error: BaseException | None = None
        self.gen = gen
        self.ahead_cost = ahead_cost  # bytes held against the read-ahead budget
        self.job: Job | None = None


@dataclass(eq=False, slots=True)
class _Item:
    index: int
    key: ChunkKey
    stem: Stem
    length: int
    pending: _Pending


class _Handle:
    __slots__ = ("content_key", "digest", "last", "node_hex", "node_id", "ra", "read_once", "size")

    def __init__(self, node_id: str, content_key: str, size: int, ra: ReadAheadState) -> None:
        self.node_id = node_id
        self.content_key = content_key
        self.size = size
        self.ra = ra
        self.node_hex = node_id.encode().hex()
        self.digest = content_digest(content_key)
        # the chunk this handle read last: consecutive small reads skip the cache lookups
        self.last: tuple[int, memoryview] | None = None
        self.read_once = False      # the first read may be a head read (see _head_read)


class ContentReader:
    """Serve byte ranges of remote files through memory and disk chunk caches."""

    def __init__(self, fetch: Fetch, opts: ReaderOptions) -> None:
        self._fetch = fetch
        self._opts = opts
        self._cs = opts.chunk_size
        self._mem = MemoryCache(opts.memory_cache)
        self._disk = DiskCache(opts.cache_dir, opts.cache_size, opts.chunk_size) if opts.cache_dir else None
        self._writer = (WriteBehind(self._disk, max(opts.disk_queue, opts.request_size),
                                    skip_when_full=opts.disk_skip_when_full)
                        if self._disk is not None else None)
        self._pool = FetchPool(opts.streams + opts.demand_workers, opts.streams)
        self._heap = HeapTrimmer(256 * 1024 * 1024)
        self._lock = threading.Lock()
        self._handles: dict[int, _Handle] = {}
        self._next_fh = 1
        self._pending: dict[ChunkKey, _Pending] = {}
        self._gen: dict[str, int] = {}  # bumped by invalidate: late fetch results are not cached
        self._current: dict[str, str] = {}  # node id -> content key last opened
        # (node id, content key) -> the first head_size bytes, fetched by a first read (_head_read)
        self._heads: OrderedDict[tuple[str, str], memoryview] = OrderedDict()
        self._ahead_bytes = 0
        self._stats_lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._started = False
        self._closed = False

    # ---- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        if self._disk is not None:
            self._disk.start()
        if self._writer is not None:
            self._writer.start()
        self._pool.start()
        self._started = True

    def close(self) -> None:
        """Fail whatever still waits, stop the workers; a hung fetch does not hang close."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending.values())
            self._pending.clear()
            self._handles.clear()
        err = OSError(errno.EIO, "content reader closed")
        for p in pending:
            if not p.event.is_set():
                p.error = err
                p.event.set()
        self._pool.close()
        if self._writer is not None:
            self._writer.close()
        self._mem.clear()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until fetched chunks queued for the disk tier are written; False on timeout."""
        return self._writer.flush(timeout) if self._writer is not None else True

    def __enter__(self) -> ContentReader:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- handles ----------------------------------------------------------------------------

    def open(self, node_id: str, content_key: str, size: int) -> int:
        """A handle for reading ``size`` bytes of ``node_id`` as of ``content_key``."""
        if size < 0:
            raise OSError(errno.EINVAL, f"negative size {size} for {node_id}")
        ra = ReadAheadState(size, self._opts.initial_window, self._opts.read_ahead)
        handle = _Handle(node_id, content_key, size, ra)
        with self._lock:
            if self._closed:
                raise OSError(errno.EIO, "content reader closed")
            fh = self._next_fh
            self._next_fh += 1
            self._handles[fh] = handle
            changed = self._current.get(node_id) != content_key
            if changed:
                self._current[node_id] = content_key
                # fetches still in flight may carry either content: use, but do not cache, them
                self._gen[node_id] = self._gen.get(node_id, 0) + 1
        if changed:
            # chunks of any other content of this node are garbage from now on
            self._purge(node_id, keep=content_key)
        return fh

    def release(self, fh: int) -> None:
        with self._lock:
            if self._handles.pop(fh, None) is None:
                raise OSError(errno.EBADF, f"unknown content handle {fh}")

    def invalidate(self, node_id: str, keep_content: str | None = None) -> None:
        """Forget cached chunks of ``node_id`` (all, or all but ``keep_content``'s)."""
        with self._lock:
            if keep_content is None:
                self._current.pop(node_id, None)
                # fetches in flight may carry the dropped bytes: they are handed out, not cached
                self._gen[node_id] = self._gen.get(node_id, 0) + 1
            else:
                # only fetches of ``keep_content`` are cached from now on (see ``_still_current``)
                self._current[node_id] = keep_content
            for handle in self._handles.values():
                if handle.node_id == node_id and handle.content_key != keep_content:
                    handle.last = None
            # readers from now on start fresh fetches; those waiting already get what is on its way
            for key in [k for k in self._pending if k[0] == node_id and k[1] != keep_content]:
                del self._pending[key]
            for head in [h for h in self._heads if h[0] == node_id and h[1] != keep_content]:
                del self._heads[head]
        self._purge(node_id, keep=keep_content)

    def prune_disk(self, target: int) -> tuple[int, int]:
        """Shrink the disk cache to ``target`` bytes (LRU first; 0 drops all chunks not being read):
        (chunks dropped, bytes now counted). For `acdfuse cache` through a live mount."""
        if self._disk is None:
            return 0, 0
        dropped = self._disk.prune(target)
        return dropped, self._disk.used

    def adopt(self, node_id: str, content_key: str, size: int,
              read_at: Callable[[int, int], bytes | bytearray | memoryview]) -> int:
        """Take ``size`` bytes (a file just uploaded from its local copy) as the cached chunks of
        ``content_key``; older content of the node is dropped. Goes to the disk tier only (the memory
        tier fills on reads). Returns the number of chunks stored; a full cache stores fewer.
        """
        self.invalidate(node_id, keep_content=content_key)
        if self._disk is None:
            return 0
        node_hex, digest = node_id.encode().hex(), content_digest(content_key)
        stored = 0
        for index in range(-(-size // self._cs)):
            length = min(self._cs, size - index * self._cs)
            data = memoryview(read_at(index * self._cs, length)).cast("B")
            if data.nbytes != length:
                raise OSError(errno.EIO, f"adopting {node_id}: got {data.nbytes} of {length} bytes "
                                         f"for chunk {index}")
            with self._lock:
                if self._current.get(node_id) != content_key:
                    break       # newer content arrived meanwhile: these bytes are stale already
            if self._disk.put((node_hex, digest, index), data):
                stored += 1
        self._count(adopted_chunks=stored)
        return stored

    def adopt_file(self, node_id: str, content_key: str, size: int, path: Path) -> bool:
        """``adopt`` for a file of at most one chunk whose bytes are the whole file at ``path`` (a spool
        that nobody writes any more): that file itself becomes the cached chunk (``DiskCache.take``), with
        no second copy and no new file. False when it was not taken (larger than a chunk, empty, no disk
        tier, another filesystem, a full cache): the caller then adopts the bytes or leaves them."""
        if self._disk is None or not 0 < size <= self._cs:
            return False
        self.invalidate(node_id, keep_content=content_key)
        taken = self._disk.take((node_id.encode().hex(), content_digest(content_key), 0), path, size)
        with self._lock:
            stale = self._current.get(node_id) != content_key
        if taken and stale:
            # newer content arrived meanwhile: this chunk is garbage already
            self._purge(node_id, keep=self._current.get(node_id))
        if taken:
            self._count(adopted_chunks=1)
        return taken

    def _purge(self, node_id: str, keep: str | None) -> None:
        dropped = self._mem.discard_node(node_id, keep)
        if self._disk is not None:
            dropped += self._disk.invalidate(node_id, keep)
        if dropped:
            log.debug("dropped %d cached chunks of %s (keeping content %s)", dropped, node_id, keep)

    # ---- reading ----------------------------------------------------------------------------

    def read(self, fh: int, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; short only at end of file."""
        handle = self._handles.get(fh)
        if handle is None:
            raise OSError(errno.EBADF, f"unknown content handle {fh}")
        if offset < 0 or length < 0:
            raise OSError(errno.EINVAL, f"bad read range {offset}+{length}")
        end = min(offset + length, handle.size)
        if end <= offset:
            return b""
        if not self._started or self._closed:
            raise OSError(errno.EIO, "content reader is not running")
        cs = self._cs
        first, last = offset // cs, (end - 1) // cs

        # the hot path (the kernel's 128 KiB reads inside the chunk read last): one slice copy
        recent = handle.last
        if first == last and recent is not None and recent[0] == first:
            base = first * cs
            with self._lock:
                ahead = handle.ra.on_read(offset, end)
            if ahead is not None:
                self._read_ahead(handle, *ahead)
            with self._stats_lock:
                stats = self._stats
                stats["reads"] += 1
                stats["read_bytes"] += end - offset
                stats["hits"] += 1
            return bytes(recent[1][offset - base:end - base])

        if end <= self._opts.head_size < self._chunk_len(handle, 0):
            head = self._head_read(handle, offset, end)
            if head is not None:
                return head

        deadline = time.monotonic() + self._opts.timeout

        gen = self._gen.get(handle.node_id, 0)
        slots = self._lookup(handle, first, last)
        with self._lock:
            ahead = handle.ra.on_read(offset, end)
        if ahead is not None:
            self._read_ahead(handle, *ahead)
        bufs = [self._wait(handle, slot, deadline) if isinstance(slot, _Pending) else slot for slot in slots]
        with self._lock:
            # not if an invalidate came in meanwhile: these bytes are good for this read only
            if self._gen.get(handle.node_id, 0) == gen:
                handle.last = (last, bufs[-1])
        self._count(reads=1, read_bytes=end - offset)
        base = first * cs
        if len(bufs) == 1:
            return bytes(bufs[0][offset - base:end - base])
        start = offset - base
        stop_last = end - last * cs
        parts = [bufs[0][start:], *bufs[1:-1], bufs[-1][:stop_last]]
        return b"".join(parts)

    def _head_read(self, handle: _Handle, offset: int, end: int) -> bytes | None:
        """A read inside the file's head while the first chunk is not at hand: served from the head,
        which the handle's first read fetches alone; no read-ahead is scheduled. The kernel may split
        a thumbnailer's first read into more than one request, all inside the head; a read past it
        starts the stream (ReadAheadState sees it continue these). None: read the usual way."""
        key = (handle.node_id, handle.content_key)
        with self._lock:
            head = self._heads.get(key)
            if head is not None:
                self._heads.move_to_end(key)
            gen = self._gen.get(handle.node_id, 0)
            chunk = (handle.node_id, handle.content_key, 0)
            first = not handle.read_once
            handle.read_once = True
            if head is None and (not first or chunk in self._pending):
                return None
        if head is None:
            if self._mem.get(chunk) is not None or (
                    self._disk is not None and self._disk.contains((handle.node_hex, handle.digest, 0))):
                return None
            raw = self._fetch(handle.node_id, 0, self._opts.head_size, handle.content_key)
            head = memoryview(bytes(raw))
            if head.nbytes != self._opts.head_size:
                log.warning("fetch of %s [0, +%d) returned %d bytes", handle.node_id, self._opts.head_size,
                            head.nbytes)
                raise OSError(errno.EIO, f"server sent {head.nbytes} of {self._opts.head_size} bytes "
                                         f"of {handle.node_id}")
            self._count(fetches=1, fetched_bytes=head.nbytes, head_fetches=1)
            with self._lock:
                # not after an invalidate: these bytes serve this read only
                if gen == self._gen.get(handle.node_id, 0) and self._opts.head_count:
                    self._heads[key] = head
                    while len(self._heads) > self._opts.head_count:
                        self._heads.popitem(last=False)
        else:
            self._count(hits=1, head_hits=1)
        with self._lock:
            handle.ra.on_read(offset, end)      # remembered, so a continuing read starts the stream
        self._count(reads=1, read_bytes=end - offset)
        return bytes(head[offset:end])

    def _chunk_len(self, handle: _Handle, index: int) -> int:
        return min(self._cs, handle.size - index * self._cs)

    def _lookup(self, handle: _Handle, first: int, last: int) -> list[memoryview | _Pending]:
        """Find chunks first..last in memory, in flight or on disk; start fetches for the rest."""
        node_id, ckey = handle.node_id, handle.content_key
        slots: list[memoryview | _Pending | None] = []
        hits = disk_hits = 0
        for index in range(first, last + 1):
            key = (node_id, ckey, index)
            buf = self._mem.get(key)
            if buf is not None:
                hits += 1
                slots.append(buf)
                continue
            with self._lock:
                pending = self._pending.get(key)
            if pending is not None:
                slots.append(pending)
                continue
            if self._disk is not None:
                buf = self._disk.get((handle.node_hex, handle.digest, index), self._chunk_len(handle, index))
                if buf is not None:
                    disk_hits += 1
                    self._mem.put(key, buf)
                    slots.append(buf)
                    continue
            slots.append(None)

        new: list[_Item] = []
        if any(slot is None for slot in slots):
            with self._lock:
                gen = self._gen.get(node_id, 0)
                for pos, slot in enumerate(slots):
                    if slot is not None:
                        continue
                    index = first + pos
                    key = (node_id, ckey, index)
                    # re-check: the chunk may have landed while we looked at the disk
                    found: memoryview | _Pending | None = self._pending.get(key) or self._mem.get(key)
                    if found is None:
                        pending = _Pending(gen, 0)
                        self._pending[key] = pending
                        new.append(_Item(index, key, (handle.node_hex, handle.digest, index),
                                         self._chunk_len(handle, index), pending))
                        found = pending
                    slots[pos] = found
        if new:
            self._submit(handle, new, readahead=False)
        self._count(hits=hits, disk_hits=disk_hits, misses=len(new))
        return [slot for slot in slots if slot is not None]

    def _wait(self, handle: _Handle, pending: _Pending, deadline: float) -> memoryview:
        if not pending.event.is_set():
            if pending.job is not None:
                self._pool.promote(pending.job)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not pending.event.wait(remaining):
                self._count(timeouts=1)
                log.warning("read of %s timed out after %.1f s", handle.node_id, self._opts.timeout)
                raise OSError(errno.EIO, f"read of {handle.node_id} timed out after {self._opts.timeout:g} s")
        if pending.error is not None:
            raise pending.error
        assert pending.data is not None
        return pending.data

    # ---- read-ahead -------------------------------------------------------------------------

    def _read_ahead(self, handle: _Handle, start: int, stop: int) -> None:
        cs = self._cs
        node_id, ckey = handle.node_id, handle.content_key
        budget = self._opts.read_ahead_budget
        new: list[_Item] = []
        loads: list[_Item] = []  # on disk: read into memory by a worker, off the reader's thread
        with self._lock:
            if self._closed:
                return
            gen = self._gen.get(node_id, 0)
            scheduled_to = start
            for index in range(start // cs, (stop - 1) // cs + 1):
                key = (node_id, ckey, index)
                stem = (handle.node_hex, handle.digest, index)
                length = self._chunk_len(handle, index)
                if not (key in self._pending or key in self._mem):
                    if self._ahead_bytes + length > budget:
                        break
                    pending = _Pending(gen, length)
                    self._pending[key] = pending
                    self._ahead_bytes += length
                    on_disk = self._disk is not None and self._disk.contains(stem)
                    (loads if on_disk else new).append(_Item(index, key, stem, length, pending))
                scheduled_to = index * cs + length
            handle.ra.scheduled(scheduled_to)
        if new:
            self._submit(handle, new, readahead=True)
        if loads:
            per_job = max(1, min(8, -(-len(loads) // self._opts.streams)))
            for i in range(0, len(loads), per_job):
                self._queue(self._run_load, handle.node_id, loads[i:i + per_job], readahead=True)

    def _run_load(self, node_id: str, items: list[_Item]) -> None:
        """Read-ahead from the disk tier; what is not there (evicted, corrupt) is fetched instead."""
        if self._closed or self._disk is None:
            self._fail(items, OSError(errno.EIO, "content reader closed"))
            return
        loaded: list[tuple[_Item, memoryview]] = []
        missing: list[_Item] = []
        for item in items:
            buf = self._disk.get(item.stem, item.length)
            if buf is None:
                missing.append(item)
            else:
                loaded.append((item, buf))
        if loaded:
            with self._lock:
                gen = self._gen.get(node_id, 0)
                current = self._current.get(node_id)
                for item, buf in loaded:
                    if item.pending.gen == gen and current in (None, item.key[1]):
                        self._mem.put(item.key, buf)
            for item, buf in loaded:
                if not item.pending.event.is_set():
                    item.pending.data = buf
                    item.pending.event.set()
            self._count(disk_hits=len(loaded), disk_ahead=len(loaded))
            self._forget([item for item, _ in loaded])
        for run in _consecutive_runs(missing):  # one range request per run of chunks
            self._run_fetch(node_id, run)

    # ---- fetching ---------------------------------------------------------------------------

    def _submit(self, handle: _Handle, items: list[_Item], readahead: bool) -> None:
        """Group consecutive chunks into range requests spread over ``streams`` and queue them."""
        max_chunks = max(1, self._opts.request_size // self._cs)
        for run in _consecutive_runs(items):
            per_request = min(max_chunks, max(1, -(-len(run) // self._opts.streams)))
            for i in range(0, len(run), per_request):
                self._queue(self._run_fetch, handle.node_id, run[i:i + per_request], readahead)

    def _queue(
        self, runner: Callable[[str, list[_Item]], None], node_id: str, group: list[_Item], readahead: bool
    ) -> None:
        """Queue one worker job for ``group``; its waiters fail at once if the reader is closing."""
        job = Job(functools.partial(runner, node_id, group), readahead)
        for item in group:
            item.pending.job = job
        try:
            self._pool.submit(job)
        except RuntimeError:
            self._fail(group, OSError(errno.EIO, "content reader closed"))

    def _run_fetch(self, node_id: str, items: list[_Item]) -> None:
        offset = items[0].index * self._cs
        length = sum(item.length for item in items)
        if self._closed:
            self._fail(items, OSError(errno.EIO, "content reader closed"))
            return
        head: memoryview | None = None
        raw: bytes | bytearray | memoryview
        if items[0].index == 0:
            with self._lock:
                head = self._heads.pop((node_id, items[0].key[1]), None)
        try:
            if head is not None and head.nbytes < length:
                # the head came with a first read (_head_read): fetch only what follows it
                rest = self._fetch(node_id, head.nbytes, length - head.nbytes, items[0].key[1])
                raw = b"".join((head, rest))
            else:
                raw = self._fetch(node_id, offset, length, items[0].key[1])
        except Exception as exc:
            log.warning("fetch of %s [%d, +%d) failed: %r", node_id, offset, length, exc)
            self._count(fetch_errors=1)
            self._fail(items, exc)
            return
        view = memoryview(raw)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        if view.nbytes != length:
            # the file changed under us or the server misbehaves: never cache a torn chunk
            log.warning("fetch of %s [%d, +%d) returned %d bytes", node_id, offset, length, view.nbytes)
            self._count(fetch_errors=1)
            self._fail(items, OSError(errno.EIO, f"server sent {view.nbytes} of {length} bytes of {node_id}"))
            return
        pieces: list[memoryview] = []
        if len(items) == 1:
            pieces.append(view.toreadonly())
        else:
            # One copy per chunk: a slice would keep the whole response buffer alive for as long as
            # any of its chunks is cached, and the memory budget would no longer hold.
            pos = 0
            for item in items:
                pieces.append(view[pos:pos + item.length].toreadonly())
                pos += item.length
        with self._lock:
            gen = self._gen.get(node_id, 0)
            current = self._current.get(node_id)
            fresh = [item.pending.gen == gen and current in (None, item.key[1]) for item in items]
            for item, piece, ok in zip(items, pieces, fresh, strict=True):
                if ok:
                    self._mem.put(item.key, piece)
        for item, piece in zip(items, pieces, strict=True):
            if not item.pending.event.is_set():
                item.pending.data = piece
                item.pending.event.set()
        ahead = items[0].pending.ahead_cost > 0
        self._count(fetches=1, fetched_bytes=length - (head.nbytes if head is not None else 0),
                    readahead_fetches=int(ahead),
                    readahead_bytes=length if ahead else 0)
        # The read-ahead budget goes on covering these chunks until they are on disk (``_forget``):
        # fetches in flight and chunks waiting for the disk share one bound, so a network faster than
        # the disk cannot fill the budget and the disk queue at once (peak RSS stays near the budgets).
        self._unlink_jobs(items)
        to_disk = [(item.stem, piece) for item, piece, ok in zip(items, pieces, fresh, strict=True) if ok]
        if self._writer is not None and to_disk:
            # the chunks stay findable through the pending table until they are on disk
            if not self._writer.submit(to_disk, functools.partial(self._forget, items),
                                       functools.partial(self._still_current, node_id, items[0])):
                self._count(disk_skipped=len(to_disk))
        else:
            self._forget(items)
        self._heap.account(length)

    def _still_current(self, node_id: str, item: _Item) -> bool:
        """No invalidate since this fetch started, and its content is the node's current one."""
        with self._lock:
            return (item.pending.gen == self._gen.get(node_id, 0)
                    and self._current.get(node_id) in (None, item.key[1]))

    def _unlink_jobs(self, items: list[_Item]) -> None:
        with self._lock:
            for item in items:
                # pending -> job -> items -> pending is a cycle: break it, or every response buffer
                # waits for the cyclic garbage collector and memory use runs far past the budgets
                item.pending.job = None

    def _forget(self, items: list[_Item]) -> None:
        with self._lock:
            for item in items:
                if self._pending.get(item.key) is item.pending:
                    del self._pending[item.key]
                self._ahead_bytes -= item.pending.ahead_cost
                item.pending.ahead_cost = 0
                item.pending.job = None

    def _fail(self, items: list[_Item], exc: BaseException) -> None:
        # out of the table first: the next reader starts a fresh fetch instead of a poisoned one
        self._forget(items)
        for item in items:
            if not item.pending.event.is_set():
                item.pending.error = exc
                item.pending.event.set()

    # ---- statistics -------------------------------------------------------------------------

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            stats = self._stats
            for name, delta in deltas.items():  # Counter.update(**kw) costs a Mapping check per call
                stats[name] += delta

    def stats(self) -> dict[str, int]:
        """Counters for tests and benchmarks: reads, hits, disk_hits, misses, fetches, bytes..."""
        with self._stats_lock:
            out = {name: 0 for name in (
                "reads", "read_bytes", "hits", "disk_hits", "misses", "fetches", "fetched_bytes",
                "readahead_fetches", "readahead_bytes", "fetch_errors", "timeouts", "disk_skipped",
                "disk_ahead", "adopted_chunks", "head_fetches", "head_hits")}
            out.update(self._stats)
        with self._lock:
            out["pending_chunks"] = len(self._pending)
            out["readahead_inflight_bytes"] = self._ahead_bytes
            out["open_handles"] = len(self._handles)
        out["memory_bytes"] = self._mem.nbytes
        out["disk_bytes"] = self._disk.used if self._disk is not None else 0
        out["disk_chunks"] = len(self._disk) if self._disk is not None else 0
        out["disk_corrupt"] = self._disk.corrupt if self._disk is not None else 0
        out["disk_enabled"] = int(self._disk is not None and self._disk.enabled)
        return out

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats.clear()


def _consecutive_runs(items: list[_Item]) -> list[list[_Item]]:
    """Split chunks (in index order) into runs of consecutive indexes: one range request each."""
    runs: list[list[_Item]] = []
    for item in items:
        if runs and runs[-1][-1].index + 1 == item.index:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs
