"""The write journal: the durable record of every dirty file, in its own SQLite database.

The node mirror (nodes.db) is re-fetchable: it may be moved aside when corrupt or rebuilt from a reset.
This journal is not: it is the only record of data an application was told is written. So it lives
in a file of its own (``cache_dir/journal.db``) that no mirror recovery touches, and a journal that
cannot be read stops the mount with a message naming the file instead of being replaced.

Durability: WAL with ``synchronous=NORMAL``, so a commit survives a killed process (what "closed files
survive kill -9" needs); ``checkpoint()`` runs a FULL checkpoint, which fsyncs, for ``fsync`` callers
that also need a power cut survived.

Lock order: ``Journal._lock`` is a leaf guarding the one connection; nothing else is taken under it.
SQLite's own disk I/O runs under it (this is the one place that serialises journal writes; each is a
single short statement), never network I/O.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from acdfuse.store.migrate import migrate, rollback

log = logging.getLogger(__name__)

# Bump with a migration below when the layout changes.
SCHEMA_VERSION = 1
# "acdj": a foreign or mirror SQLite file at this path is recognised, never mistaken for a journal
APPLICATION_ID = 0x6163646A

# Upload states of a dirty file (DESIGN.md, "Write-back is a state machine").
DIRTY = "dirty"          # open for writing, or written and not yet closed
QUEUED = "queued"        # closed; uploads at next_try (the end of the quiet delay)
UPLOADING = "uploading"
FAILED = "failed"        # next_try set: retried then; NULL: will not succeed, kept until a new write
DONE = "done"            # only passes through: a done row is deleted in the same step
STATES = (DIRTY, QUEUED, UPLOADING, FAILED, DONE)

PRAGMAS: tuple[tuple[str, str, str], ...] = (
    ("journal_mode", "WAL", "one fsync-free append per commit; readers never block the writer"),
    ("synchronous", "NORMAL", "a commit survives a killed process; checkpoint() is the power-cut barrier"),
    ("busy_timeout", "10000", "a second process on this cache dir is refused earlier, but never fail busy"),
    ("foreign_keys", "OFF", "one table, no references"),
)


class JournalError(OSError):
    """The journal cannot be opened or written; the message names the file. An OSError with ENOSPC
    when the disk is full (the writer then gets ENOSPC, as for its spool), else EIO."""

    def __init__(self, message: str, code: int = errno.EIO) -> None:
        super().__init__(code, message)

    def __str__(self) -> str:
        return str(self.strerror)


@dataclass
class DirtyRow:
    """One dirty file as the journal records it. Field order is the column order."""

    local_id: int
    spool: str                           # file name of the spool under the spool dir
    state: str = DIRTY
    node_id: str | None = None           # None: a new file, not on the server yet
    parent_id: str | None = None         # where a new file goes (kept current on rename)
    name: str | None = None
    base_version: int | None = None      # content version the local copy was based on (None: new)
    base_md5: str | None = None
    base_size: int = 0
    base_limit: int = 0                  # bytes below this that are not local come from the base
    size: int = 0
    mtime_ns: int = 0
    ranges: list[tuple[int, int]] = field(default_factory=list)   # local byte ranges of the spool
    attrs: str | None = None             # POSIX attributes to apply (JSON text, owned by fs attrs)
    ino: int = 0                         # inode number the file shows (and keeps after upload)
    attempts: int = 0
    next_try: float | None = None        # wall clock time of the next upload try
    last_error: str | None = None
    updated_at: float = 0.0


_COLUMNS = tuple(f.name for f in fields(DirtyRow))
_JSON_COLUMNS = frozenset({"ranges"})


def _to_sql(name: str, value: Any) -> Any:
    if name in _JSON_COLUMNS:
        return json.dumps([list(r) for r in value], separators=(",", ":"))
    return value


def _from_sql(row: tuple[Any, ...]) -> DirtyRow:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["ranges"] = [(int(a), int(b)) for a, b in json.loads(values["ranges"] or "[]")]
    return DirtyRow(**values)


def _to_v1(con: sqlite3.Connection) -> None:
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
    con.execute("INSERT INTO meta(key, value) VALUES ('next_local_id', 1)")
    con.execute(
        """CREATE TABLE dirty (
            local_id INTEGER PRIMARY KEY,
            spool TEXT NOT NULL,
            state TEXT NOT NULL,
            node_id TEXT,
            parent_id TEXT,
            name TEXT,
            base_version INTEGER,
            base_md5 TEXT,
            base_size INTEGER NOT NULL DEFAULT 0,
            base_limit INTEGER NOT NULL DEFAULT 0,
            size INTEGER NOT NULL DEFAULT 0,
            mtime_ns INTEGER NOT NULL DEFAULT 0,
            ranges TEXT NOT NULL DEFAULT '[]',
            attrs TEXT,
            ino INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_try REAL,
            last_error TEXT,
            updated_at REAL NOT NULL DEFAULT 0
        )""")


# MIGRATIONS[v] brings a journal at user_version v to v + 1 inside one transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _to_v1}


class Journal:
    """The dirty-file journal (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        """Open or create the journal; raises JournalError (naming the file) when it is unusable."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # private from the start: it names files; SQLite gives -wal/-shm the same mode
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._unusable(f"cannot open it ({exc})") from exc
        try:
            self._check(con)
            for name, value, _why in PRAGMAS:
                con.execute(f"PRAGMA {name}={value}")
            self._migrate(con)
        except sqlite3.DatabaseError as exc:
            con.close()
            raise self._unusable(f"SQLite reports: {exc}") from exc
        except JournalError:
            con.close()
            raise
        self._con = con

    def _unusable(self, why: str) -> JournalError:
        return JournalError(
            f"the write journal {self.path} is unusable: {why}. It is the only record of changes not yet "
            f"uploaded, so the mount will not start over it: copy it somewhere safe, then move it away "
            f"to start with an empty journal (the files in {self.path.parent / 'spool'} hold their data)")

    def _check(self, con: sqlite3.Connection) -> None:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        app_id = con.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == 0 and not tables:
            return                      # a new, empty file
        if app_id != APPLICATION_ID:
            raise self._unusable(f"it is not an acdfuse write journal (application_id {app_id:#x})")
        if version > SCHEMA_VERSION:
            raise self._unusable(f"it was written by a newer acdfuse (schema {version}, this one knows "
                                 f"{SCHEMA_VERSION})")
        result = con.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise self._unusable(f"integrity check failed: {result}")

    def _migrate(self, con: sqlite3.Connection) -> None:
        migrate(con, MIGRATIONS, SCHEMA_VERSION, APPLICATION_ID, f"write journal {self.path}")

    def close(self) -> None:
        with self._lock:
            con, self._con = self._con, None
        if con is not None:
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.DatabaseError as exc:
                log.warning("write journal %s: final checkpoint failed (the WAL keeps the data): %s",
                            self.path, exc)
            con.close()

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- statements --------------------------------------------------------------------------
    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run fn on the connection in one transaction; SQLite failures become JournalError."""
        with self._lock:
            con = self._con
            if con is None:
                raise JournalError(f"the write journal {self.path} is not open")
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(con)
                    con.execute("COMMIT")
                except BaseException:
                    rollback(con)
                    raise
            except sqlite3.DatabaseError as exc:
                code = errno.ENOSPC if "full" in str(exc) else errno.EIO
                raise JournalError(f"the write journal {self.path} cannot be written: {exc}", code) from exc
            return result

    def next_local_id(self) -> int:
        """The first local id never used by a row: ids (and the inode numbers made from them) are
        never handed out twice, also after their rows are gone."""
        def read(con: sqlite3.Connection) -> int:
            counter = int(con.execute("SELECT value FROM meta WHERE key = 'next_local_id'").fetchone()[0])
            top = con.execute("SELECT max(local_id) FROM dirty").fetchone()[0]
            return max(counter, int(top or 0) + 1)
        return int(self._run(read))

    def put(self, row: DirtyRow) -> None:
        """Insert or replace a row (the whole record); the id counter moves past its id."""
        row.updated_at = time.time()
        values = [_to_sql(name, getattr(row, name)) for name in _COLUMNS]
        marks = ", ".join("?" for _ in _COLUMNS)
        sql = f"INSERT OR REPLACE INTO dirty ({', '.join(_COLUMNS)}) VALUES ({marks})"

        def write(con: sqlite3.Connection) -> None:
            con.execute(sql, values)
            con.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'next_local_id'",
                        (row.local_id + 1,))
        self._run(write)

    def update(self, local_id: int, **changes: Any) -> None:
        """Change some columns of one row; a row that is gone is left gone."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown journal columns: {sorted(unknown)}")
        if "state" in changes and changes["state"] not in STATES:
            raise ValueError(f"unknown state {changes['state']!r}")
        changes["updated_at"] = time.time()
        names = list(changes)
        sql = f"UPDATE dirty SET {', '.join(f'{n} = ?' for n in names)} WHERE local_id = ?"
        params = [_to_sql(n, changes[n]) for n in names] + [local_id]
        self._run(lambda con: con.execute(sql, params))

    def delete(self, local_id: int) -> None:
        self._run(lambda con: con.execute("DELETE FROM dirty WHERE local_id = ?", (local_id,)))

    def get(self, local_id: int) -> DirtyRow | None:
        rows = self._run(lambda con: con.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM dirty WHERE local_id = ?", (local_id,)).fetchall())
        return _from_sql(rows[0]) if rows else None

    def rows(self) -> list[DirtyRow]:
        """Every dirty file, oldest first."""
        found = self._run(lambda con: con.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM dirty ORDER BY local_id").fetchall())
        return [_from_sql(r) for r in found]

    def counts(self) -> dict[str, int]:
        found = self._run(lambda con: con.execute(
            "SELECT state, count(*) FROM dirty GROUP BY state").fetchall())
        return {str(state): int(n) for state, n in found}

    def checkpoint(self) -> None:
        """Make every commit so far survive a power cut (a FULL checkpoint fsyncs the database)."""
        with self._lock:
            con = self._con
            if con is None:
                raise JournalError(f"the write journal {self.path} is not open")
            try:
                busy = con.execute("PRAGMA wal_checkpoint(FULL)").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise JournalError(f"the write journal {self.path} cannot be synced: {exc}") from exc
        if busy:
            # another connection held a read snapshot; fall back to fsyncing the WAL itself
            _fsync_path(Path(f"{self.path}-wal"))


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



@dataclass(frozen=True)
class PendingSummary:
    """What a mount's journal says is not on the server yet (for ``acdfuse umount``)."""

    files: int = 0                   # closed and waiting, or being uploaded (retried ones included)
    bytes: int = 0
    open_files: int = 0              # still open for writing: they go up after their close
    retrying: int = 0                # failed, to be tried again
    last_error: str | None = None    # of a retrying file
    refused: tuple[tuple[str, str], ...] = ()   # (name, reason): will not be retried in this mount

    @property
    def waiting(self) -> bool:
        return self.files > 0


