"""Bulk generator: writes a synthetic tree straight into the database (no HTTP), for benchmarks.

Breadth first from ``parent`` (default: the root): every folder gets ``fanout`` children, of which
``folders_per_folder`` are folders, until ``n_nodes`` nodes exist. Folders are named ``{prefix}d<n>``,
files ``{prefix}f<n>.bin``. With ``file_size > 0`` each file gets its own random content blob (use
small counts for that). Runs in one transaction under the writer lock, with change numbers reserved
in one block, so ``changes`` sees the whole tree as ordinary new nodes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections import deque
from dataclasses import dataclass

from acdfuse.server.db import CACHE_KIB
from acdfuse.server.drive import Account, Drive
from acdfuse.server.errors import ApiError
from acdfuse.server.util import new_etag, new_id, now_ms

_BATCH = 20000
EMPTY_MD5 = hashlib.md5(b"", usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class GeneratedTree:
    root: str  # the folder the tree was generated under
    nodes: int
    folders: int
    files: int
    depth: int  # folder levels below ``root``
    deepest_path: str  # "/"-joined names from ``root`` to one deepest node
    deepest_id: str
    seconds: float


def generate_tree(
    drive: Drive,
    acc: Account,
    *,
    n_nodes: int,
    fanout: int,
    folders_per_folder: int,
    file_size: int = 0,
    parent: str | None = None,
    prefix: str = "",
) -> GeneratedTree:
    if n_nodes < 0 or fanout < 1 or not 1 <= folders_per_folder <= fanout:
        raise ValueError("need n_nodes >= 0 and 1 <= folders_per_folder <= fanout")
    t0 = time.monotonic()
    top = parent or acc.root
    drive.row(acc, top)
    first_seq = drive.reserve_seqs(max(1, n_nodes))
    now = now_ms()
    etag = new_etag()
    owner = acc.owner
    queue: deque[tuple[str, int, str]] = deque([(top, 0, "")])  # (folder id, depth, path)
    nodes_rows: list[tuple[object, ...]] = []
    parent_rows: list[tuple[str, str, str]] = []
    created = folders = files = 0
    depth = 0
    deepest = ("", top)
    blobs: list[str] = []
    with drive.db.write() as c:
        # random ids land all over five indexes: a 512 MiB page cache avoids most re-reads meanwhile
        c.execute("PRAGMA cache_size=-524288")
        # refuse to clash with what already lives directly under ``top``
        taken = {r[0] for r in c.execute("SELECT lname FROM parents WHERE parent=?", (top,))}
        try:
            while created < n_nodes and queue:
                folder, level, path = queue.popleft()
                for k in range(fanout):
                    if created >= n_nodes:
                        break
                    node_id = new_id()
                    seq = first_seq + created
                    created += 1
                    is_folder = k < folders_per_folder
                    name = f"{prefix}d{created}" if is_folder else f"{prefix}f{created}.bin"
                    lname = name.lower()
                    if level == 0 and lname in taken:
                        raise ApiError(409, f"generate_tree: {name} already exists under {top}")
                    child_path = f"{path}/{name}"
                    content: tuple[object, ...]
                    if is_folder:
                        folders += 1
                        queue.append((node_id, level + 1, child_path))
                        content = (None,) * 7
                    else:
                        files += 1
                        blob, md5, size = None, EMPTY_MD5, 0
                        if file_size > 0:
                            blob, md5 = drive.blobs.write_bytes(os.urandom(file_size))
                            blobs.append(blob)
                            size = file_size
                        content = (size, md5, "application/octet-stream", "bin", 1, now, blob)
                    kind = "FOLDER" if is_folder else "FILE"
                    row = (
                        node_id,
                        acc.id,
                        kind,
                        name,
                        lname,
                        owner,
                        now,
                        now,
                        etag,
                        *content,
                        seq,
                        f'["{folder}"]',
                    )
                    nodes_rows.append(row)
                    parent_rows.append((folder, node_id, lname))
                    if level + 1 > depth:
                        depth = level + 1
                        deepest = (child_path, node_id)
                    if len(nodes_rows) >= _BATCH:
                        _flush(c, nodes_rows, parent_rows)
            _flush(c, nodes_rows, parent_rows)
            drive.forget_usage(acc)
        except BaseException:
            for b in blobs:
                drive.blobs.delete(b)
            raise
        finally:
            c.execute(f"PRAGMA cache_size=-{CACHE_KIB}")     # back to every connection's size (db.py)
            c.execute("PRAGMA shrink_memory")
    return GeneratedTree(
        top, created, folders, files, depth, deepest[0].lstrip("/"), deepest[1], time.monotonic() - t0
    )


def _flush(c: object, nodes_rows: list[tuple[object, ...]], parent_rows: list[tuple[str, str, str]]) -> None:
    assert isinstance(c, sqlite3.Connection)
    c.executemany(
        "INSERT INTO nodes(id, account, kind, name, lname, status, version, created_by, created, modified, "
        "etag, "
        "size, md5, content_type, extension, content_version, content_date, blob, seq, parents_json) "
        "VALUES (?, ?, ?, ?, ?, 'AVAILABLE', 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        nodes_rows,
    )
    c.executemany("INSERT INTO parents(parent, child, lname) VALUES (?, ?, ?)", parent_rows)
    nodes_rows.clear()
    parent_rows.clear()
