"""The write side: dirty files, their spools and uploads, and the pending new files the mount shows.

``WriteSide`` is the one object the FUSE layer asks about file content that is not (or not yet) the
server's. A *dirty file* is one whose local copy differs from the server: a spool (spool.py) holds its
bytes, the journal (store/journal.py) records it durably before a write is acknowledged, and the
write-back queue (writeback.py) uploads it after its last writer closed it and a quiet delay passed.

A new file has no node id until its upload: it shows as a ``Node`` with the id ``local:<n>`` and an
inode number reserved for it, which the real node keeps (``NodeStore.apply_local(..., ino=)``), so
st_ino stays stable across the upload for git, tar and rsync.

Several handles of one file share one ``DirtyFile`` and its spool. After a successful upload a file
nobody has open is forgotten (its spool becomes the read cache's copy of the new content when the
reader offers that); one still open stays, clean, until its last handle closes.

Lock order: ``DirtyFile.jlock`` -> ``WriteSide._lock`` -> ``Spool.lock``; ``Journal._lock`` and the
write-back queue's lock are leaves taken with none of ours held except ``jlock``. ``jlock`` is per file
and is held across that file's journal writes (local SQLite, never HTTP), so the journal's record of a
file follows the order of the decisions about it (a delete after an upload never overtakes the insert
of a write that came later). No lock is held across HTTP; spool I/O holds only the spool's own lock.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from acdfuse.api.common import NotFound, PreconditionFailed
from acdfuse.store.journal import DIRTY, DONE, FAILED, QUEUED, UPLOADING, DirtyRow, Journal, JournalError
from acdfuse.store.node import AVAILABLE, FILE, Node

from .options import WriteOptions
from .posixattrs import pending_record
from .spool import FillBase, Spool, SpoolPool
from .stream import GrowingStream
from .upload import Job, Properties, Remote, Result, Uploader, UploadMismatch, UploadRefused, is_permanent
from .writeback import Change, RetryPolicy, WriteBack

log = logging.getLogger(__name__)

PENDING_PREFIX = "local:"
# Inode numbers of pending new files: far above what the mirror's counter (from 2 up) ever reaches.
INO_BASE = 1 << 40
# Streaming uploads at once: each holds a connection open while its file is being written.
MAX_STREAMS = 2
# Seconds after an application's last create, write or release during which background uploads run
# one at a time (WriteBack's ``busy``): a burst of small files is not slowed by their own uploads.
CALLERS_BUSY = 0.1

# (node id, content key, size, offset, length) -> those bytes of that content version
FetchBase = Callable[[str, str, int, int, int], "bytes | bytearray | memoryview"]
# (node id, content key, size, read(offset, length)) -> chunks kept: take a file's bytes as cached content
Adopt = Callable[[str, str, int, Callable[[int, int], "bytes | bytearray | memoryview"]], int]
# (uploaded node, attributes kept for it or None, mtime of its last local write) -> None: stores them
AfterUpload = Callable[[Node, "str | None", int], None]
# (server node the copy is based on or None, attributes kept or None, mtime of the last local write,
#  content version the upload makes, whether it makes a new node) -> properties to send with it
UploadProperties = Callable[[Node | None, "str | None", int, int, bool], "Properties | None"]


class StoreView(Protocol):
    def get(self, node_id: str) -> Node | None: ...
    def path_of(self, node_id: str) -> str | None: ...
    def apply_local(self, node_json: dict, *, ino: int | None = None) -> Node: ...


@dataclass(frozen=True)
class ReadHooks:
    """What the write side needs of the read side: base bytes, and (optionally) the cache hand-over."""

    fetch: FetchBase
    adopt: Adopt | None = None
    invalidate: Callable[[str, str | None], None] | None = None
    # (node id, content key, size, path of a file holding exactly those bytes) -> whether the read cache
    # took that file itself as the cached copy (moved, not copied)
    adopt_file: Callable[[str, str, int, Path], bool] | None = None


def content_key(md5: str | None, version: int | None) -> str:
    """The read cache's identity of a content version (as fs/operations.content_key)."""
    return md5 if md5 else f"v{version or 0}"


def local_id_of(node_id: str) -> int | None:
    if node_id.startswith(PENDING_PREFIX):
        try:
            return int(node_id[len(PENDING_PREFIX):])
        except ValueError:
            return None
    return None


class _Redo(Exception):
    """This upload attempt is void (its file changed identity while it ran): run it again now."""


class DirtyFile:
    """One file with a local copy. Fields are guarded by ``WriteSide._lock`` (spool by its own)."""

    def __init__(self, row: DirtyRow, spool: Spool, dirty: bool) -> None:
        self.local_id = row.local_id
        self.spool = spool
        self.node_id = row.node_id
        self.parent_id = row.parent_id
        self.name = row.name or ""
        self.base_version = row.base_version
        self.base_md5 = row.base_md5
        self.base_size = row.base_size
        self.attrs = row.attrs
        self.attrs_gen = 0           # bumped by every set_attrs: which attributes an upload stored
        self.ino = row.ino
        self.mtime_ns = row.mtime_ns or time.time_ns()
        self.created = self.mtime_ns / 1e9
        self.jlock = threading.Lock()
        self.opens = 0
        self.writers = 0
        self.gen = 0                 # bumped after every write and truncate
        self.confirmed = 0           # the last gen the server holds
        self.dirty = dirty           # a journal row exists: not confirmed on the server
        self.running = False         # an upload of it is in flight
        self.finishing = False       # a new file's upload is being recorded: renames and deletes wait
        self.deleting = 0            # deletes of its node in flight (``WriteSide.deleting``)
        self.sent_md5s: set[str] = set()     # attempts that may have landed since the last upload (Job.ours)
        self.unlinked = False        # gone from the namespace: never uploaded (again)
        self.fsync_waiters = 0
        self.sequential = False      # written front to back only, from empty: may stream (stream.py)
        self.stream: GrowingStream | None = None
        self.stream_tried = False
        self.error: BaseException | None = None
        self.failed_gen = -1         # gen of the last upload attempt that failed

    def describe(self) -> str:
        where = self.node_id or f"new file in {self.parent_id}"
        return f"{self.name!r} ({where})"


