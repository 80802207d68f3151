"""Per-node writes into one table set: upsert a node, purge a node. Used by incremental syncs,
by ``apply_local`` and by the replay of local answers onto a freshly rebuilt tree.

The caller holds ``Database.write_lock`` and has a transaction open; nothing here commits.
"""

from __future__ import annotations

import json
import sqlite3

from acdfuse.store.node import AVAILABLE, PURGED, StagedRow, is_storable
from acdfuse.store.schema import ROOT_INO, TableSet

# ISO-8601 -> epoch seconds inside SQLite; rounded to the millisecond the server sends.
EPOCH_SQL = "round((julianday(?) - 2440587.5) * 86400.0, 3)"

Edge = tuple[str, str]  # (parent id, name): the key of one directory entry


class TreeWriter:
    """Applies node states to one table set and records what it touched, for cache invalidation."""

    def __init__(self, con: sqlite3.Connection, ts: TableSet, *, inos_from: TableSet | None = None) -> None:
        self.con = con
        self.ts = ts
        # When writing into a table set being built, a node new to it takes the inode number it
        # has in ``inos_from`` (the live set), so replayed local answers keep their inode.
        self._inos_from = inos_from
        self.edges: set[Edge] = set()     # directory entries removed or added
        self.node_ids: set[str] = set()   # nodes whose row changed or vanished
        self.stored = 0
        self.purged = 0
        self.skipped = 0
        self._next_ino: int | None = None
        self._sql_old = f"SELECT ino, version FROM {ts.nodes} WHERE id = ?"
        self._sql_old_edges = f"SELECT parent, name FROM {ts.dirents} WHERE child = ?"
        self._sql_node = (
            f"INSERT OR REPLACE INTO {ts.nodes} (ino, id, name, kind, status, size, md5, "
            f"content_version, version, created, modified, is_root) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {EPOCH_SQL}, {EPOCH_SQL}, ?)"
        )

    # ---- inode numbers ---------------------------------------------------------------------
    def _allocate(self, node_id: str, is_root: int, prefer: int | None = None) -> int:
        if prefer is not None and not is_root and self.con.execute(
                f"SELECT 1 FROM {self.ts.nodes} WHERE ino = ?", (prefer,)).fetchone() is None:
            # the inode number a pending new file showed before it had a node id (see vfs/writes.py)
            return prefer
        if self._inos_from is not None:
            row = self.con.execute(f"SELECT ino FROM {self._inos_from.nodes} WHERE id = ?",
                                   (node_id,)).fetchone()
            if row is not None and self.con.execute(
                    f"SELECT 1 FROM {self.ts.nodes} WHERE ino = ?", (row[0],)).fetchone() is None:
                return int(row[0])
        if is_root and self.con.execute(
                f"SELECT 1 FROM {self.ts.nodes} WHERE ino = ?", (ROOT_INO,)).fetchone() is None:
            return ROOT_INO
        if self._next_ino is None:
            self._next_ino = int(self.con.execute(
                "SELECT value FROM meta WHERE key = 'next_ino'").fetchone()[0])
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def finish(self) -> None:
        """Persist the inode counter; call before COMMIT."""
        if self._next_ino is not None:
            self.con.execute("UPDATE meta SET value = ? WHERE key = 'next_ino'", (self._next_ino,))
            self._next_ino = None

    # ---- writes ----------------------------------------------------------------------------
    def apply(self, row: StagedRow, prefer_ino: int | None = None) -> int | None:
        """Write one node state; returns its inode number, or None if the mirror keeps no row.

        ``prefer_ino``: the inode number a node new to the mirror takes when it is free.
        """
        node_id, name, _kind, status = row[0], row[1], row[2], row[3]
        if status == PURGED:
            self.purge(node_id)
            return None
        old = self.con.execute(self._sql_old, (node_id,)).fetchone()
        if not is_storable(status, name, row[10]):
            # An unfinished upload or a nameless entry: keep whatever we had for this node.
            self.skipped += 1
            return old[0] if old else None
        if old is not None and row[7] and old[1] > row[7]:
            # Older than what we hold (e.g. a change listed before our own apply_local); the
            # newer state wins, so applying an answer twice or out of order is harmless. An
            # answer without a version (0) cannot be ordered and is taken as the newest.
            self.skipped += 1
            return int(old[0])
        if old is not None:
            ino = int(old[0])
            self._drop_entries(ino)
        else:
            ino = self._allocate(node_id, row[10], prefer_ino)
        con = self.con
        con.execute(self._sql_node, (ino, node_id, name or "", row[2], status, row[4], row[5],
                                     row[6], row[7], row[8], row[9], row[10]))
        parents = json.loads(row[11])
        con.executemany(f"INSERT OR IGNORE INTO {self.ts.parentage} (child, parent) VALUES (?, ?)",
                        [(ino, p) for p in parents])
        if status == AVAILABLE and not row[10]:
            entries = [(p, name, ino) for p in parents]
            # REPLACE: a stale entry of the same name (a node renamed away on the server whose
            # change comes later in the stream) gives way; its own change rewrites it.
            con.executemany(
                f"INSERT OR REPLACE INTO {self.ts.dirents} (parent, name, child) VALUES (?, ?, ?)",
                entries)
            self.edges.update((p, name) for p in parents if name)
        if row[12]:
            props = json.loads(row[12])
            con.executemany(
                f"INSERT OR REPLACE INTO {self.ts.properties} (ino, owner, key, value) VALUES (?, ?, ?, ?)",
                [(ino, owner, key, value if value is None else str(value))
                 for owner, kv in props.items() if isinstance(kv, dict) for key, value in kv.items()])
        self.node_ids.add(node_id)
        self.stored += 1
        return ino

    def _drop_entries(self, ino: int) -> None:
        con = self.con
        self.edges.update(con.execute(self._sql_old_edges, (ino,)).fetchall())
        con.execute(f"DELETE FROM {self.ts.dirents} WHERE child = ?", (ino,))
        con.execute(f"DELETE FROM {self.ts.parentage} WHERE child = ?", (ino,))
        con.execute(f"DELETE FROM {self.ts.properties} WHERE ino = ?", (ino,))

    def purge(self, node_id: str) -> bool:
        old = self.con.execute(self._sql_old, (node_id,)).fetchone()
        self.node_ids.add(node_id)
        if old is None:
            return False
        self._drop_entries(int(old[0]))
        self.con.execute(f"DELETE FROM {self.ts.nodes} WHERE ino = ?", (old[0],))
        self.purged += 1
        return True
