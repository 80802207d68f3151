"""Bringing the mirror up to date from the ``changes`` stream, all or nothing.

How "all or nothing" works without holding a million nodes in memory:

* Every ChangeSet is flattened and appended to ``temp.staged``, a TEMP table of the writer
  connection (a temp file, not RAM), in short batch transactions as the stream is read. Nothing
  visible to readers changes while the stream is being read, and the write lock is only held for
  a few milliseconds per batch, so ``apply_local`` is never stuck behind the network.
* Only when the iterator ends normally (the client saw ``{"end": true}``) is the staged data
  applied:
  - incremental (no ``reset``): the last state of every staged node is written into the live
    tables, together with the new checkpoint, in ONE transaction;
  - ``reset: true`` (always the case for the first sync): a complete second table set
    (``nodes_new``, ...) is built from the staged rows with set-based SQL, while readers keep
    using the live set; then, in ONE short transaction, the answers ``apply_local`` wrote during
    the rebuild are replayed onto it, the live set is renamed away, the new set renamed into its
    place and the checkpoint stored. WAL readers see either the whole old tree or the whole new
    one. The old set is dropped afterwards.
* If the stream raises (truncated, invalid JSON, non-200 statusCode inside, a malformed node),
  the staging area and any half-built table set are thrown away; live tables and checkpoint are
  untouched, the failure is logged, and ``SyncError`` is raised (``from`` the failure, so a caller
  can still tell an unreachable server from anything else). The next sync starts again from the
  stored checkpoint. A failure of the server, the network or the data it sent is logged as a
  WARNING; anything else is a bug (or a broken disk) and is logged as an ERROR with its traceback.

Lock order: ``NodeStore._sync_lock`` (one sync at a time) -> ``Database.write_lock`` ->
``PathCache._lock``. The write lock is never held while the iterator reads from the network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from acdfuse.api.common import RequestError, is_offline
from acdfuse.store.database import Database
from acdfuse.store.errors import MalformedChange, StoreError, SyncError
from acdfuse.store.migrate import rollback
from acdfuse.store.node import StagedRow, purged_row, staged_row
from acdfuse.store.pathcache import PathCache
from acdfuse.store.prefetch import prefetch
from acdfuse.store.schema import BUILD, LIVE, RETIRED, ROOT_INO, create_tables, index_statements
from acdfuse.store.writer import EPOCH_SQL, TreeWriter

log = logging.getLogger(__name__)

STAGE_BATCH = 2000        # rows per staging transaction
APPLY_BATCH = 2000        # staged rows read back per step of an incremental apply
# Beyond this many touched entries a targeted invalidation costs more than refilling the cache.
INVALIDATE_ALL_ABOVE = 2000
CHANGED_IDS_MAX = 10000

_COLUMNS = ("id, name, kind, status, size, md5, content_version, version, created, modified, "
            "is_root, parents, props")


class ChangeSetLike(Protocol):
    """What the client's get_changes yields (acdfuse.api ChangeSet or anything shaped like it).
    Read-only members, so a NamedTuple matches."""

    @property
    def nodes(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def purged_nodes(self) -> Sequence[Any]: ...  # ids (or node objects with an "id")
    @property
    def checkpoint(self) -> str: ...
    @property
    def reset(self) -> bool: ...


GetChanges = Callable[..., Iterable[ChangeSetLike]]


@dataclass(frozen=True, slots=True)
class SyncResult:
    checkpoint: str | None   # the checkpoint now stored
    reset: bool              # the tree was rebuilt from a full dump
    changesets: int          # ChangeSets read from the stream
    received: int            # node entries (incl. purges) read from the stream
    stored: int              # nodes written into the mirror
    purged: int              # nodes removed from the mirror
    skipped: int             # PENDING, nameless or stale entries left out
    seconds: float
    # ids of the nodes written or removed by an incremental sync; None after a rebuild or when
    # more than CHANGED_IDS_MAX changed (then treat everything as changed)
    changed: frozenset[str] | None = None


def expected_failure(exc: BaseException) -> bool:
    """A sync can fail this way without a bug here: the server refused or did not answer, the network
    failed, or the stream carried data the mirror cannot take."""
    return isinstance(exc, RequestError | StoreError) or is_offline(exc)


class Synchronizer:
    """Runs one sync at a time against a Database; see the module docstring for the protocol."""

    def __init__(self, db: Database, cache: PathCache) -> None:
        self.db = db
        self.cache = cache
        # Answers written by apply_local while a sync runs; a rebuild replays them onto the new
        # table set before the swap so the swap never hides a local create/rename/trash.
        # Guarded by db.write_lock. None when no sync is running.
        self.journal: list[StagedRow] | None = None

    # ---- entry point -----------------------------------------------------------------------
    def run(self, get_changes: GetChanges, checkpoint: str | None) -> SyncResult:
        started = time.monotonic()
        rebuild = False
        changesets = received = 0
        last_checkpoint: str | None = None
        self._reset_staging()
        with self.db.write_lock:
            # From the start of the sync (the dump's snapshot may be older than any answer the
            # mount writes from now on); only a rebuild uses it.
            self.journal = []
        try:
            stream: Iterator[ChangeSetLike] = prefetch(
                get_changes(checkpoint=checkpoint or "", include_purged=True), name="acdfuse-changes")
            for cs in stream:
                if cs.reset:
                    if changesets:
                        log.info("changes: reset inside the stream after %d change sets; "
                                 "restarting the rebuild", changesets)
                    rebuild = True
                    self._reset_staging()
                received += self._stage(cs)
                changesets += 1
                if not isinstance(cs.checkpoint, str) or not cs.checkpoint:
                    raise MalformedChange(f"change set {changesets} carries no checkpoint")
                last_checkpoint = cs.checkpoint
            if last_checkpoint is None:
                # Nothing at all (not even an empty change set): nothing to commit.
                return SyncResult(checkpoint, False, 0, 0, 0, 0, 0, time.monotonic() - started,
                                  frozenset())
            changed: frozenset[str] | None = None
            if rebuild:
                counts = self._rebuild(last_checkpoint)
            else:
                counts, changed = self._apply(last_checkpoint)
        except Exception as exc:
            self._abort()
            text = str(exc)
            detail = text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"
            if expected_failure(exc):
                log.warning("sync from checkpoint %r failed after %d change set(s) and %d node(s); "
                            "mirror and checkpoint left as they were, the next sync retries: %s",
                            checkpoint, changesets, received, detail)
            else:
                log.error("sync from checkpoint %r failed after %d change set(s) and %d node(s) with "
                          "an unexpected error (a bug?); mirror and checkpoint left as they were: %s",
                          checkpoint, changesets, received, detail, exc_info=exc)
            raise SyncError(f"sync failed, mirror unchanged: {detail}") from exc
        finally:
            with self.db.write_lock:
                self.journal = None  # also after KeyboardInterrupt & co, so it never grows unbounded
            self._reset_staging()
        result = SyncResult(last_checkpoint, rebuild, changesets, received, *counts,
                            seconds=time.monotonic() - started, changed=changed)
        log.info("sync done: %s", result)
        return result

    # ---- staging ---------------------------------------------------------------------------
    def _reset_staging(self) -> None:
        with self.db.write_lock:
            con = self.db.writer
            con.execute(f"CREATE TEMP TABLE IF NOT EXISTS staged (seq INTEGER PRIMARY KEY, {_COLUMNS})")
            con.execute("DELETE FROM temp.staged")
            con.execute("DROP TABLE IF EXISTS temp.final")

    def _stage(self, cs: ChangeSetLike) -> int:
        rows = [staged_row(n) for n in (cs.nodes or ())]
        for p in cs.purged_nodes or ():
            rows.append(purged_row(p["id"] if isinstance(p, dict) else p))
        sql = f"INSERT INTO temp.staged ({_COLUMNS}) VALUES ({', '.join('?' * 13)})"
        for i in range(0, len(rows), STAGE_BATCH):
            with self.db.write_lock:
                con = self.db.writer
                con.execute("BEGIN")
                try:
                    con.executemany(sql, rows[i:i + STAGE_BATCH])
                    con.execute("COMMIT")
                except BaseException:
                    rollback(con)
                    raise
        return len(rows)

    def _abort(self) -> None:
        with self.db.write_lock:
            self.journal = None
            con = self.db.writer
            if con.in_transaction:
                rollback(con)
            self._drop_tables(BUILD.names())

    def _drop_tables(self, names: Iterable[str]) -> None:
        con = self.db.writer
        con.execute("BEGIN IMMEDIATE")
        try:
            for name in names:
                con.execute(f"DROP TABLE IF EXISTS {name}")
            con.execute("COMMIT")
        except BaseException:
            rollback(con)
            raise

    def _final_rows(self) -> None:
        """temp.final: the seq of the last staged state of every node id."""
        con = self.db.writer
        con.execute("CREATE TEMP TABLE IF NOT EXISTS final (seq INTEGER PRIMARY KEY, ino INTEGER)")
        con.execute("DELETE FROM temp.final")
        con.execute("INSERT INTO temp.final (seq) SELECT max(seq) FROM temp.staged GROUP BY id")

    # ---- incremental -----------------------------------------------------------------------
    def _apply(self, checkpoint: str) -> tuple[tuple[int, int, int], frozenset[str] | None]:
        with self.db.write_lock:
            con = self.db.writer
            con.execute("BEGIN IMMEDIATE")
            try:
                self._final_rows()
                writer = TreeWriter(con, LIVE)
                last = 0
                while True:
                    rows = con.execute(
                        f"SELECT f.seq, {_COLUMNS} FROM temp.final f JOIN temp.staged s ON s.seq = f.seq "
                        f"WHERE f.seq > ? ORDER BY f.seq LIMIT ?", (last, APPLY_BATCH)).fetchall()
                    if not rows:
                        break
                    last = rows[-1][0]
                    for r in rows:
                        writer.apply(r[1:])
                writer.finish()
                con.execute("UPDATE meta SET value = ? WHERE key = 'checkpoint'", (checkpoint,))
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise
        if len(writer.edges) + len(writer.node_ids) > INVALIDATE_ALL_ABOVE:
            self.cache.clear()
        else:
            self.cache.invalidate(writer.edges, writer.node_ids)
        changed = frozenset(writer.node_ids) if len(writer.node_ids) <= CHANGED_IDS_MAX else None
        return (writer.stored, writer.purged, writer.skipped), changed

    # ---- reset: build a new table set, then swap -------------------------------------------
    def _step(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        """Run statements in one transaction under the write lock (readers are not affected:
        they use the live tables)."""
        t0 = time.monotonic()
        with self.db.write_lock:
            con = self.db.writer
            con.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    con.execute(sql, params)
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise
        log.debug("rebuild step %.2fs: %s", time.monotonic() - t0, statements[0][0][:60])

    def _rebuild(self, checkpoint: str) -> tuple[int, int, int]:
        db = self.db
        with db.write_lock:
            con = db.writer
            self._drop_tables(BUILD.names())
            con.execute("BEGIN IMMEDIATE")
            try:
                create_tables(con, BUILD)
                self._final_rows()
                base = int(con.execute("SELECT value FROM meta WHERE key = 'next_ino'").fetchone()[0])
                tag = int(con.execute("SELECT value FROM meta WHERE key = 'tag'").fetchone()[0])
                con.execute("UPDATE meta SET value = ? WHERE key = 'tag'", (tag + 1,))
                # The root keeps inode 1 when it is free; everything else keeps the inode it
                # had in the live tree, and new nodes get fresh numbers above the counter.
                root = con.execute(
                    "SELECT s.seq, o.ino FROM temp.final f JOIN temp.staged s ON s.seq = f.seq "
                    f"LEFT JOIN {LIVE.nodes} o ON o.id = s.id WHERE s.is_root "
                    "AND s.status = 'AVAILABLE' ORDER BY s.seq DESC LIMIT 1").fetchone()
                root_seq, root_ino = (root[0], root[1]) if root else (-1, None)
                if root_ino is None and con.execute(
                        f"SELECT 1 FROM {LIVE.nodes} WHERE ino = ?", (ROOT_INO,)).fetchone() is None:
                    root_ino = ROOT_INO
                # New nodes get base + seq: unique, above every number handed out so far, and
                # computed in one pass; the gaps this leaves in the 63-bit space do not matter.
                con.execute(
                    "UPDATE temp.final SET ino = coalesce(("
                    f" SELECT o.ino FROM temp.staged s JOIN {LIVE.nodes} o ON o.id = s.id"
                    "  WHERE s.seq = temp.final.seq), ? + seq)", (base,))
                if root_ino is not None:
                    con.execute("UPDATE temp.final SET ino = ? WHERE seq = ?", (root_ino, root_seq))
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise
        storable = ("s.status NOT IN ('PURGED', 'PENDING') AND (s.is_root OR coalesce(s.name, '') <> '')")
        self._step(
            (f"INSERT INTO {BUILD.nodes} (ino, id, name, kind, status, size, md5, content_version, "
             "version, created, modified, is_root) "
             "SELECT f.ino, s.id, coalesce(s.name, ''), s.kind, s.status, s.size, s.md5, "
             "s.content_version, s.version, "
             f"{EPOCH_SQL.replace('?', 's.created')}, {EPOCH_SQL.replace('?', 's.modified')}, s.is_root "
             f"FROM temp.final f JOIN temp.staged s ON s.seq = f.seq WHERE f.ino IS NOT NULL AND {storable} "
             "ORDER BY f.ino", ()),
            ("UPDATE meta SET value = max(value, coalesce((SELECT max(ino) + 1 FROM "
             f"{BUILD.nodes}), 0)) WHERE key = 'next_ino'", ()),
        )
        self._step((
            f"INSERT OR IGNORE INTO {BUILD.parentage} (child, parent) "
            "SELECT f.ino, j.value FROM temp.final f JOIN temp.staged s ON s.seq = f.seq "
            f"JOIN {BUILD.nodes} n ON n.ino = f.ino, json_each(s.parents) j ORDER BY 1, 2", ()))
        self._step((
            f"INSERT OR REPLACE INTO {BUILD.dirents} (parent, name, child) "
            f"SELECT p.parent, n.name, n.ino FROM {BUILD.parentage} p JOIN {BUILD.nodes} n "
            "ON n.ino = p.child WHERE n.status = 'AVAILABLE' AND NOT n.is_root AND n.name <> '' "
            "ORDER BY p.parent, n.name, n.version", ()))
        self._step((
            f"INSERT OR REPLACE INTO {BUILD.properties} (ino, owner, key, value) "
            "SELECT f.ino, o.key, k.key, k.value FROM temp.final f JOIN temp.staged s ON s.seq = f.seq "
            f"JOIN {BUILD.nodes} n ON n.ino = f.ino, json_each(s.props) o, json_each(o.value) k "
            "WHERE s.props IS NOT NULL AND o.type = 'object'", ()))
        with db.write_lock:
            tag = int(db.writer.execute("SELECT value FROM meta WHERE key = 'tag'").fetchone()[0])
        self._step(*[(sql, ()) for sql in index_statements(BUILD, tag)])
        counts = self._swap(checkpoint)
        self.cache.clear()
        # Dropping a big table frees its pages one by one; readers are already on the new set.
        with db.write_lock:
            self._drop_tables(RETIRED.names())
        return counts

    def _swap(self, checkpoint: str) -> tuple[int, int, int]:
        with self.db.write_lock:
            con = self.db.writer
            con.execute("BEGIN IMMEDIATE")
            try:
                journal, self.journal = self.journal or [], None
                writer = TreeWriter(con, BUILD, inos_from=LIVE)
                for row in journal:
                    writer.apply(row)
                writer.finish()
                stored = con.execute(f"SELECT count(*) FROM {BUILD.nodes}").fetchone()[0]
                received = con.execute("SELECT count(*) FROM temp.final").fetchone()[0]
                for live, retired in zip(LIVE.names(), RETIRED.names(), strict=True):
                    con.execute(f"ALTER TABLE {live} RENAME TO {retired}")
                for build, live in zip(BUILD.names(), LIVE.names(), strict=True):
                    con.execute(f"ALTER TABLE {build} RENAME TO {live}")
                con.execute("UPDATE meta SET value = ? WHERE key = 'checkpoint'", (checkpoint,))
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise
        return stored, 0, received - stored