@dataclass(frozen=True)
class WriteHandle:
    """One open of a file through the write side."""

    file: DirtyFile
    writable: bool
    append: bool


class WriteSide:
    """Dirty files, pending new files and their uploads (see the module docstring)."""

    def __init__(self, journal_path: Path, spool_dir: Path, *, store: StoreView, remote: Remote,
                 hooks: ReadHooks, opts: WriteOptions | None = None,
                 after_upload: AfterUpload | None = None,
                 upload_properties: UploadProperties | None = None,
                 max_file_size: Callable[[], int] | None = None) -> None:
        """``max_file_size``: asks the server's per-file limit (at ``start``; network I/O); the lower of it
        and ``opts.max_file_size`` holds (the option alone when the server cannot say).
        ``upload_properties`` builds the attributes an upload carries where the server stores them with
        the content; ``after_upload`` stores whatever the answer does not show yet (every attribute, on
        a server without that), before the file counts as uploaded."""
        self._opts = opts or WriteOptions()
        self._ask_limit = max_file_size
        self._max_file_size = self._opts.max_file_size
        self._journal = Journal(journal_path)
        self._spool_dir = Path(spool_dir)
        self._store = store
        self._hooks = hooks
        self._after_upload = after_upload
        self._upload_properties = upload_properties
        self._uploader = Uploader(remote)
        self._remote = remote
        self._wb = WriteBack(self._upload, permanent=is_permanent, on_change=self._on_change,
                             describe=self._describe, workers=self._opts.workers,
                             policy=RetryPolicy(self._opts.retry_first, self._opts.retry_cap),
                             busy=self._callers_busy)
        self._last_call = 0.0           # monotonic time of the last create, write or release
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._files: dict[int, DirtyFile] = {}
        self._by_node: dict[str, DirtyFile] = {}
        self._by_name: dict[tuple[str, str], DirtyFile] = {}
        self._names: Counter[str] = Counter()       # names of pending new files: a cheap "surely not"
        self._streams = 0                           # streaming uploads running (stream.py)
        self._pool = SpoolPool(self._spool_dir, self._take_id)
        self._next_id = 1
        self._started = False
        self._closed = False
        self.stats: Counter[str] = Counter()

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Open the journal, take up every dirty file it records and queue their uploads."""
        if self._ask_limit is not None:
            try:
                self._max_file_size = min(self._max_file_size, int(self._ask_limit()))
            except Exception as exc:  # offline at start: the usual limit will do
                log.info("the server's file size limit is unknown (%s); using %d bytes", exc,
                         self._max_file_size)
        self._journal.open()
        self._spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        rows = self._journal.rows()
        self._next_id = self._journal.next_local_id()
        known: set[str] = set()
        for row in rows:
            path = self._spool_dir / row.spool
            # a file still open when the mount died: the journal saw its first write, the spool has
            # the last ones (its size is the file's; a new file's bytes are all local)
            size = None if row.state == DIRTY else row.size
            try:
                spool = Spool(path, size=size, base_limit=row.base_limit, ranges=row.ranges, create=False)
            except FileNotFoundError:
                log.error("write journal: the spool %s of %s is missing; its unsaved changes are lost",
                          path, row.name)
                self._journal.delete(row.local_id)
                continue
            known.add(row.spool)
            df = DirtyFile(row, spool, dirty=True)
            df.gen = 1              # not on the server: an fsync waits for its upload
            self._index(df)
            if row.state == DIRTY:
                log.warning("%s was open for writing when the mount stopped; uploading it as last written",
                            df.describe())
        for entry in self._spool_dir.iterdir():
            if entry.name not in known:
                # a spool without a row holds nothing unsaved (the row goes first and comes back last)
                entry.unlink(missing_ok=True)
        self._wb.start()
        self._pool.start()          # after the orphans went: its files are the next ids' spools
        self._started = True
        for df in list(self._files.values()):
            self._wb.queue(df.local_id, 0.0)
        if rows:
            log.info("write journal: %d file(s) waiting for upload from the last mount", len(self._files))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the uploads (those in flight get ``timeout`` seconds) and close everything. Whatever is
        not uploaded stays in the journal for the next mount."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            files = list(self._files.values())
            self._cond.notify_all()
        for df in files:
            if df.stream is not None:
                df.stream.abort("unmounting")
        if self._started:
            self._pool.close()
        if self._started and not self._wb.close(timeout):
            log.warning("uploads still running at unmount are repeated at the next mount")
        if not self._wait_streams(time.monotonic() + timeout):
            log.warning("streaming uploads still running at unmount are repeated at the next mount")
        for df in files:
            df.spool.close()
        left = sum(1 for df in files if df.dirty and not df.unlinked)
        stats = self.stats
        log.info("uploaded %d files (%d bytes, %d streamed while written), %d failed attempts; %d "
                 "file(s) left in the write journal for the next mount", stats["uploaded"],
                 stats["uploaded_bytes"], stats["streamed"], self._wb.failures, left)
        self._journal.close()

    # ---- the namespace overlay ---------------------------------------------------------------
    def _node_of(self, df: DirtyFile) -> Node:
        """The Node a pending new file shows (callers hold _lock or accept a racy snapshot)."""
        return Node(id=f"{PENDING_PREFIX}{df.local_id}", name=df.name, kind=FILE, status=AVAILABLE,
                    parents=(df.parent_id or "",), size=df.spool.size, md5=None, content_version=0,
                    version=0, created=df.created, modified=df.mtime_ns / 1e9, ino=df.ino, is_root=False,
                    posix=pending_record(df.attrs, None, df.mtime_ns))

    def has_pending(self, name: str) -> bool:
        return name in self._names

    def lookup_pending(self, parent_id: str, name: str) -> Node | None:
        if name not in self._names:
            return None
        with self._lock:
            df = self._by_name.get((parent_id, name))
            return None if df is None else self._node_of(df)

    def pending_children(self, parent_id: str) -> list[Node]:
        with self._lock:
            return [self._node_of(df) for (pid, _), df in self._by_name.items() if pid == parent_id]

    def overlay(self, node: Node) -> Node:
        """``node`` with the size and mtime of its local copy, if it has one."""
        df = self._by_node.get(node.id)
        if df is None:
            return node
        # the attributes kept for its upload, the mtime of its local copy (posixattrs.pending_record)
        posix = pending_record(df.attrs, node.posix, df.mtime_ns) if df.dirty else node.posix
        return replace(node, size=df.spool.size, modified=df.mtime_ns / 1e9, posix=posix)

    def has_local(self, node_id: str) -> bool:
        return node_id in self._by_node or local_id_of(node_id) is not None

    def node_of(self, handle: WriteHandle) -> Node:
        """What an open handle's file looks like now."""
        df = handle.file
        if df.node_id is not None:
            node = self._store.get(df.node_id)
            if node is not None:
                return self.overlay(node) if df.node_id in self._by_node else node
        return self._node_of(df)

    def _callers_busy(self) -> bool:
        """An application made, wrote or closed a file moments ago (the write-back's ``busy``)."""
        return time.monotonic() - self._last_call < CALLERS_BUSY

    # ---- opening -----------------------------------------------------------------------------
    def create(self, parent_id: str, name: str) -> WriteHandle:
        """A new, empty file in ``parent_id``: shown at once, uploaded after its last release."""
        self._last_call = time.monotonic()
        made = self._pool.take()
        with self._lock:
            self._check_open_locked()
            if (parent_id, name) in self._by_name:
                raise OSError(errno.EEXIST, f"{name!r} is already a pending new file")
            local_id = made[0] if made is not None else self._take_id_locked()
        row = DirtyRow(local_id=local_id, spool=str(local_id), node_id=None, parent_id=parent_id, name=name,
                       ino=INO_BASE + local_id, mtime_ns=time.time_ns())
        # a file made ahead is there already (O_TRUNC keeps it empty): no directory work now
        spool = Spool(self._spool_dir / row.spool, size=0, base_limit=0, create=True)
        df = DirtyFile(row, spool, dirty=True)
        try:
            self._journal.put(row)
        except BaseException:
            spool.delete()
            raise
        with self._lock:
            self._index(df)
            df.opens += 1
            df.writers += 1
            df.gen = 1                  # its existence is a change to upload
            df.sequential = True
        self.stats["created"] += 1
        return WriteHandle(df, writable=True, append=False)

    def open(self, node: Node, *, write: bool, truncate: bool = False,
             append: bool = False) -> WriteHandle | None:
        """A handle on ``node``'s local copy. For a read-only open of a file without one: None (the
        caller reads through the content cache)."""
        lid = local_id_of(node.id)
        with self._lock:
            self._check_open_locked()
            df = self._files.get(lid) if lid is not None else self._by_node.get(node.id)
            if df is None and lid is not None:
                raise OSError(errno.ENOENT, f"{node.id} is no longer a pending file")
            if df is None:
                if not write:
                    return None
                df = self._new_local_copy_locked(node)
            df.opens += 1
            if write:
                df.writers += 1
        if write:
            self._wb.hold(df.local_id)      # not uploaded while open for writing
        handle = WriteHandle(df, writable=write, append=append)
        if truncate:
            try:
                self.truncate(handle, 0)
            except BaseException:
                self.release(handle)
                raise
        return handle

    def _new_local_copy_locked(self, node: Node) -> DirtyFile:
        """A (still clean) local copy of an existing file: a hole its size, nothing fetched yet."""
        local_id = self._take_id_locked()
        row = DirtyRow(local_id=local_id, spool=str(local_id), node_id=node.id,
                       parent_id=node.parents[0] if node.parents else None, name=node.name,
                       base_version=node.content_version, base_md5=node.md5, base_size=node.size,
                       base_limit=node.size, size=node.size, ino=node.ino,
                       mtime_ns=int(node.modified * 1e9))
        # a sparse file: creating it costs no I/O however big the file is
        spool = Spool(self._spool_dir / row.spool, size=node.size, base_limit=node.size, create=True)
        df = DirtyFile(row, spool, dirty=False)
        self._index(df)
        return df

    def _take_id(self) -> int:
        with self._lock:
            return self._take_id_locked()

    def _take_id_locked(self) -> int:
        local_id = self._next_id
        self._next_id += 1
        return local_id

    def _check_open_locked(self) -> None:
        if self._closed or not self._started:
            raise OSError(errno.EIO, "the write side is not running")

    # ---- content -----------------------------------------------------------------------------
    def write(self, handle: WriteHandle, offset: int, data: bytes) -> int:
        self._last_call = time.monotonic()
        if not handle.writable:
            raise OSError(errno.EBADF, "not open for writing")
        df = handle.file
        prior = df.spool.size
        if handle.append:
            offset = prior
        if offset + len(data) > self._max_file_size:
            raise OSError(errno.EFBIG, f"{df.name}: the server takes files of at most "
                                       f"{self._max_file_size} bytes")
        n = df.spool.write(offset, data, append=handle.append)
        self._changed(df)
        self._after_write(df, sequential=handle.append or offset == prior)
        return n

    def _after_write(self, df: DirtyFile, sequential: bool) -> None:
        """Feed a streaming upload, end it, or start one (see stream.py)."""
        stream = df.stream
        if stream is not None:
            if sequential:
                stream.grew()
            else:
                stream.abort("a write went back into the file")
            return
        if not sequential:
            df.sequential = False
        elif (df.sequential and not df.stream_tried and df.writers == 1 and not df.unlinked
              and 0 < self._opts.stream_min <= df.spool.size and df.spool.base_limit == 0):
            self._start_stream(df)

    def truncate(self, handle: WriteHandle, length: int) -> None:
        if not handle.writable:
            raise OSError(errno.EBADF, "not open for writing")
        self._truncate(handle.file, length)

    def truncate_node(self, node: Node, length: int) -> None:
        """truncate(2) by path, without an open handle."""
        handle = self.open(node, write=True)
        assert handle is not None
        try:
            self._truncate(handle.file, length)
        finally:
            self.release(handle)

    def _truncate(self, df: DirtyFile, length: int) -> None:
        if length > self._max_file_size:
            raise OSError(errno.EFBIG, f"{df.name}: the server takes files of at most "
                                       f"{self._max_file_size} bytes")
        df.spool.truncate(length)
        self._changed(df)
        stream = df.stream
        if stream is not None:
            stream.abort("the file was truncated")
        df.sequential = length == 0       # from empty again: it may still stream

    def _changed(self, df: DirtyFile) -> None:
        """A write or truncate landed in the spool: count it, and make sure the journal knows the file
        is dirty before the caller is told it worked."""
        with df.jlock:
            with self._lock:
                df.gen += 1
                df.mtime_ns = time.time_ns()
                new_row = not df.dirty and not df.unlinked
                if new_row:
                    df.dirty = True
                row = self._row_locked(df, DIRTY) if new_row else None
            if row is not None:
                try:
                    self._journal.put(row)
                except BaseException:
                    with self._lock:
                        df.dirty = False
                    raise

    def read(self, handle: WriteHandle, offset: int, length: int) -> bytes:
        df = handle.file
        return df.spool.read(offset, length, self._filler(df))

    def read_node(self, node_id: str, offset: int, length: int) -> bytes | None:
        """Bytes of a node's local copy, or None when it has none (read through the cache then)."""
        df = self._by_node.get(node_id)
        if df is None:
            return None
        return df.spool.read(offset, length, self._filler(df))

    def _filler(self, df: DirtyFile) -> FillBase | None:
        node_id, version, md5, size = df.node_id, df.base_version, df.base_md5, df.base_size
        if node_id is None or version is None:
            return None
        key = content_key(md5, version)

        def fill(offset: int, length: int) -> bytes | bytearray | memoryview:
            self.stats["base_fetches"] += 1
            return self._hooks.fetch(node_id, key, size, offset, length)

        return fill

    def release(self, handle: WriteHandle) -> None:
        self._last_call = time.monotonic()
        df = handle.file
        with self._lock:
            df.opens -= 1
            if handle.writable:
                df.writers -= 1
            queue = handle.writable and df.writers == 0 and df.dirty and not df.unlinked
            drop = df.opens == 0 and not df.running and (df.unlinked or not df.dirty)
            if drop:
                self._unindex_locked(df)
            stream = df.stream if queue else None
            if stream is not None:
                stream.finish(df.spool.size, df.gen)    # its upload is under way: it ends here
        if queue:
            recorded = True
            try:
                # one journal write for the close: size, ranges and the queued state with its time
                self._save(df, QUEUED, next_try=time.time() + self._opts.upload_delay)
            except JournalError as exc:
                # the row from the first write stays (state dirty); a restart takes the spool's size
                log.warning("%s: recording its close failed (%s); uploading it anyway", df.describe(), exc)
                recorded = False
            if stream is None:
                self._wb.queue(df.local_id, self._opts.upload_delay, record=not recorded)
        if drop:
            df.spool.delete()

    def fsync(self, handle: WriteHandle) -> None:
        """Return once the file's content as of now is on the server; EIO if that upload failed.

        Deviation from the design note (fsync of the spool and a FULL journal checkpoint first): success
        is only answered once the server confirmed the content, so the server's copy is the durable one
        and a power cut afterwards loses nothing. Flushing the spool to disk first would add a full disk
        write to every fsync (seconds for 1 GiB) for no promise kept. Only when the upload failed (EIO) is
        the local copy made power-cut safe, so the retries that follow still have it.
        """
        df = handle.file
        with self._lock:
            target = df.gen
            if not df.dirty or df.unlinked or df.confirmed >= target:
                return
        self._save(df, QUEUED)
        with self._cond:
            df.fsync_waiters += 1
            stream = df.stream
            if stream is not None:
                stream.finish(df.spool.size, target)
        try:
            if stream is None:
                self._wb.urgent(df.local_id)
            with self._cond:
                while True:
                    if df.confirmed >= target or df.unlinked:
                        return
                    if df.failed_gen >= target and df.error is not None:
                        error: BaseException = df.error
                        break
                    if self._closed:
                        error = OSError(errno.EIO, "unmounting")
                        break
                    self._cond.wait()
        finally:
            with self._cond:
                df.fsync_waiters -= 1
        try:
            os.fsync(df.spool.fd)
            self._journal.checkpoint()
        except OSError as exc:
            log.warning("%s: making the local copy durable failed too: %s", df.describe(), exc)
        raise OSError(errno.EIO, f"upload of {df.describe()} failed: {error}")

    # ---- namespace changes -------------------------------------------------------------------
    def unlink_pending(self, parent_id: str, name: str) -> bool:
        """Discard a pending new file (never uploaded); False when there is none of that name."""
        with self._cond:
            df = self._pending_locked(parent_id, name)
            if df is None:
                return False
        self._discard(df)
        return True

    def _pending_locked(self, parent_id: str, name: str) -> DirtyFile | None:
        """The pending new file at that name, once no upload of it is being recorded (None when there is
        none, or when it became the server's node meanwhile). Caller holds ``_cond``; it may wait."""
        while True:
            df = self._by_name.get((parent_id, name))
            if df is None or not df.finishing:
                return df
            self._cond.wait()

    @contextmanager
    def deleting(self, node_id: str) -> Iterator[None]:
        """Around the server call that deletes ``node_id`` (then ``forget_node``): an upload of its local
        copy that finds the node gone meanwhile makes no conflict copy (the delete was this mount's
        own); it fails as cancelled, and is tried again if the delete fails."""
        with self._lock:
            df = self._by_node.get(node_id)
            if df is not None:
                df.deleting += 1
        try:
            yield
        finally:
            if df is not None:
                with self._lock:
                    df.deleting -= 1

    def forget_node(self, node_id: str) -> None:
        """The node went to the trash: its pending overwrite is dropped (open handles keep the data)."""
        with self._lock:
            df = self._by_node.get(node_id)
        if df is not None:
            self._discard(df)

    def _discard(self, df: DirtyFile) -> None:
        stream = df.stream
        if stream is not None:
            stream.abort("the file was deleted")
        with df.jlock:
            with self._lock:
                df.unlinked = True
                was_dirty, df.dirty = df.dirty, False
                self._unindex_locked(df, keep_file=df.opens > 0 or df.running)
                drop = df.opens == 0 and not df.running
                self._cond.notify_all()
            self._wb.cancel(df.local_id)
            if was_dirty:
                self._journal.delete(df.local_id)
        if drop:
            df.spool.delete()
        self.stats["discarded"] += 1

    def rename_pending(self, old_parent: str, old_name: str, new_parent: str, new_name: str,
                       replaced: Node | None = None) -> bool:
        """Follow a rename of a pending new file; False when there is none at the old name.

        Renamed over an existing server file (``replaced``), the pending file becomes an overwrite of
        that node, based on its current content: the editor's "write a temp file, rename it over the
        original" keeps the original's node id and needs no trash. A pending file at the new name is
        discarded, as a local rename over a file would.
        """
        with self._cond:
            while True:
                df = self._pending_locked(old_parent, old_name)
                if df is None:
                    return False
                target = self._pending_locked(new_parent, new_name)
                if not df.finishing:        # (the wait for the target let the source's upload end)
                    break
        if target is not None and target is not df:
            self._discard(target)
        if replaced is not None:
            self.forget_node(replaced.id)     # a pending overwrite of the replaced file is superseded
        with df.jlock:
            with self._lock:
                self._unindex_locked(df, keep_file=True)
                df.parent_id, df.name = new_parent, new_name
                if replaced is not None:
                    df.node_id = replaced.id
                    df.base_version, df.base_md5 = replaced.content_version, replaced.md5
                    df.base_size = replaced.size
                    df.ino = replaced.ino
                self._index(df)
                row = self._row_locked(df, DIRTY) if df.dirty else None
            if row is not None:
                self._journal.put(row)
        return True

    # ---- POSIX attributes of pending files (the fs attrs code owns their format) -------------
    def _file_for_key(self, key: str) -> DirtyFile | None:
        lid = local_id_of(key)
        with self._lock:
            return self._files.get(lid) if lid is not None else self._by_node.get(key)

    def set_attrs(self, key: str, attrs_json: str | None) -> bool:
        """Keep attributes for a file not yet uploaded (applied right after its upload); False when
        ``key`` (a node id or ``local:<n>``) has no pending upload, so the caller sets them itself."""
        df = self._file_for_key(key)
        if df is None:
            return False
        with df.jlock:
            with self._lock:
                if not df.dirty:
                    return False
                df.attrs = attrs_json
                df.attrs_gen += 1     # an upload in flight carries older ones: _finish sends these
            self._journal.update(df.local_id, attrs=attrs_json)
        return True

    def get_attrs(self, key: str) -> str | None:
        df = self._file_for_key(key)
        return None if df is None else df.attrs

    # ---- waiting -----------------------------------------------------------------------------
    def drain(self, timeout: float | None = None,
              progress: Callable[[dict[str, int]], None] | None = None) -> bool:
        """Upload everything closed now (no quiet delay) and wait; False when ``timeout`` passed first."""
        with self._lock:
            queued = [df.local_id for df in self._files.values() if df.dirty and df.writers == 0]
        for local_id in queued:
            self._wb.urgent(local_id)
        return self.wait_uploads(timeout, progress)

    def wait_uploads(self, timeout: float | None = None,
                     progress: Callable[[dict[str, int]], None] | None = None) -> bool:
        """Wait (without hurrying anything) until no upload is queued, running or due for a retry."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # a streaming upload that fails queues its file: wait for both until both are idle
            if not self._wait_streams(deadline):
                return False
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._wb.wait_idle(left, progress):
                return False
            with self._lock:
                if not self._streams:
                    return True

    def _wait_streams(self, deadline: float | None) -> bool:
        with self._cond:
            while self._streams:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def uploads_status(self) -> dict[str, object]:
        """What `acdfuse status` shows: files not on the server yet, their bytes, and the failures
        (path as this mount sees it, and why)."""
        with self._lock:
            dirty = [df for df in self._files.values() if df.dirty and not df.unlinked]
            failed = [(df, df.error) for df in dirty if df.error is not None]
        failures = [{"path": self._path_of(df), "reason": str(error)} for df, error in failed]
        return {"count": len(dirty), "bytes": sum(df.spool.size for df in dirty), "failures": failures}

    def _path_of(self, df: DirtyFile) -> str:
        where = self._store.path_of(df.node_id) if df.node_id is not None else None
        if where is None and df.parent_id is not None:
            folder = self._store.path_of(df.parent_id)
            if folder is not None:
                where = f"{folder.rstrip('/')}/{df.name}"
        return where or df.name

    def pending_stats(self) -> dict[str, int]:
        with self._lock:
            dirty = [df for df in self._files.values() if df.dirty]
            out = {"files": len(dirty), "bytes": sum(df.spool.size for df in dirty),
                   "open": sum(1 for df in self._files.values() if df.opens)}
        out.update(self._wb.pending())
        out["uploads"] = self._wb.uploads
        out["upload_failures"] = self._wb.failures
        out.update({f"n_{k}": v for k, v in self.stats.items()})
        return out

    # ---- the upload (a write-back worker) ----------------------------------------------------
    def _describe(self, local_id: int) -> str:
        df = self._files.get(local_id)
        return f"local file {local_id}" if df is None else df.describe()

    def _job_locked(self, df: DirtyFile) -> tuple[Job, int]:
        """The upload of ``df`` as it is now, and the write generation it holds."""
        name, parent = df.name, df.parent_id
        node = None
        if df.node_id is not None:
            node = self._store.get(df.node_id)
            if node is not None:
                name = node.name
                parent = node.parents[0] if node.parents else parent
        properties = None
        hook = self._upload_properties
        if hook is not None:
            attrs, mtime_ns = df.attrs, df.mtime_ns

            def properties(content_version: int, new_node: bool) -> Properties | None:
                return hook(node, attrs, mtime_ns, content_version, new_node)

        job = Job(df.local_id, df.spool, df.spool.size, df.node_id, name, parent, df.base_version,
                  parent_available=self._parent_available,
                  cancelled=lambda: df.unlinked or df.deleting > 0,
                  properties=properties,
                  ours=frozenset(df.sent_md5s), sent=df.sent_md5s.add,
                  foreign=lambda node_id: self._shown_elsewhere(df, node_id))
        return job, df.gen

    def _parent_available(self, parent_id: str) -> bool | None:
        node = self._store.get(parent_id)
        if node is None:
            return None          # not in the mirror (maybe not synced yet): the server is asked
        return node.is_available and node.is_folder

    def _upload(self, local_id: int) -> None:
        with self._lock:
            df = self._files.get(local_id)
            if df is None or df.unlinked or not df.dirty or df.stream is not None:
                return      # (a streaming upload runs: it finishes the file, or queues it again)
            df.running = True
            gen = df.gen
        try:
            try:
                df.spool.fill_all(self._filler(df))
            except Exception as exc:
                if isinstance(exc, NotFound | PreconditionFailed):
                    raise UploadRefused(
                        f"{df.describe()} changed on the server before the parts the local copy did not "
                        f"rewrite were fetched; the local changes are kept in {df.spool.path}") from exc
                raise
            with self._lock:
                job, _ = self._job_locked(df)
            result = self._place(df, job, self._uploader.run(job))
        except _Redo as redo:
            log.info("%s", redo)
            with self._cond:
                df.running = False
                again = df.writers == 0 or df.fsync_waiters > 0     # else its release queues it
                self._cond.notify_all()
            if again:
                self._wb.queue(df.local_id, 0.0)      # runs again right after this attempt returns
            return
        except BaseException as exc:
            with self._cond:
                df.running = False
                df.error = exc
                df.failed_gen = gen
                drop = df.unlinked and df.opens == 0
                self._cond.notify_all()
            if drop:
                df.spool.delete()
            raise
        self._finish(df, gen, job, result)

    def _place(self, df: DirtyFile, job: Job, result: Result) -> Result:
        """Put a new file's uploaded node where the file is now.

        The file may have been renamed or moved locally while its upload ran (the upload went to the
        name it had when it started): the node follows it on the server, or, renamed over another file
        meanwhile (it became that file's new content), the node is taken back and the upload runs
        again as an overwrite. Returns with ``df.finishing`` set, so no rename or delete comes between
        this last look at its name and ``_finish`` recording the node; a file deleted meanwhile is left
        to ``_finish`` (it takes the node back)."""
        if job.node_id is not None:
            return result       # an overwrite: the node keeps whatever name it has
        answer = result.answer
        asked = (job.parent_id, job.name)
        while True:
            with self._lock:
                if df.unlinked:
                    return replace(result, answer=answer)
                target = (df.parent_id, df.name)
                over = df.node_id
                if over is None and target == asked:
                    df.finishing = True
                    return replace(result, answer=answer)
            node_id = str(answer.get("id") or "")
            parents = answer.get("parents") or [job.parent_id]
            if self._shown_elsewhere(df, node_id):
                # the upload found another file at its old name with the same bytes and took it for an
                # earlier attempt of its own: that file moved there locally, it is not ours to move or trash
                raise _Redo(f"{df.describe()} was renamed while its upload ran, and the node found at its "
                            f"old name ({node_id}) is another file of this mount; uploading it again")
            try:
                if over is not None:
                    raise _Redo(f"{df.describe()} was renamed over another file while its upload ran; "
                                f"it is uploaded again as that file's content")
                if self._remote.move is None or target[0] is None:
                    raise _Redo(f"{df.describe()} was moved while its upload ran; uploading it again")
                answer = self._remote.move(node_id, str(parents[0]), target[0], target[1])
            except BaseException:
                # what went up under the old name must not stay next to the file's next upload
                self._trash_quietly(node_id, df)
                raise
            log.debug("%s was renamed while its upload ran; the uploaded node %s followed", df.describe(),
                      node_id)
            asked = target

    def _finish(self, df: DirtyFile, gen: int, job: Job, result: Result) -> None:
        try:
            self._record(df, gen, job, result)
        finally:
            if df.finishing:        # _record failed before it got to say so
                with self._cond:
                    df.finishing = False
                    self._cond.notify_all()

    def _record(self, df: DirtyFile, gen: int, job: Job, result: Result) -> None:
        answer, md5 = result.answer, result.md5
        new_node = job.node_id is None or result.conflict_with is not None
        if df.unlinked and new_node:
            # deleted while it was uploading: what just went up must not outlive the delete; unless the
            # upload took a node it found (same bytes) that is another file of this mount, moved to that
            # name locally (``mv a b`` over the new file b): trashing it would lose that file
            node_id = str(answer.get("id") or "")
            if self._shown_elsewhere(df, node_id):
                log.info("%s was deleted while its upload ran; the node found at its name (%s) is another "
                         "file of this mount and stays", df.describe(), node_id)
            else:
                self._trash_quietly(node_id, df)
            answer = {}
        node = None
        if answer:
            node = self._store.apply_local(answer, ino=df.ino if job.node_id is None else None)
        # before the file counts as uploaded (fsync, and a stat right after, see its attributes): the
        # attributes it has now. A chmod while the upload ran, or after they were stored, is kept with
        # the file as long as it is dirty, so it is caught below and stored in another round.
        stored = self._store_attrs(df, node)
        while True:
            with df.jlock:
                with self._cond:
                    newer = stored is not None and df.attrs_gen != stored and not df.unlinked
                    if not newer:
                        again, urgent, drop, unchanged, row = self._settle_locked(df, gen, job, node, md5)
                if not newer:
                    if unchanged:
                        self._journal.delete(df.local_id)
                    elif row is not None:
                        self._journal.put(row)      # now based on what just went up
                    break
            stored = self._store_attrs(df, node)
        if node is not None:
            self._hand_over(df, node, md5, job.size, adopt=drop and unchanged)
        if drop:
            df.spool.delete()
        if again:
            if urgent:
                self._wb.urgent(df.local_id)
            elif df.writers == 0:
                self._wb.queue(df.local_id, self._opts.upload_delay)
        self.stats["uploaded"] += 1
        self.stats["uploaded_bytes"] += job.size

    def _store_attrs(self, df: DirtyFile, node: Node | None) -> int | None:
        """Store the attributes ``df`` has now on the uploaded ``node`` (nothing is sent when the upload
        carried them); the attributes generation stored, None when there is nothing to store or it
        failed (the content is up: its attributes are not worth a second upload)."""
        if node is None or self._after_upload is None:
            return None
        with self._lock:
            attrs, gen, mtime_ns = df.attrs, df.attrs_gen, df.mtime_ns
        try:
            self._after_upload(node, attrs, mtime_ns)
        except Exception as exc:  # said, and the content stays uploaded
            log.warning("upload of %s: its attributes were not stored: %s", self._describe(df.local_id), exc)
            return None
        return gen

    def _settle_locked(self, df: DirtyFile, gen: int, job: Job, node: Node | None,
                       md5: str) -> tuple[bool, bool, bool, bool, DirtyRow | None]:
        """The file's state after an upload of ``gen`` (caller holds ``jlock`` and ``_lock``):
        (upload again, urgently, drop the spool, unchanged since, journal row to write)."""
        df.running = False
        df.finishing = False
        df.stream = None
        df.error = None
        if node is not None:
            df.sent_md5s.clear()    # the base is now what just went up
            self._unindex_locked(df, keep_file=True)    # indexed again below under its node id
            df.node_id, df.name = node.id, node.name
            df.parent_id = node.parents[0] if node.parents else df.parent_id
            df.base_version, df.base_md5, df.base_size = node.content_version, md5, job.size
            df.ino = node.ino or df.ino
            if not df.unlinked:
                self._by_node[node.id] = df
        unchanged = df.gen == gen and not df.unlinked
        if unchanged:
            df.confirmed = gen
            df.dirty = False
        drop = df.opens == 0 and (unchanged or df.unlinked)
        if drop:
            self._unindex_locked(df)
        again = not unchanged and not df.unlinked
        urgent = again and df.fsync_waiters > 0
        self._cond.notify_all()
        row = self._row_locked(df, QUEUED) if again else None
        return again, urgent, drop, unchanged, row

    def _start_stream(self, df: DirtyFile) -> None:
        with self._lock:
            if df.running or df.stream is not None or self._streams >= MAX_STREAMS:
                return
            stream = GrowingStream(df.spool, self._opts.stream_stall)
            df.stream, df.running, df.stream_tried = stream, True, True
            self._streams += 1
            node_id, name, parent, base = df.node_id, df.name, df.parent_id, df.base_version
        log.debug("%s: streaming its upload while it is written", df.describe())
        threading.Thread(target=self._run_stream, args=(df, stream, (node_id, name, parent, base)),
                         name="acdfuse-stream", daemon=True).start()

    def _run_stream(self, df: DirtyFile, stream: GrowingStream,
                    target: tuple[str | None, str, str | None, int | None]) -> None:
        node_id, name, parent, base = target
        try:
            if node_id is None:
                assert parent is not None
                answer = self._remote.upload(stream, name, parent)
            else:
                answer = self._remote.overwrite(stream, node_id, base)
            if stream.end is None:
                raise UploadMismatch(f"{df.describe()}: the stream ended before the file was closed")
            job = Job(df.local_id, df.spool, stream.end, node_id, name, parent, base)
            result = self._place(df, job, Result(answer, Uploader.check(job, answer)))
        except Exception as exc:  # any failure: the file goes up the ordinary way instead
            self._stream_failed(df, stream, exc)
            self._stream_done()
            return
        self.stats["streamed"] += 1
        try:
            self._finish(df, stream.end_gen, job, result)
        except Exception:  # uploaded, but recording it failed: the next mount finds it on the server
            log.exception("%s was uploaded, but recording that failed", df.describe())
        finally:
            self._stream_done()

    def _stream_done(self) -> None:
        with self._cond:
            self._streams -= 1
            self._cond.notify_all()

    def _stream_failed(self, df: DirtyFile, stream: GrowingStream, exc: BaseException) -> None:
        stream.abort(str(exc))
        log.info("streaming upload of %s stopped (%s); it is uploaded after its close instead",
                 df.describe(), exc)
        with self._cond:
            df.running = False
            df.stream = None
            closed = df.writers == 0
            waiting = df.fsync_waiters > 0
            pending = df.dirty and not df.unlinked
            drop = df.opens == 0 and (df.unlinked or not df.dirty)
            if drop:
                self._unindex_locked(df)
            self._cond.notify_all()
        if drop:
            df.spool.delete()
        elif pending and waiting:
            self._wb.urgent(df.local_id)
        elif pending and closed:
            self._wb.queue(df.local_id, self._opts.upload_delay)

    def _hand_over(self, df: DirtyFile, node: Node, md5: str, size: int, adopt: bool) -> None:
        """The read cache learns the new content: as the spool's bytes (no download on a re-read) when
        the file is small enough, else by dropping the old content's chunks."""
        key = content_key(md5, node.content_version)
        hooks = self._hooks
        try:
            if (adopt and hooks.adopt_file is not None and size <= self._opts.adopt_limit
                    and df.spool.complete() and hooks.adopt_file(node.id, key, size, df.spool.path)):
                # the spool file is the cached copy now, moved there (its delete finds nothing left):
                # for a small file that saves a new file, a second write of its bytes and an unlink
                return
            if adopt and hooks.adopt is not None and size <= self._opts.adopt_limit:
                reader = df.spool.reader(size)

                def read_at(offset: int, length: int) -> bytes:
                    reader.seek(offset)
                    return reader.read(length)

                hooks.adopt(node.id, key, size, read_at)
            elif hooks.invalidate is not None:
                hooks.invalidate(node.id, key)
        except OSError as exc:
            # the content is on the server and in the store; only the cache copy is missing
            log.warning("%s uploaded, but the read cache did not take its bytes: %s", df.describe(), exc)

    def _shown_elsewhere(self, df: DirtyFile, node_id: str) -> bool:
        """Whether the node a new file's upload answered with is another file this mount shows.

        A new file's upload that meets a node of its name with its own bytes takes that node as an
        earlier attempt of its own whose answer was lost (``Uploader._new_file``, and the client's
        confirmation of an unsure upload). When the file left that name meanwhile (deleted, renamed)
        and the mirror shows the node there, it is the file that took the name locally (``mv a b`` over
        the new file b, both holding the same bytes), not ours to take, move or trash. A node at the
        name the file still has is ours (say, an attempt that landed before the mount was killed, which
        the mirror learned at the next start). (Should a background sync bring in a node of ours before
        the answer of a file renamed meanwhile, it stays as a visible extra file: never a loss.)"""
        node = self._store.get(node_id) if node_id else None
        if node is None:
            return False
        with self._lock:
            left = df.unlinked or df.node_id is not None or df.parent_id not in node.parents
            return left or df.name.casefold() != node.name.casefold()     # (the server's names clash so)

    def _trash_quietly(self, node_id: str, df: DirtyFile) -> None:
        trash = self._remote.trash
        if trash is None or not node_id:
            return
        try:
            trash(node_id)
        except Exception as exc:  # the file was deleted locally; a left-over copy is only clutter
            log.warning("%s was deleted while uploading, and trashing the uploaded copy (node %s) failed: %s",
                        df.describe(), node_id, exc)

    # ---- journal records -----------------------------------------------------------------------
    def _row_locked(self, df: DirtyFile, state: str) -> DirtyRow:
        size, base_limit, ranges = df.spool.snapshot()
        return DirtyRow(local_id=df.local_id, spool=df.spool.path.name, state=state, node_id=df.node_id,
                        parent_id=df.parent_id, name=df.name, base_version=df.base_version,
                        base_md5=df.base_md5, base_size=df.base_size, base_limit=base_limit, size=size,
                        mtime_ns=df.mtime_ns, ranges=ranges, attrs=df.attrs, ino=df.ino)

    def _save(self, df: DirtyFile, state: str, next_try: float | None = None) -> None:
        """Record the file's current size and local ranges (at release and fsync)."""
        with df.jlock:
            with self._lock:
                row = self._row_locked(df, state) if df.dirty and not df.unlinked else None
            if row is not None:
                row.next_try = next_try
                self._journal.put(row)

    def _on_change(self, change: Change) -> None:
        if change.state == DONE:
            return        # _finish removed the row (or re-recorded it when the file changed meanwhile)
        with self._lock:
            df = self._files.get(change.key)
        if df is None:
            return
        with df.jlock:
            with self._lock:
                record = df.dirty and not df.unlinked
            if record:
                error = None if change.error is None else str(change.error)[:1000]
                state = change.state if change.state in (QUEUED, UPLOADING, FAILED) else DIRTY
                self._journal.update(change.key, state=state, attempts=change.attempts,
                                     next_try=change.next_try, last_error=error)

    # ---- indexes -------------------------------------------------------------------------------
    def _index(self, df: DirtyFile) -> None:
        """Register ``df`` (caller holds _lock, or runs before the workers start)."""
        self._files[df.local_id] = df
        if df.node_id is not None:
            self._by_node[df.node_id] = df
        elif df.parent_id is not None:
            self._by_name[(df.parent_id, df.name)] = df
            self._names[df.name] += 1

    def _unindex_locked(self, df: DirtyFile, keep_file: bool = False) -> None:
        if not keep_file:
            self._files.pop(df.local_id, None)
        if df.node_id is not None and self._by_node.get(df.node_id) is df:
            del self._by_node[df.node_id]
        key = (df.parent_id or "", df.name)
        if self._by_name.get(key) is df:
            del self._by_name[key]
            self._names[df.name] -= 1
            if self._names[df.name] <= 0:
                del self._names[df.name]
