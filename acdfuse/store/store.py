"""``NodeStore``: the mount's view of the drive tree, read from the SQLite mirror.

Reads go through a per-thread read-only connection and never wait for a sync (WAL). Writes
(sync, apply_local) go through the single writer connection under ``Database.write_lock``.
Lock order: ``_sync_lock`` -> ``Database.write_lock`` -> ``PathCache._lock``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from acdfuse.store.database import Database
from acdfuse.store.errors import StoreError
from acdfuse.store.migrate import rollback
from acdfuse.store.node import (
    FOLDER,
    NODE_COLUMNS,
    Node,
    node_from_row,
    restaged_row,
    staged_row,
    transient_node,
)
from acdfuse.store.pathcache import Edge, PathCache
from acdfuse.store.schema import LIVE
from acdfuse.store.sync import GetChanges, Synchronizer, SyncResult
from acdfuse.store.writer import TreeWriter

log = logging.getLogger(__name__)

_COLS = NODE_COLUMNS.format(parentage=LIVE.parentage, properties=LIVE.properties)
_SQL_BY_ID = f"SELECT {_COLS} FROM {LIVE.nodes} n WHERE n.id = ?"
_SQL_BY_INO = f"SELECT {_COLS} FROM {LIVE.nodes} n WHERE n.ino = ?"
_SQL_ROOT = f"SELECT {_COLS} FROM {LIVE.nodes} n WHERE n.is_root ORDER BY n.ino LIMIT 1"
_SQL_CHILDREN = (f"SELECT {_COLS} FROM {LIVE.dirents} d JOIN {LIVE.nodes} n ON n.ino = d.child "
                 "WHERE d.parent = ? ORDER BY d.name")
_SQL_CHILD = (f"SELECT {_COLS} FROM {LIVE.dirents} d JOIN {LIVE.nodes} n ON n.ino = d.child "
              "WHERE d.parent = ? AND d.name = ?")
_SQL_STEP = (f"SELECT n.ino, n.id, n.kind FROM {LIVE.dirents} d JOIN {LIVE.nodes} n ON n.ino = d.child "
             "WHERE d.parent = ? AND d.name = ?")

# every trashed node but the root: the drive's trash as ``GET trash`` lists it (a trashed folder's
# descendants keep AVAILABLE and stay under it). A scan of the nodes table; the trash view
# (fs/trashview.py) runs it once per change of the tree, not per lookup.
_SQL_TRASHED = f"SELECT {_COLS} FROM {LIVE.nodes} n WHERE n.status = 'TRASH' AND NOT n.is_root"

_SQL_SUBFOLDERS = (f"SELECT count(*) FROM {LIVE.dirents} d JOIN {LIVE.nodes} n ON n.ino = d.child "
                   "WHERE d.parent = ? AND n.kind = 'FOLDER'")


def normalize(path: str) -> str:
    """'/a//b/' -> '/a/b'. Names are taken verbatim (exact case)."""
    if path == "/" or (path.startswith("/") and not path.endswith("/") and "//" not in path):
        return path
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts)


class NodeStore:
    """Persistent mirror of the drive's node tree (see the package docstring)."""

    def __init__(self, db_path: Path, *, cache_size: int = 8192) -> None:
        self.path = Path(db_path)
        self._db = Database(self.path)
        self._cache = PathCache(cache_size)
        self._sync_lock = threading.Lock()
        self._syncer = Synchronizer(self._db, self._cache)

    # ---- lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        """Create or migrate the database. A corrupt/foreign file is moved aside (warning) and an
        empty mirror started; a newer schema raises SchemaTooNew and the file stays untouched."""
        self._db.open()

    def close(self) -> None:
        self._db.close()
        self._cache.clear()

    def __enter__(self) -> NodeStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def recovered_from(self) -> Path | None:
        """Where open() moved an unusable database file, if it did."""
        return self._db.recovered_from

    # ---- reads -----------------------------------------------------------------------------
    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run a read on this thread's connection; SQLite failures become StoreError."""
        try:
            return self._db.reader().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"node mirror {self.path}: {exc}") from exc

    def _one(self, sql: str, params: tuple[Any, ...]) -> Node | None:
        rows = self._rows(sql, params)
        return node_from_row(rows[0]) if rows else None

    def root(self) -> Node | None:
        return self._one(_SQL_ROOT, ())

    def get(self, node_id: str) -> Node | None:
        return self._one(_SQL_BY_ID, (node_id,))

    def by_ino(self, ino: int) -> Node | None:
        return self._one(_SQL_BY_INO, (ino,))

    def child(self, folder_id: str, name: str) -> Node | None:
        return self._one(_SQL_CHILD, (folder_id, name))

    def children(self, folder_id: str) -> list[Node]:
        """AVAILABLE named children, sorted by name."""
        return [node_from_row(r) for r in self._rows(_SQL_CHILDREN, (folder_id,))]

    def resolve(self, path: str) -> Node | None:
        """The AVAILABLE node at ``path`` (exact-case names, '/' is the root), or None."""
        key = normalize(path)
        hit = self._cache.get(key)
        if hit is not None:
            return hit[0]
        token = self._cache.token()
        con = self._db.reader()
        try:
            con.execute("BEGIN")  # one snapshot for the whole walk
            try:
                node, edges = self._walk(con, key)
            finally:
                con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"node mirror {self.path}: resolving {key!r}: {exc}") from exc
        self._cache.put(key, node, edges, token)
        return node

    def _walk(self, con: sqlite3.Connection, key: str) -> tuple[Node | None, tuple[Edge, ...]]:
        if key == "/":
            row = con.execute(_SQL_ROOT).fetchone()
            return (node_from_row(row) if row else None), ()
        parent_key, _, last = key.rpartition("/")
        names: list[str]
        prefix = self._cache.get(parent_key or "/")
        if prefix is not None and prefix[0] is not None and prefix[0].kind == FOLDER:
            # The parent folder is cached: one lookup instead of a walk from the root.
            cur_id, edges, names = prefix[0].id, list(prefix[1]), [last]
        else:
            root = con.execute(_SQL_ROOT).fetchone()
            if root is None:
                return None, ()
            cur_id, edges, names = root[1], [], key[1:].split("/")
        ino = 0
        for i, name in enumerate(names):
            edges.append((cur_id, name))
            row = con.execute(_SQL_STEP, (cur_id, name)).fetchone()
            if row is None or (i < len(names) - 1 and row[2] != FOLDER):
                return None, tuple(edges)
            ino, cur_id = row[0], row[1]
        row = con.execute(_SQL_BY_INO, (ino,)).fetchone()
        return (node_from_row(row) if row else None), tuple(edges)

    def trashed(self) -> list[Node]:
        """Every node in the drive's trash (status TRASH), in no particular order."""
        return [node_from_row(r) for r in self._rows(_SQL_TRASHED)]

    def subfolder_count(self, folder_id: str) -> int:
        """Number of AVAILABLE subfolders (for st_nlink = 2 + n): one range scan of the index."""
        return int(self._rows(_SQL_SUBFOLDERS, (folder_id,))[0][0])

    @property
    def checkpoint(self) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = 'checkpoint'")
        return rows[0][0] if rows and rows[0][0] else None

    @property
    def is_empty(self) -> bool:
        return not self._rows(f"SELECT 1 FROM {LIVE.nodes} LIMIT 1")

    def count(self) -> int:
        return int(self._rows(f"SELECT count(*) FROM {LIVE.nodes}")[0][0])

    def path_of(self, node_id: str) -> str | None:
        """A shortest path of an AVAILABLE node from the root, or None if it is not reachable.
        Breadth-first over parents with a visited set, so cycles end."""
        start = self.get(node_id)
        if start is None or not start.is_available:
            return None
        # frontier of (node, names from it down to the start node)
        frontier: list[tuple[Node, tuple[str, ...]]] = [(start, ())]
        seen = {start.id}
        while frontier:
            nxt: list[tuple[Node, tuple[str, ...]]] = []
            for node, below in frontier:
                if node.is_root:
                    return "/" + "/".join(below)
                names = (node.name, *below)
                for pid in node.parents:
                    if pid in seen or self.child(pid, node.name) is None:
                        continue
                    seen.add(pid)
                    parent = self.get(pid)
                    if parent is not None and parent.is_available:
                        nxt.append((parent, names))
            frontier = nxt
        return None

    def walk(self, top: str = "/") -> Iterator[tuple[str, Node]]:
        """Every (path, node) below ``top`` depth-first, a multi-parent folder under each of its
        parents; a folder that is its own ancestor is not entered again (cycles end)."""
        start = self.resolve(top)
        if start is None:
            return
        stack: list[tuple[str, Node, frozenset[str]]] = [(normalize(top), start, frozenset())]
        while stack:
            path, node, ancestors = stack.pop()
            yield path, node
            if node.kind != FOLDER or node.id in ancestors:
                continue
            inner = ancestors | {node.id}
            base = "" if path == "/" else path
            for child in reversed(self.children(node.id)):
                stack.append((f"{base}/{child.name}", child, inner))

    def properties(self, node_id: str) -> dict[str, dict[str, str]]:
        """owner -> key -> value of a node's app properties, as the server last showed them."""
        rows = self._rows(
            f"SELECT p.owner, p.key, p.value FROM {LIVE.properties} p JOIN {LIVE.nodes} n "
            "ON n.ino = p.ino WHERE n.id = ?", (node_id,))
        out: dict[str, dict[str, str]] = {}
        for owner, key, value in rows:
            out.setdefault(owner, {})[key] = value
        return out

    def property_owners(self, limit: int = 2) -> list[str]:
        """Owners that have properties anywhere in the mirror (at most ``limit``). The server shows
        an app only its own properties, so a single one found is this app's owner id."""
        rows = self._rows(f"SELECT DISTINCT owner FROM {LIVE.properties} LIMIT ?", (limit,))
        return [r[0] for r in rows]

    # ---- writes ----------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction on the writer connection under the write lock; SQLite
        failures roll back and become StoreError."""
        db = self._db
        with db.write_lock:
            con = db.writer
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                rollback(con)
                raise StoreError(f"node mirror {self.path}: write failed: {exc}") from exc
            except BaseException:
                rollback(con)
                raise

    def sync(self, get_changes: GetChanges) -> SyncResult:
        """Apply ``get_changes(checkpoint=<stored>, include_purged=True)``; all or nothing.
        Raises SyncError (mirror unchanged) if the stream fails."""
        with self._sync_lock:
            return self._syncer.run(get_changes, self.checkpoint)

    def apply_local(self, node_json: Mapping[str, Any], *, ino: int | None = None) -> Node:
        """Write a server answer (create, rename, move, trash, restore, overwrite) at once. The
        same state arriving later through ``changes`` is applied idempotently.

        ``ino``: for a node the mirror does not hold yet, the inode number to give it if free (a
        pending new file keeps the number it showed before its upload)."""
        try:
            row = staged_row(node_json)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"cannot store server answer: {exc}") from exc
        with self._write() as con:
            writer = TreeWriter(con, LIVE)
            stored_ino = writer.apply(row, ino)
            writer.finish()
            if self._syncer.journal is not None:
                self._syncer.journal.append(row)
        self._cache.invalidate(writer.edges, writer.node_ids)
        node = self.get(row[0])
        if node is None:
            # Not kept (PENDING, nameless, purged): hand back the answer as a Node anyway.
            return transient_node(row, stored_ino or ino or 0)
        return node  # the stored state (a newer one if the mirror already had it)

    def set_properties(self, node_id: str, owner: str, put: Mapping[str, str],
                       delete: Iterable[str] = (), *, requests: int = 1) -> Node | None:
        """Show a property change the server has confirmed at once; None if the node is not here.

        The answers to a property PUT or DELETE carry no node, so the node's stored state is written
        again with the owner's map changed. Its version goes up by ``requests``, as the server bumps
        it once per property request: a ``changes`` entry staged before those requests (the same
        older version) then cannot put the old values back, and the server's own later state wins
        either way. During a rebuild the new state is replayed onto the new tree like any answer.
        """
        with self._write() as con:
            found = con.execute(_SQL_BY_ID, (node_id,)).fetchone()
            if found is None:
                return None
            node = node_from_row(found)
            props: dict[str, dict[str, str]] = {}
            for o, key, value in con.execute(
                    f"SELECT owner, key, value FROM {LIVE.properties} WHERE ino = ?", (node.ino,)):
                props.setdefault(o, {})[key] = value
            mine = props.setdefault(owner, {})
            for key in delete:
                mine.pop(key, None)
            mine.update(put)
            row = restaged_row(node, {o: kv for o, kv in props.items() if kv}, node.version + requests)
            writer = TreeWriter(con, LIVE)
            writer.apply(row)
            writer.finish()
            if self._syncer.journal is not None:
                self._syncer.journal.append(row)
        # name and parents are unchanged: only paths that end at this node hold a stale Node
        self._cache.invalidate((), (node_id,))
        return self.get(node_id)

    def forget(self, node_id: str) -> bool:
        """Drop a node from the mirror at once (e.g. after a purge); True if it was there."""
        with self._write() as con:
            writer = TreeWriter(con, LIVE)
            found = writer.purge(node_id)
        self._cache.invalidate(writer.edges, writer.node_ids)
        return found