def _read_only(path: Path, sql: str, timeout: float = 10) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` from a journal (of a running mount), read without writing to it; an absent
    journal, or one not set up yet, has none."""
    if not Path(path).exists():
        return []
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot read the write journal {path}: {exc}") from exc
    try:
        return con.execute(sql).fetchall()
    except sqlite3.DatabaseError as exc:
        if "no such table" in str(exc):
            return []
        raise JournalError(f"cannot read the write journal {path}: {exc}") from exc
    finally:
        con.close()


def unconfirmed_files(path: Path, timeout: float = 10) -> int:
    """Rows of a journal, read without writing to it: files of any state not confirmed on the server
    yet (tests and scripts wait for this to reach 0)."""
    rows = _read_only(path, "SELECT count(*) FROM dirty", timeout)
    return int(rows[0][0]) if rows else 0


def pending_summary(path: Path) -> PendingSummary:
    """Read a journal (of a running mount) without writing to it; an absent journal is empty."""
    rows = _read_only(path, "SELECT name, state, size, next_try, last_error FROM dirty")
    files = size = retrying = still_open = 0
    last_error: str | None = None
    refused: list[tuple[str, str]] = []
    for name, state, nbytes, next_try, error in rows:
        if state == FAILED and next_try is None:
            refused.append((str(name), str(error or "")))
            continue
        if state == DIRTY:
            still_open += 1
            continue
        files += 1
        size += int(nbytes or 0)
        if state == FAILED:
            retrying += 1
            last_error = error
    return PendingSummary(files, size, still_open, retrying, last_error, tuple(refused))
