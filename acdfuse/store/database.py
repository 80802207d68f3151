"""The one wrapper around the mirror's SQLite file: opening, checks, PRAGMAs, schema migrations.

Lock order: ``Database.write_lock`` (held by whoever uses the writer connection) -> ``_readers_lock``
(only guards the list of reader connections). No lock is held across network I/O.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path

from acdfuse.store.errors import SchemaTooNew, StoreError
from acdfuse.store.migrate import migrate
from acdfuse.store.schema import (
    APPLICATION_ID,
    BUILD,
    MIGRATIONS,
    REQUIRED_TABLES,
    RETIRED,
    SCHEMA_VERSION,
)

log = logging.getLogger(__name__)

# Every PRAGMA the store sets, with the reason. Applied to each new connection.
COMMON_PRAGMAS: tuple[tuple[str, str, str], ...] = (
    # Another process (a second mount on the same cache dir) may hold the write lock briefly;
    # wait for it instead of failing with SQLITE_BUSY. In-process writes are serialised by a lock.
    ("busy_timeout", "10000", "wait for a foreign writer instead of failing"),
    # Staging tables and the sorts of a rebuild go to a temp file, not RAM: keeps the RSS of a
    # 1M-node first sync bounded.
    ("temp_store", "FILE", "keep large staging/sort data out of memory"),
)
WRITER_PRAGMAS: tuple[tuple[str, str, str], ...] = (
    # WAL: readers keep reading their snapshot while the single writer commits, so a sync never
    # blocks `ls`/`stat`, and the reset swap is atomic for readers.
    ("journal_mode", "WAL", "readers never wait for the writer"),
    # In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last commits, which
    # the next sync fetches again because the checkpoint is committed together with its nodes.
    ("synchronous", "NORMAL", "durable enough for a re-fetchable mirror, far fewer fsyncs"),
    # 32 MiB page cache for the writer: bulk index builds of a 1M-node rebuild stay fast while
    # the process stays well under its RSS budget.
    ("cache_size", "-32768", "bounded writer page cache"),
    ("temp.cache_size", "-16384", "bounded cache for staging tables"),
    # After a big rebuild the WAL can grow to hundreds of MB; truncate it back after checkpoints.
    ("journal_size_limit", str(64 * 1024 * 1024), "do not keep a huge WAL file around"),
    # Integrity is maintained by the store's own statements (bulk loads arrive in any order,
    # parents after children), so SQLite's foreign-key machinery would only slow them down.
    ("foreign_keys", "OFF", "referential integrity is kept by the writer itself"),
)
READER_PRAGMAS: tuple[tuple[str, str, str], ...] = (
    # A reader must never take a write lock by accident.
    ("query_only", "ON", "readers cannot write"),
    ("cache_size", "-8192", "small per-thread page cache"),
)

# Below this size a full PRAGMA quick_check at open costs well under a second; above it the
# cheaper structural checks must do, so that opening a warm 1M-node mirror stays fast.
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024
_TASKS = Path("/proc/self/task")   # one entry per live thread of this process (Linux)


class _Reader:
    """Holds one thread's read connection. Lives in that thread's ``threading.local``: when the
    thread ends (FUSE worker threads come and go) the holder is dropped and the connection closed,
    so connections do not pile up over a long mount.

    That does not happen for a libfuse worker whose Python thread state the mount keeps alive
    (fs/threadstate.py: its ``threading.local`` then outlives the thread), so ``Database`` also closes
    the connections of threads that are gone (``tid``, checked in /proc) whenever a new reader opens:
    each holds a file descriptor and up to 8 MiB of page cache.
    """

    __slots__ = ("__weakref__", "con", "tid")

    def __init__(self, con: sqlite3.Connection, tid: int) -> None:
        self.con = con
        self.tid = tid

    def __del__(self) -> None:
        try:
            self.con.close()
        except sqlite3.Error as exc:  # pragma: no cover - closing a read-only connection
            log.debug("closing a reader connection failed: %s", exc)


class Database:
    """Owns the SQLite file: one writer connection (use under ``write_lock``) and one read-only
    connection per reader thread."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.write_lock = threading.RLock()
        self._writer: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        self._readers_lock = threading.Lock()
        self._closed = True
        self.recovered_from: Path | None = None  # where a corrupt file was moved, if it was

    # ---- opening -------------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            problem = self._inspect()
            if problem:
                self._move_aside(problem)
        self._make_private()
        self._writer = self._connect(WRITER_PRAGMAS)
        try:
            self._migrate(self._writer)
            self._drop_leftovers(self._writer)
        except sqlite3.DatabaseError as exc:
            self._writer.close()
            self._writer = None
            raise StoreError(f"cannot initialise node mirror {self.path}: {exc}") from exc
        self._closed = False

    def _make_private(self) -> None:
        """The mirror lists the names of every file on the drive: readable by its owner only.

        SQLite gives the -wal and -shm files the mode of the database file, so creating that one
        0600 (rather than with the process umask) covers all three; an older, looser file is closed.
        """
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:
                if path.stat().st_mode & 0o077:
                    path.chmod(0o600)
            except FileNotFoundError:
                pass

    def _inspect(self) -> str | None:
        """Return why the existing file is unusable, or None. Raises SchemaTooNew."""
        try:
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            return f"cannot open it ({exc})"
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(str(self.path), version, SCHEMA_VERSION)
            if version == 0 and not tables:
                return None  # an empty SQLite file: initialise it
            if app_id != APPLICATION_ID:
                return f"it is not an acdfuse node mirror (application_id {app_id:#x})"
            if version == SCHEMA_VERSION and not REQUIRED_TABLES <= tables:
                return f"tables are missing: {sorted(REQUIRED_TABLES - tables)}"
            con.execute("SELECT value FROM meta WHERE key = 'checkpoint'").fetchall()
            size = self.path.stat().st_size
            if size <= QUICK_CHECK_MAX_BYTES:
                result = con.execute("PRAGMA quick_check").fetchone()[0]
                if result != "ok":
                    return f"integrity check failed: {result}"
            else:
                # A truncated file is the common large-file damage; pages live in the WAL only
                # while one exists, so compare only when there is none.
                pages = con.execute("PRAGMA page_count").fetchone()[0]
                page_size = con.execute("PRAGMA page_size").fetchone()[0]
                wal = Path(f"{self.path}-wal")
                if (not wal.exists() or wal.stat().st_size == 0) and pages * page_size > size:
                    return f"file is truncated ({size} of {pages * page_size} bytes)"
        except sqlite3.DatabaseError as exc:
            return f"SQLite reports: {exc}"
        finally:
            con.close()
        return None

    def _move_aside(self, problem: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, target)
            for ext in ("-wal", "-shm"):
                side = Path(f"{self.path}{ext}")
                if side.exists():
                    os.replace(side, Path(f"{target}{ext}"))
        except OSError as exc:
            raise StoreError(f"node mirror {self.path} is unusable ({problem}) and could not be "
                             f"moved aside: {exc}") from exc
        self.recovered_from = target
        log.warning("node mirror %s is unusable: %s; moved it to %s and starting an empty mirror "
                    "that the next sync rebuilds from the server", self.path, problem, target)

    def _connect(self, pragmas: tuple[tuple[str, str, str], ...]) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a plain SELECT never opens
        # a long-lived read transaction that would pin old WAL frames.
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                              cached_statements=256)
        for name, value, _reason in COMMON_PRAGMAS + pragmas:
            con.execute(f"PRAGMA {name}={value}")
        return con

    def _migrate(self, con: sqlite3.Connection) -> None:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:  # raced with a newer acdfuse since _inspect
            raise SchemaTooNew(str(self.path), version, SCHEMA_VERSION)
        migrate(con, MIGRATIONS, SCHEMA_VERSION, APPLICATION_ID, f"node mirror {self.path}")

    @staticmethod
    def _drop_leftovers(con: sqlite3.Connection) -> None:
        """A crash during a reset rebuild can leave the half-built or retired table set behind."""
        existing = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        stale = [t for t in BUILD.names() + RETIRED.names() if t in existing]
        if stale:
            con.execute("BEGIN IMMEDIATE")
            for table in stale:
                con.execute(f"DROP TABLE {table}")
            con.execute("COMMIT")
            log.info("dropped leftover tables of an interrupted rebuild: %s", ", ".join(stale))

    # ---- connections ---------------------------------------------------------------------
    @property
    def writer(self) -> sqlite3.Connection:
        if self._writer is None:
            raise StoreError(f"node mirror {self.path} is not open")
        return self._writer

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (created on first use)."""
        holder: _Reader | None = getattr(self._local, "reader", None)
        if holder is None:
            if self._closed:
                raise StoreError(f"node mirror {self.path} is not open")
            holder = _Reader(self._connect(READER_PRAGMAS), threading.get_native_id())
            with self._readers_lock:
                gone = self._readers_of_ended_threads_locked()
                self._readers.add(holder)
            for old in gone:
                old.con.close()      # its thread is gone: nobody can be using it
            self._local.reader = holder
        return holder.con

    def _readers_of_ended_threads_locked(self) -> list[_Reader]:
        """Take the readers whose threads have ended out of the set (Linux: /proc/self/task)."""
        if not _TASKS.is_dir():
            return []
        gone = [h for h in self._readers if not (_TASKS / str(h.tid)).exists()]
        for holder in gone:
            self._readers.discard(holder)
        return gone

    def reader_count(self) -> int:
        with self._readers_lock:
            return len(self._readers)

    def close(self) -> None:
        self._closed = True
        with self._readers_lock:
            readers = list(self._readers)
            self._readers = weakref.WeakSet()
        for holder in readers:
            holder.con.close()
        self._local = threading.local()
        with self.write_lock:
            if self._writer is not None:
                try:
                    # Fold the WAL back into the main file so a warm reopen reads one file.
                    self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    self._writer.close()
                    self._writer = None
