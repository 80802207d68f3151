"""SQLite metadata store of the server: schema, PRAGMAs, per-thread connections, one writer.

Lock order: ``Database.write_lock`` is the only lock here and is never held across network I/O.
Readers use their own thread-local connection and never wait for the writer (WAL).

Schema notes (why each index exists):
- ``nodes.parents_json`` copies the node's rows of ``parents`` as a JSON array, updated in the same
  transaction: rendering a million nodes for ``changes`` then needs no per-node index lookup.
- ``nodes(account, seq)``: ``changes`` pages through one account's modifications in order.
- ``parents(parent, child)`` (primary key): children listing and ``parents:X`` filters.
- ``parents(parent, lname)``: case-insensitive name-conflict checks and child lookup by name;
  ``lname`` is the child's lower-cased name, denormalised so the check never touches ``nodes`` first.
- ``parents(child)``: a node's parent list when rendering JSON, for trash/restore and moves.
- ``nodes(lname)``: ``name:`` filters over the whole drive. Deliberately without the account column:
  an index led by the unselective account lured the planner away from rowid/keyset order.
- ``nodes(md5)``: duplicate-content detection on upload.
- ``nodes(status, trashed)`` (partial): trash listing and the expired-trash sweeper.
- ``nodes(is_root) WHERE is_root``: the ``isRoot:true`` lookup every client starts with.
- ``nodes(blob)`` (partial): the start-up sweep of orphan blob files reads the blob ids of one
  ``blobs/<xx>`` directory as an index range.

The database file is created 0600 (SQLite gives its -wal/-shm files the same mode): it holds every
name and the app's client secret.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

# the page cache of each SQLite connection, in KiB (see _connect)
CACHE_KIB = 512

SCHEMA_VERSION = 3  # 2: nodes.parents_json, 3: accounts.password

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    root TEXT NOT NULL,
    quota INTEGER NOT NULL,
    -- change sequence numbers <= horizon may have been forgotten (tombstones dropped):
    -- a checkpoint older than that gets a reset
    horizon INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    -- the login page's password for this account, hashed (accounts.py); NULL: none set
    password TEXT
);
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    account INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    lname TEXT,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '[]',
    description TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created INTEGER NOT NULL,
    modified INTEGER NOT NULL,
    etag TEXT NOT NULL,
    is_root INTEGER NOT NULL DEFAULT 0,
    size INTEGER,
    md5 TEXT,
    content_type TEXT,
    extension TEXT,
    content_version INTEGER,
    content_date INTEGER,
    blob TEXT,
    local_id TEXT,
    seq INTEGER NOT NULL,
    trashed INTEGER,
    parents_json TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS nodes_seq ON nodes(account, seq);
DROP INDEX IF EXISTS nodes_lname;
DROP INDEX IF EXISTS nodes_md5;
DROP INDEX IF EXISTS nodes_trash;
CREATE INDEX IF NOT EXISTS nodes_name ON nodes(lname);
CREATE INDEX IF NOT EXISTS nodes_md5sum ON nodes(md5) WHERE md5 IS NOT NULL;
CREATE INDEX IF NOT EXISTS nodes_trashed ON nodes(status, trashed) WHERE trashed IS NOT NULL;
DROP INDEX IF EXISTS nodes_root;
CREATE INDEX IF NOT EXISTS nodes_isroot ON nodes(is_root) WHERE is_root = 1;
CREATE INDEX IF NOT EXISTS nodes_blob ON nodes(blob) WHERE blob IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS nodes_local ON nodes(account, local_id) WHERE local_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS parents (
    parent TEXT NOT NULL,
    child TEXT NOT NULL,
    lname TEXT,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parents_child ON parents(child);
CREATE INDEX IF NOT EXISTS parents_lname ON parents(parent, lname);
CREATE TABLE IF NOT EXISTS properties (
    node TEXT NOT NULL,
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (node, owner, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    account INTEGER NOT NULL,
    issued REAL NOT NULL,
    expires REAL NOT NULL,
    extra TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
"""


class SchemaError(RuntimeError):
    pass


class Database:
    """Owns the SQLite file. ``read()`` gives this thread's connection; ``write()`` a transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.write_lock = threading.RLock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        # WAL: readers never block the writer and vice versa.
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (kill -9); only a power loss may lose the last commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        # A small page cache per connection: every HTTP connection has its own thread and SQLite
        # connection, so the caches add up. At 64 MiB each, 50 keep-alive clients made the server's
        # RSS grow with connections x database size (RELIABILITY.md section 3); 512 KiB bounds that
        # at 25 MiB for 50 connections. The database file's pages stay in the kernel's page cache,
        # shared by all connections, so a cache miss costs a pread, not a disk read (value in KiB).
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def open(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            # an empty file is a new database to SQLite; creating it here sets the mode
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = self.conn()
        with self.write_lock:
            row = conn.execute(
                "SELECT value FROM meta WHERE key='schema'"
                if conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone()
                else "SELECT NULL WHERE 0"
            ).fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise SchemaError(
                    f"{self.path}: schema {row[0]} is newer than this server ({SCHEMA_VERSION})"
                )
            if row is not None and int(row[0]) < 2:
                self._migrate_1_to_2(conn)
            if row is not None and int(row[0]) < 3:
                self._migrate_2_to_3(conn)
            conn.executescript(_SCHEMA)
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )

    @staticmethod
    def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
        log.info("migrating server database to schema 2 (parents_json)")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ALTER TABLE nodes ADD COLUMN parents_json TEXT NOT NULL DEFAULT '[]'")
        conn.execute(
            "UPDATE nodes SET parents_json = "
            "(SELECT json_group_array(parent) FROM parents WHERE child = nodes.id)"
        )
        conn.execute("UPDATE meta SET value='2' WHERE key='schema'")
        conn.execute("COMMIT")

    @staticmethod
    def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
        log.info("migrating server database to schema 3 (accounts.password)")
        conn.execute("BEGIN IMMEDIATE")
        columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(accounts)")}
        if "password" not in columns:  # a database marked older than it is must still open
            conn.execute("ALTER TABLE accounts ADD COLUMN password TEXT")
        conn.execute("UPDATE meta SET value='3' WHERE key='schema'")
        conn.execute("COMMIT")

    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._closed:
                raise sqlite3.ProgrammingError("database is closed")
            c = self._connect()
            self._local.conn = c
            with self._all_lock:
                self._all.append(c)
        return c

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction under the writer lock (BEGIN IMMEDIATE avoids upgrade deadlocks)."""
        conn = self.conn()
        with self.write_lock:
            if conn.in_transaction:  # nested use by the same thread: join the outer transaction
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        row = self.conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def release_thread(self) -> None:
        """Close this thread's connection. Every HTTP connection runs in its own thread, so without
        this each client connection would leave an open SQLite connection (and its descriptors)."""
        c = getattr(self._local, "conn", None)
        if c is None:
            return
        self._local.conn = None
        with self._all_lock:
            if c in self._all:
                self._all.remove(c)
        c.close()

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except sqlite3.ProgrammingError:
                # a connection created in another thread that is still busy; it dies with that thread
                log.debug("connection of a live thread left open")
        self._local = threading.local()
