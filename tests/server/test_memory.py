"""The server's SQLite memory is bounded however many connections read a big database.

Every HTTP connection has its own thread and SQLite connection (server/db.py), and each SQLite
connection its own page cache. With 64 MiB per cache, 50 keep-alive clients made the server's RSS
grow with connections x database size (RELIABILITY.md section 3). This test reads the whole database
through many of the server's own per-thread connections at once and asks SQLite itself how much
memory it holds (``sqlite3_memory_used``, process-wide).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sqlite3
import threading

from acdfuse.server import DriveServer
from acdfuse.server.db import CACHE_KIB

CONNECTIONS = 24
MiB = 1024 * 1024


def _memory_used() -> int:
    # the library the sqlite3 module is linked against (one copy per process on this system)
    lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def test_page_caches_stay_small_with_many_connections(drive_server: DriveServer) -> None:
    drive_server.generate_tree(n_nodes=30_000, fanout=20, folders_per_folder=4)
    db = drive_server.drive.db
    size = db.path.stat().st_size
    assert size > 4 * MiB      # big enough that whole-database caches would show
    base = _memory_used()
    assert base > 0, "SQLite keeps no memory statistics here: this test could not fail"
    ready = threading.Barrier(CONNECTIONS + 1)
    done = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            conn = db.conn()
            # touch every page of the table and of two indexes
            conn.execute("SELECT count(*), sum(length(parents_json)), max(name) FROM nodes").fetchone()
            conn.execute("SELECT count(*) FROM nodes INDEXED BY nodes_name WHERE lname > ''").fetchone()
            conn.execute("SELECT count(*) FROM parents INDEXED BY parents_child WHERE child > ''").fetchone()
        except (sqlite3.Error, OSError) as exc:
            errors.append(exc)
        finally:
            ready.wait(timeout=60)
            done.wait(timeout=60)      # hold the connection (and its cache) while the total is read
            db.release_thread()

    threads = [threading.Thread(target=reader) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    ready.wait(timeout=60)
    held = _memory_used() - base
    done.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    # each connection's cache is bounded by CACHE_KIB (plus a little per connection for its schema
    # and statements); before the fix each held about the whole database
    bound = CONNECTIONS * (CACHE_KIB * 1024 + 512 * 1024)
    assert held < bound, f"{held / MiB:.1f} MiB held by {CONNECTIONS} connections (database {size / MiB:.1f} MiB)"
    assert held < CONNECTIONS * size / 2
