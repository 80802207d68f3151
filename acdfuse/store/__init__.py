"""Persistent SQLite mirror of the drive's node tree, kept current from ``changes``.

Public interface (Contract 4, plus extras)::

    store = NodeStore(db_path)         # no I/O
    store.open(); store.close()        # corrupt file -> moved aside + warning; newer schema -> SchemaTooNew
    store.root() / get(id) / by_ino(ino) / resolve(path) / children(id) / child(id, name)
    store.checkpoint; store.is_empty
    store.sync(get_changes) -> SyncResult      # all or nothing; raises SyncError (mirror unchanged)
    store.apply_local(node_json) -> Node       # a server answer, visible at once
    extras: forget(id), subfolder_count(id), walk(top), path_of(id), properties(id), count(),
            recovered_from

See sync.py for how syncs stay all-or-nothing and how ``reset`` swaps a rebuilt tree in.
"""

from __future__ import annotations

from acdfuse.store.errors import SchemaTooNew, StoreError, SyncError
from acdfuse.store.node import Node
from acdfuse.store.store import NodeStore
from acdfuse.store.sync import SyncResult

__all__ = ["Node", "NodeStore", "SchemaTooNew", "StoreError", "SyncError", "SyncResult"]
