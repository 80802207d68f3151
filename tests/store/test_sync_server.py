"""Store against the real server: syncs after changes made through the API, compared to the
server's tree after each step; reset, purge, multi-parent, cycles, faults, concurrent readers."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from acdfuse.api.client import ACDClient
from acdfuse.api.common import RequestError
from acdfuse.store import NodeStore, SyncError

from .treecompare import assert_same_tree, mirror_tree

pytestmark = pytest.mark.timeout(120)


def _upload(client: Any, name: str, parent: str, data: bytes = b"abc") -> dict:
    return client.upload_stream(io.BytesIO(data), name, parent)  # type: ignore[no-any-return]


def test_first_then_incremental_syncs(client: Any, store: NodeStore) -> None:
    root = client.get_root_id()
    docs = client.create_folder("docs", root)
    sub = client.create_folder("Sub", docs["id"])
    f1 = _upload(client, "one.txt", docs["id"], b"hello")
    _upload(client, "two.bin", sub["id"], b"x" * 100)
    first = store.sync(client.get_changes)
    assert first.reset and store.checkpoint
    assert_same_tree(store, client)
    assert store.resolve("/").ino == 1  # type: ignore[union-attr]
    ino_one = store.resolve("/docs/one.txt").ino  # type: ignore[union-attr]

    # new, renamed, moved, overwritten
    client.create_folder("new", root)
    client.rename_node(f1["id"], "One.txt")
    client.move_node_from(sub["id"], docs["id"], root)
    client.overwrite_stream(io.BytesIO(b"changed!"), f1["id"])
    result = store.sync(client.get_changes)
    assert not result.reset and result.stored == 3  # f1 changed twice: one entry
    tree = assert_same_tree(store, client)
    assert ("/docs/One.txt", f1["id"], "FILE", 8, store.get(f1["id"]).md5) in tree  # type: ignore[union-attr]
    assert store.resolve("/docs/One.txt").ino == ino_one  # type: ignore[union-attr]
    assert store.resolve("/docs/one.txt") is None

    # trashed folder: its subtree disappears from paths
    client.move_to_trash(sub["id"])
    store.sync(client.get_changes)
    assert_same_tree(store, client)
    assert store.resolve("/Sub") is None and store.resolve("/Sub/two.bin") is None
    assert store.get(sub["id"]).status == "TRASH"  # type: ignore[union-attr]

    # nothing changed: still a valid sync that keeps the tree
    cp = store.checkpoint
    store.sync(client.get_changes)
    assert_same_tree(store, client)
    assert store.checkpoint is not None and cp is not None


def test_trash_restore_round_trip(client: Any, store: NodeStore) -> None:
    root = client.get_root_id()
    folder = client.create_folder("keep", root)
    f = _upload(client, "f.txt", folder["id"])
    store.sync(client.get_changes)
    ino = store.resolve("/keep/f.txt").ino  # type: ignore[union-attr]
    client.move_to_trash(folder["id"])
    store.sync(client.get_changes)
    assert store.resolve("/keep") is None
    assert_same_tree(store, client)
    client.restore(folder["id"])
    store.sync(client.get_changes)
    assert_same_tree(store, client)
    back = store.resolve("/keep/f.txt")
    assert back is not None and back.id == f["id"] and back.ino == ino


def test_case_only_rename(client: Any, store: NodeStore) -> None:
    root = client.get_root_id()
    a = client.create_folder("a", root)
    _upload(client, "inside", a["id"])
    store.sync(client.get_changes)
    assert store.resolve("/a/inside") is not None and store.resolve("/A/inside") is None
    client.rename_node(a["id"], "A")
    store.sync(client.get_changes)
    assert_same_tree(store, client)
    assert store.resolve("/a/inside") is None
    assert store.resolve("/A/inside") is not None


def test_multi_parent_folder_and_cycle(client: Any, store: NodeStore) -> None:
    root = client.get_root_id()
    x = client.create_folder("x", root)
    y = client.create_folder("y", root)
    shared = client.create_folder("shared", x["id"])
    _upload(client, "leaf", shared["id"])
    client.add_child(y["id"], shared["id"])
    store.sync(client.get_changes)
    assert_same_tree(store, client)
    a, b = store.resolve("/x/shared/leaf"), store.resolve("/y/shared/leaf")
    assert a is not None and a == b
    assert set(store.get(shared["id"]).parents) == {x["id"], y["id"]}  # type: ignore[union-attr]
    # link x below its own descendant: x/shared/x/shared/... is a cycle. The server may refuse
    # that (team/server-bugs.md asks it to); cycles are then covered by the scripted-stream test
    # tests/store/test_sync_unit.py::test_multi_parent_and_cycle, and here the mirror must simply
    # stay equal to the server's tree.
    try:
        client.add_child(shared["id"], x["id"])
        cycle = True
    except RequestError as exc:
        assert exc.status_code in (400, 409), exc
        cycle = False
    store.sync(client.get_changes)
    tree = assert_same_tree(store, client)
    if cycle:
        assert any(p == "/x/shared/x" for p, *_ in tree)
        assert store.resolve("/x/shared/x/shared/x/shared/leaf") is not None
    assert store.path_of(a.id) is not None
    # unlink one parent
    client.remove_child(y["id"], shared["id"])
    store.sync(client.get_changes)
    assert_same_tree(store, client)
    assert store.resolve("/y/shared") is None


def test_purge(client: Any, store: NodeStore, drive_server: Any) -> None:
    root = client.get_root_id()
    gone = _upload(client, "gone", root)
    store.sync(client.get_changes)
    client.move_to_trash(gone["id"])
    store.sync(client.get_changes)
    assert store.get(gone["id"]) is not None
    drive_server.purge(gone["id"])
    result = store.sync(client.get_changes)
    assert result.purged == 1 and store.get(gone["id"]) is None
    assert_same_tree(store, client)


def test_reset_swaps_atomically_and_keeps_inodes(client: Any, store: NodeStore, drive_server: Any) -> None:
    root = client.get_root_id()
    for i in range(5):
        client.create_folder(f"d{i}", root)
    store.sync(client.get_changes)
    before = mirror_tree(store)
    inos = {path: store.resolve(path).ino for path, *_ in before}  # type: ignore[union-attr]
    gone = _upload(client, "gone", root)
    client.move_to_trash(gone["id"])
    drive_server.purge(gone["id"])
    client.create_folder("after", root)
    drive_server.forget_purged()  # older checkpoints now get a reset

    seen_mid_stream: list[list[Any]] = []

    def paused_changes(**kwargs: Any) -> Iterator[Any]:
        for cs in client.get_changes(**kwargs):
            yield cs
            # between change sets the old tree is still what readers see
            seen_mid_stream.append(mirror_tree(store))

    result = store.sync(paused_changes)
    assert result.reset
    assert seen_mid_stream and all(t == before for t in seen_mid_stream)
    assert_same_tree(store, client)
    for path, ino in inos.items():
        assert store.resolve(path).ino == ino  # type: ignore[union-attr]
    assert store.resolve("/after") is not None


def test_apply_local_then_sync_is_idempotent(client: Any, store: NodeStore) -> None:
    root = client.get_root_id()
    store.sync(client.get_changes)
    made = store.apply_local(client.create_folder("made", root))
    assert store.resolve("/made") == made
    up = store.apply_local(_upload(client, "up.txt", made.id, b"12345"))
    assert store.resolve("/made/up.txt").size == 5  # type: ignore[union-attr]
    renamed = store.apply_local(client.rename_node(up.id, "moved.txt"))
    assert store.resolve("/made/up.txt") is None and store.resolve("/made/moved.txt") == renamed
    trashed = store.apply_local(client.move_to_trash(made.id))
    assert trashed.status == "TRASH" and store.resolve("/made") is None
    store.sync(client.get_changes)
    assert_same_tree(store, client)
    assert store.get(up.id).ino == up.ino  # type: ignore[union-attr]


def test_cut_streams_leave_mirror_then_retry(drive_server: Any, cdir: Path, store: NodeStore) -> None:
    client = ACDClient(str(cdir), retry_deadline=1.5)
    root = client.get_root_id()
    for i in range(30):
        client.create_folder(f"f{i}", root)
    store.sync(client.get_changes)
    before, checkpoint = mirror_tree(store), store.checkpoint
    for i in range(30):
        client.create_folder(f"g{i}", root)
    drive_server.faults.configure(cut_rate=1.0, seed=7)
    try:
        with pytest.raises(SyncError):
            store.sync(client.get_changes)
    finally:
        drive_server.faults.configure(cut_rate=0.0)
    assert mirror_tree(store) == before and store.checkpoint == checkpoint
    store.sync(client.get_changes)
    assert_same_tree(store, client)


def test_flaky_stream_converges(drive_server: Any, cdir: Path, store: NodeStore) -> None:
    """Cut bodies part of the time: the client resumes from its last checkpoint, and the staged
    rebuild still produces exactly the server's tree."""
    client = ACDClient(str(cdir), retry_deadline=60)
    drive_server.generate_tree(n_nodes=600, fanout=10, folders_per_folder=3)
    drive_server.stats.reset()
    drive_server.faults.configure(cut_rate=0.3, seed=3)
    try:
        result = store.sync(client.get_changes)
    finally:
        drive_server.faults.configure(cut_rate=0.0)
    assert drive_server.stats.snapshot()["changes"] > 1  # some streams were cut and resumed
    assert result.reset
    assert_same_tree(store, client)


