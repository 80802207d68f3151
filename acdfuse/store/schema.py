"""Schema of the node mirror: table DDL, the schema version and the migrations that reach it.

A "table set" is the four tables that hold one tree (nodes, parentage, dirents, properties). The
live set has plain names; a ``reset`` rebuild fills a second set with the ``_new`` suffix and then
renames it over the live one in one transaction (see sync.py).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

# Bump when the layout changes and add a migration from the previous version below.
SCHEMA_VERSION = 1
# PRAGMA application_id marks the file as ours ("acdf"), so a foreign SQLite file in the cache
# directory is recognised instead of being mistaken for an empty mirror.
APPLICATION_ID = 0x61636466
# Inode 1 is kept for the root folder (FUSE's root inode); other nodes count up from 2.
ROOT_INO = 1
FIRST_INO = 2


@dataclass(frozen=True, slots=True)
class TableSet:
    nodes: str
    parentage: str
    dirents: str
    properties: str

    @classmethod
    def suffixed(cls, suffix: str) -> TableSet:
        return cls(f"nodes{suffix}", f"parentage{suffix}", f"dirents{suffix}", f"properties{suffix}")

    def names(self) -> tuple[str, ...]:
        return (self.nodes, self.parentage, self.dirents, self.properties)


LIVE = TableSet.suffixed("")
BUILD = TableSet.suffixed("_new")
RETIRED = TableSet.suffixed("_old")


def create_tables(con: sqlite3.Connection, ts: TableSet) -> None:
    """Create one table set without its secondary indexes (bulk loads add those afterwards)."""
    # nodes: one row per node. ino is the stable inode number (rowid, so by_ino is a rowid
    # lookup). Content properties (size, md5, content_version) live here too: they are 1:1 with
    # the node and every stat needs them, so a separate table would only cost a join.
    # created/modified are epoch seconds.
    con.execute(
        f"""CREATE TABLE {ts.nodes} (
            ino INTEGER PRIMARY KEY,
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            status TEXT NOT NULL,
            size INTEGER NOT NULL DEFAULT 0,
            md5 TEXT,
            content_version INTEGER NOT NULL DEFAULT 0,
            version INTEGER NOT NULL DEFAULT 0,
            created REAL,
            modified REAL,
            is_root INTEGER NOT NULL DEFAULT 0
        )"""
    )
    # parentage: every (child, parent) edge whatever the child's status, so Node.parents is
    # complete for trashed nodes too. Parents are ids: a parent may arrive later in the stream.
    con.execute(
        f"""CREATE TABLE {ts.parentage} (
            child INTEGER NOT NULL,
            parent TEXT NOT NULL,
            PRIMARY KEY (child, parent)
        ) WITHOUT ROWID"""
    )
    # dirents: the directory index, only AVAILABLE named non-root nodes, one row per parent (so a
    # multi-parent folder is listed under each). Keyed on (parent, name): a path of depth d costs
    # d primary-key lookups. Names are exact-case, as the local side is case-sensitive.
    con.execute(
        f"""CREATE TABLE {ts.dirents} (
            parent TEXT NOT NULL,
            name TEXT NOT NULL,
            child INTEGER NOT NULL,
            PRIMARY KEY (parent, name)
        ) WITHOUT ROWID"""
    )
    # properties: app-scoped key/values (owner -> key -> value) when the server sends them.
    con.execute(
        f"""CREATE TABLE {ts.properties} (
            ino INTEGER NOT NULL,
            owner TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT,
            PRIMARY KEY (ino, owner, key)
        ) WITHOUT ROWID"""
    )


def index_statements(ts: TableSet, tag: int) -> list[str]:
    """Secondary indexes. Index names carry ``tag`` because they keep their name when the
    table set is renamed, and every name must be unique in the schema."""
    return [
        f"CREATE UNIQUE INDEX ix_nodes_id_{tag} ON {ts.nodes}(id)",
        # root() is a lookup on this tiny partial index
        f"CREATE INDEX ix_nodes_root_{tag} ON {ts.nodes}(is_root) WHERE is_root",
        # a node's directory entries, to drop them when it is renamed/moved/trashed
        f"CREATE INDEX ix_dirents_child_{tag} ON {ts.dirents}(child)",
    ]


def create_indexes(con: sqlite3.Connection, ts: TableSet, tag: int) -> None:
    for sql in index_statements(ts, tag):
        con.execute(sql)


def _to_v1(con: sqlite3.Connection) -> None:
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
    # next_ino: inode numbers are never reused; tag: counter for unique index names.
    con.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                    [("next_ino", FIRST_INO), ("tag", 1), ("checkpoint", None)])
    create_tables(con, LIVE)
    create_indexes(con, LIVE, 0)


# MIGRATIONS[v] upgrades a database at user_version v to v + 1, inside one transaction.
# create_tables()/index_statements() always describe the LATEST layout (a reset rebuild creates
# fresh tables with them), so a migration must bring old tables to exactly that layout.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    0: _to_v1,
}

REQUIRED_TABLES = frozenset({"meta", *LIVE.names()})
