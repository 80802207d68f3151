"""Opening, reopening and damaged files: warm mirror, corrupt/foreign/truncated files moved aside,
newer schema refused untouched, leftovers of an interrupted rebuild, readers vs a busy writer."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from acdfuse.store import NodeStore, SchemaTooNew
from acdfuse.store.schema import SCHEMA_VERSION

from .helpers import ChangeSet, Feed, file, folder

pytestmark = pytest.mark.timeout(60)


def _fill(store: NodeStore, feed: Feed, n: int = 50) -> dict:
    root = folder(None, [], is_root=True)
    d = folder("d", [root["id"]])
    nodes = [root, d] + [file(f"f{i}", [d["id"]]) for i in range(n)]
    feed.push(ChangeSet(nodes, [], "cp1", True))
    store.sync(feed)
    return root


def test_warm_mirror_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    feed = Feed()
    with NodeStore(path) as s:
        root = _fill(s, feed)
        tree = list(s.walk("/"))
    with NodeStore(path) as s:
        assert list(s.walk("/")) == tree          # same nodes, same inode numbers
        assert s.checkpoint == "cp1"
        feed.push(ChangeSet([file("late", [root["id"]])], [], "cp2", False))
        result = s.sync(feed)
        assert feed.calls[-1] == ("cp1", True) and not result.reset
        assert s.resolve("/late") is not None


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with NodeStore(path) as s:
        _fill(s, Feed())
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    con.close()
    digest = _sha(path)
    store = NodeStore(path)
    with pytest.raises(SchemaTooNew, match="schema version"):
        store.open()
    assert _sha(path) == digest
    assert not list(tmp_path.glob("m.db.corrupt*"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign", "missing-table"])
def test_unusable_file_is_moved_aside_and_rebuilt(tmp_path: Path, damage: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "m.db"
    with NodeStore(path) as s:
        _fill(s, Feed(), n=2000)
    if damage == "garbage":
        path.write_bytes(b"this is not a database at all" * 100)
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "foreign":
        path.unlink()
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE photos (x)")
        con.commit()
        con.close()
    else:
        con = sqlite3.connect(path)
        con.execute("DROP TABLE dirents")
        con.commit()
        con.close()
    store = NodeStore(path)
    with caplog.at_level(logging.WARNING, logger="acdfuse.store"):
        store.open()
    try:
        assert store.recovered_from is not None and store.recovered_from.exists()
        assert "moved it to" in caplog.text and "rebuilds from the server" in caplog.text
        assert store.is_empty and store.checkpoint is None
        feed = Feed()
        _fill(store, feed, n=3)
        assert feed.calls == [("", True)] and store.resolve("/d/f2") is not None
    finally:
        store.close()


def test_leftover_rebuild_tables_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    with NodeStore(path) as s:
        _fill(s, Feed())
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE nodes_new (x)")
    con.execute("CREATE TABLE dirents_old (y)")
    con.commit()
    con.close()
    with NodeStore(path) as s:
        assert s.resolve("/d/f1") is not None
    con = sqlite3.connect(path)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert "nodes_new" not in names and "dirents_old" not in names


def test_empty_sqlite_file_is_initialised(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    sqlite3.connect(path).close()
    with NodeStore(path) as s:
        assert s.is_empty and s.recovered_from is None


def test_readers_do_not_wait_for_the_writer(store: NodeStore, feed: Feed) -> None:
    root = _fill(store, feed)
    db = store._db
    answers: list[object] = []
    with db.write_lock:
        con = db.writer
        con.execute("BEGIN IMMEDIATE")
        con.execute("DELETE FROM dirents")           # uncommitted: readers must not see it
        t = threading.Thread(target=lambda: answers.append(
            (store.resolve("/d/f7"), store.children(root["id"]))))
        t.start()
        t.join(10)
        finished = not t.is_alive()
        con.execute("ROLLBACK")
    assert finished, "a reader waited for the writer's transaction"
    node, children = answers[0]  # type: ignore[misc]
    assert node is not None and [c.name for c in children] == ["d"]


def test_path_cache_hits_and_invalidation(store: NodeStore, feed: Feed) -> None:
    root = _fill(store, feed)
    a = store.resolve("/d/f3")
    assert a is not None and store.resolve("/d/f3") is a          # served from the cache
    assert store.resolve("/d/nope") is None
    d = store.get(root["id"] and store.resolve("/d").id)  # type: ignore[union-attr]
    assert d is not None
    store.apply_local(file("nope", [d.id]))
    assert store.resolve("/d/nope") is not None                   # negative entry invalidated
    f3 = dict(file("f3", [d.id], node_id=a.id, size=99, version=2))
    store.apply_local(f3)
    assert store.resolve("/d/f3").size == 99  # type: ignore[union-attr]
    store.apply_local(dict(folder("D", [root["id"]], node_id=d.id, version=2)))
    assert store.resolve("/d/f3") is None and store.resolve("/D/f3") is not None


def test_reader_connections_end_with_their_threads(store: NodeStore, feed: Feed) -> None:
    _fill(store, feed)
    store.resolve("/d/f1")
    base = store._db.reader_count()

    def work() -> None:
        store._cache.clear()
        assert store.resolve("/d/f1") is not None

    for _ in range(20):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert store._db.reader_count() <= base + 1


def test_connections_of_ended_threads_are_closed_even_if_their_locals_live_on(store: NodeStore,
                                                                             feed: Feed) -> None:
    """A libfuse worker's Python thread state is kept alive by the mount (fs/threadstate.py), and with
    it the worker's threading.local: its reader connection (an fd and up to 8 MiB of page cache) must
    still be closed once the thread has ended, or a long mount piles them up."""
    _fill(store, feed)
    kept: list[Any] = []

    def leaky() -> None:
        store._cache.clear()
        assert store.resolve("/d/f1") is not None
        kept.append(store._db._local.reader)      # what a thread state that outlives its thread holds

    t = threading.Thread(target=leaky)
    t.start()
    t.join()
    deadline = time.monotonic() + 10
    while Path(f"/proc/self/task/{kept[0].tid}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)                           # the OS thread may still be on its way out
    kept[0].con.execute("SELECT 1")                # still open: nobody has looked yet

    def fresh() -> None:
        store._cache.clear()
        assert store.resolve("/d/f1") is not None  # a new thread opens a reader, and looks

    t = threading.Thread(target=fresh)
    t.start()
    t.join()
    with pytest.raises(sqlite3.ProgrammingError):
        kept[0].con.execute("SELECT 1")            # closed
    assert store.resolve("/d/f1") is not None      # this thread's own reader is untouched


def test_migration_runs_on_open_and_keeps_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A future schema step (here a made-up v2 adding a column) runs once, in a transaction, on
    the existing mirror; the tree and checkpoint survive it."""
    from acdfuse.store import database, schema  # noqa: PLC0415

    path = tmp_path / "m.db"
    feed = Feed()
    with NodeStore(path) as s:
        _fill(s, feed)
        tree = list(s.walk("/"))
    calls: list[int] = []

    def to_v2(con: sqlite3.Connection) -> None:
        calls.append(1)
        con.execute("ALTER TABLE nodes ADD COLUMN labels TEXT")

    monkeypatch.setattr(database, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(schema.MIGRATIONS, SCHEMA_VERSION, to_v2)
    for _ in range(2):
        with NodeStore(path) as s:
            assert list(s.walk("/")) == tree and s.checkpoint == "cp1"
    assert calls == [1]
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    con.close()


def test_mirror_files_are_private(tmp_path: Path) -> None:
    """The mirror holds every file name of the drive: 0600 for the db, its WAL and shm, old ones too."""
    db = tmp_path / "nodes.db"
    store = NodeStore(db)
    store.open()
    store.close()
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    db.chmod(0o644)
    store = NodeStore(db)
    store.open()
    try:
        assert db.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "nodes.db-wal").stat().st_mode & 0o777 == 0o600
    finally:
        store.close()