def test_readers_run_during_sync(drive_server: Any, client: Any, store: NodeStore) -> None:
    tree = drive_server.generate_tree(n_nodes=2000, fanout=10, folders_per_folder=3, prefix="a")
    store.sync(client.get_changes)
    deep = "/" + tree.deepest_path.strip("/")
    assert store.resolve(deep) is not None
    second = drive_server.generate_tree(n_nodes=20000, fanout=10, folders_per_folder=3, prefix="b")
    syncing = threading.Event()
    done = threading.Event()
    reads_during_sync = [0]
    failures: list[BaseException] = []

    def changes(**kwargs: Any) -> Iterator[Any]:
        syncing.set()
        yield from client.get_changes(**kwargs)

    def reader() -> None:
        try:
            syncing.wait(30)
            while not done.is_set():
                node = store.resolve(deep)
                assert node is not None
                store.children(store.root().id)  # type: ignore[union-attr]
                store._cache.clear()  # force real database reads, not cache hits
                reads_during_sync[0] += 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        result = store.sync(changes)
    finally:
        done.set()
        for t in threads:
            t.join(30)
    assert not failures, failures
    assert reads_during_sync[0] > 0
    assert result.stored == 20000 and store.count() == 1 + 2000 + 20000
    # (a full walk of 22,000 nodes through list_children is too slow here; spot-check instead)
    assert store.resolve("/" + second.deepest_path.strip("/")).id == second.deepest_id  # type: ignore[union-attr]


def test_readers_during_a_reset_see_old_or_new_tree(drive_server: Any, client: Any, store: NodeStore) -> None:
    """Threads keep resolving while a reset rebuild builds and swaps the tree in: every answer is a
    complete tree (the path resolves, to the same node and inode), never an error or a gap."""
    tree = drive_server.generate_tree(n_nodes=3000, fanout=10, folders_per_folder=3)
    store.sync(client.get_changes)
    deep = "/" + tree.deepest_path.strip("/")
    want = store.resolve(deep)
    assert want is not None
    gone = _upload(client, "gone", client.get_root_id())
    client.move_to_trash(gone["id"])
    drive_server.purge(gone["id"])
    drive_server.forget_purged()
    stop = threading.Event()
    answers: list[Any] = []
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                store._cache.clear()
                node = store.resolve(deep)
                answers.append((node.id, node.ino) if node else None)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        result = store.sync(client.get_changes)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert result.reset
    assert not failures, failures
    assert answers and set(answers) == {(want.id, want.ino)}


@pytest.mark.parametrize("reset", [False, True])
def test_local_writes_while_syncing(drive_server: Any, client: Any, store: NodeStore, reset: bool) -> None:
    """The mount keeps creating/renaming/trashing (and writing the answers) while a sync (incremental
    or a reset rebuild) runs; afterwards, and after one more sync, the mirror equals the server."""
    root = client.get_root_id()
    store.sync(client.get_changes)
    drive_server.generate_tree(n_nodes=5000, fanout=10, folders_per_folder=3, prefix="g")
    if reset:
        drive_server.forget_purged()
    started = threading.Event()
    failures: list[BaseException] = []
    made: list[Any] = []

    def mount_like() -> None:
        try:
            started.wait(30)
            for i in range(15):
                node = store.apply_local(client.create_folder(f"local{i}", root))
                assert store.resolve(f"/local{i}") is not None
                made.append(node)
                if i % 3 == 1:
                    store.apply_local(client.rename_node(node.id, f"renamed{i}"))
                if i % 5 == 2:
                    store.apply_local(client.move_to_trash(node.id))
        except BaseException as exc:
            failures.append(exc)

    def changes(**kwargs: Any) -> Iterator[Any]:
        for n, cs in enumerate(client.get_changes(**kwargs)):
            yield cs
            if n == 0:
                # all local writes happen after the stream started and before it is applied
                started.set()
                t.join(60)

    t = threading.Thread(target=mount_like)
    t.start()
    try:
        result = store.sync(changes)
    finally:
        t.join(60)
    assert not failures, failures
    assert result.reset == reset
    # everything the mount wrote is visible right away, whichever way the sync went
    for i, node in enumerate(made):
        name = f"renamed{i}" if i % 3 == 1 else f"local{i}"
        visible = store.resolve(f"/{name}")
        if i % 5 == 2:
            assert visible is None
        else:
            assert visible is not None and visible.ino == node.ino, name
    store.sync(client.get_changes)
    top = {(c.name, c.id) for c in store.children(root)}
    assert top == {(c["name"], c["id"]) for c in client.list_children(root)}
