"""Sync logic, path resolution and bad input with scripted change streams (no server)."""

from __future__ import annotations

import logging
import threading

import pytest

from acdfuse.api.common import IncompleteResult, RequestError, is_offline, make_error
from acdfuse.store import NodeStore, StoreError, SyncError
from acdfuse.store.errors import MalformedChange
from acdfuse.store.prefetch import prefetch

from .helpers import ChangeSet, Feed, file, folder, new_id

pytestmark = pytest.mark.timeout(60)


def _tree() -> tuple[dict, list[dict]]:
    root = folder(None, [], is_root=True)
    docs = folder("docs", [root["id"]])
    a = file("a.txt", [docs["id"]], size=5)
    sub = folder("Sub", [docs["id"]])
    b = file("b.bin", [sub["id"]], size=7)
    return root, [root, docs, a, sub, b]


def test_first_sync_builds_tree(store: NodeStore, feed: Feed) -> None:
    root, nodes = _tree()
    feed.push(ChangeSet(nodes[:2], [], "cp1", True), ChangeSet(nodes[2:], [], "cp2", False))
    assert store.is_empty and store.checkpoint is None
    result = store.sync(feed)
    assert feed.calls == [("", True)]
    assert result.reset and result.stored == 5 and result.checkpoint == "cp2"
    assert store.checkpoint == "cp2" and not store.is_empty
    r = store.resolve("/")
    assert r is not None and r.is_root and r.ino == 1 and r.id == root["id"]
    b = store.resolve("/docs/Sub/b.bin")
    assert b is not None and b.size == 7 and b.is_file and b.parents == (nodes[3]["id"],)
    assert b.created == pytest.approx(1704164645.678)
    assert store.resolve("/docs/sub/b.bin") is None          # exact case
    assert [c.name for c in store.children(nodes[1]["id"])] == ["Sub", "a.txt"]
    assert store.child(nodes[1]["id"], "a.txt").size == 5   # type: ignore[union-attr]
    assert store.by_ino(b.ino) == b
    assert store.get(b.id) == b


def test_incremental_changes(store: NodeStore, feed: Feed) -> None:
    root, nodes = _tree()
    _, _docs, a, sub, b = nodes
    feed.push(ChangeSet(nodes, [], "cp1", True))
    store.sync(feed)
    ino_a = store.resolve("/docs/a.txt").ino  # type: ignore[union-attr]
    assert store.resolve("/docs/Sub/b.bin") is not None
    c = file("c", [root["id"]])
    renamed = dict(a, name="A.txt", version=2)
    moved = dict(sub, parents=[root["id"]], version=2)
    trashed = dict(b, status="TRASH", version=2)
    feed.push(ChangeSet([c, renamed], [], "cp2", False), ChangeSet([moved, trashed], [], "cp3", False))
    result = store.sync(feed)
    assert feed.calls[-1] == ("cp1", True)
    assert not result.reset and store.checkpoint == "cp3"
    assert store.resolve("/docs/a.txt") is None
    assert store.resolve("/docs/A.txt").ino == ino_a  # type: ignore[union-attr]
    assert store.resolve("/c") is not None
    assert store.resolve("/docs/Sub") is None and store.resolve("/Sub") is not None
    assert store.resolve("/Sub/b.bin") is None
    assert store.get(b["id"]).status == "TRASH"  # type: ignore[union-attr]
    # restore, then purge
    feed.push(ChangeSet([dict(b, version=3)], [], "cp4", False))
    store.sync(feed)
    assert store.resolve("/Sub/b.bin") is not None
    feed.push(ChangeSet([], [b["id"], c["id"]], "cp5", False))
    result = store.sync(feed)
    assert result.purged == 2
    assert store.get(b["id"]) is None and store.resolve("/c") is None and store.resolve("/Sub/b.bin") is None


def test_skips_pending_and_nameless(store: NodeStore, feed: Feed) -> None:
    root = folder(None, [], is_root=True)
    pend = file("p", [root["id"]], status="PENDING")
    nameless = folder(None, [root["id"]])
    ok = file("ok", [root["id"]])
    feed.push(ChangeSet([root, pend, nameless, ok], [], "cp1", True))
    result = store.sync(feed)
    assert result.stored == 2 and result.skipped == 2
    assert store.get(pend["id"]) is None and store.get(nameless["id"]) is None
    assert [c.name for c in store.children(root["id"])] == ["ok"]


def test_multi_parent_and_cycle(store: NodeStore, feed: Feed) -> None:
    root = folder(None, [], is_root=True)
    x = folder("x", [root["id"]])
    y = folder("y", [root["id"]])
    shared = folder("shared", [x["id"], y["id"]])
    f = file("f", [shared["id"]])
    feed.push(ChangeSet([root, x, y, shared, f], [], "cp1", True))
    store.sync(feed)
    assert store.resolve("/x/shared/f") == store.resolve("/y/shared/f") is not None
    assert set(store.get(shared["id"]).parents) == {x["id"], y["id"]}  # type: ignore[union-attr]
    # link x into its own subtree: x -> shared -> x
    cyc = dict(x, parents=[root["id"], shared["id"]], version=2)
    feed.push(ChangeSet([cyc], [], "cp2", False))
    store.sync(feed)
    assert store.resolve("/x/shared/x/shared/x/shared/f") is not None
    paths = [p for p, _ in store.walk("/")]
    assert "/x/shared/x" in paths and len(paths) == len(set(paths)) < 30
    assert store.path_of(f["id"]) in {"/x/shared/f", "/y/shared/f"}


def test_case_only_rename_and_cache_invalidation(store: NodeStore, feed: Feed) -> None:
    root = folder(None, [], is_root=True)
    a = folder("a", [root["id"]])
    inner = file("inner", [a["id"]])
    feed.push(ChangeSet([root, a, inner], [], "cp1", True))
    store.sync(feed)
    assert store.resolve("/a/inner") is not None
    assert store.resolve("/A/inner") is None          # cached negative answer
    feed.push(ChangeSet([dict(a, name="A", version=2)], [], "cp2", False))
    store.sync(feed)
    assert store.resolve("/a/inner") is None
    assert store.resolve("/A/inner") is not None
    assert store.resolve("/A").name == "A"  # type: ignore[union-attr]


def test_apply_local_then_same_change(store: NodeStore, feed: Feed) -> None:
    root = folder(None, [], is_root=True)
    feed.push(ChangeSet([root], [], "cp1", True))
    store.sync(feed)
    assert store.resolve("/new") is None
    created = folder("new", [root["id"]])
    node = store.apply_local(created)
    assert node.name == "new" and node.ino >= 2
    assert store.resolve("/new") == node
    renamed = store.apply_local(dict(created, name="newer", version=2))
    assert renamed.ino == node.ino and store.resolve("/new") is None
    # the change stream now reports the creation (older) and then the rename: idempotent
    feed.push(ChangeSet([created], [], "cp2", False), ChangeSet([dict(created, name="newer", version=2)], [],
                                                                "cp3", False))
    store.sync(feed)
    assert store.resolve("/newer").ino == node.ino  # type: ignore[union-attr]
    assert store.resolve("/new") is None
    # an older state alone never overrides a newer local answer
    feed.push(ChangeSet([created], [], "cp4", False))
    store.sync(feed)
    assert store.resolve("/newer") is not None
    trashed = store.apply_local(dict(created, name="newer", version=3, status="TRASH"))
    assert trashed.status == "TRASH" and store.resolve("/newer") is None


@pytest.mark.parametrize("failure", ["truncated", "bad-node", "no-checkpoint"])
def test_failed_sync_leaves_mirror(store: NodeStore, feed: Feed, failure: str) -> None:
    root, nodes = _tree()
    feed.push(ChangeSet(nodes, [], "cp1", True))
    store.sync(feed)
    before = [(p, n) for p, n in store.walk("/")]
    extra = file("extra", [root["id"]])
    if failure == "truncated":
        tail: object = ConnectionError("stream cut")
    elif failure == "bad-node":
        tail = ChangeSet([{"name": "no id"}], [], "cp3", False)
    else:
        tail = ChangeSet([], [], "", False)
    changed = [extra, dict(nodes[2], status="TRASH", version=5)]
    feed.push(ChangeSet(changed, [nodes[4]["id"]], "cp2", False), tail)
    with pytest.raises(SyncError):
        store.sync(feed)
    assert store.checkpoint == "cp1"
    assert [(p, n) for p, n in store.walk("/")] == before
    # the next sync retries from the stored checkpoint
    feed.push(ChangeSet([extra], [], "cp2", False))
    store.sync(feed)
    assert feed.calls[-1][0] == "cp1" and store.resolve("/extra") is not None


def test_failed_reset_keeps_old_tree(store: NodeStore, feed: Feed) -> None:
    root, nodes = _tree()
    feed.push(ChangeSet(nodes, [], "cp1", True))
    store.sync(feed)
    before = list(store.walk("/"))
    feed.push(ChangeSet([root], [], "cpX", True), ChangeSet([folder("zz", [root["id"]])], [], "cpY", False),
              ConnectionError("cut"))
    with pytest.raises(SyncError):
        store.sync(feed)
    assert list(store.walk("/")) == before and store.checkpoint == "cp1"


def test_reset_rebuild_keeps_inodes(store: NodeStore, feed: Feed) -> None:
    root, nodes = _tree()
    feed.push(ChangeSet(nodes, [], "cp1", True))
    store.sync(feed)
    inos = {n["id"]: store.get(n["id"]).ino for n in nodes}  # type: ignore[union-attr]
    fresh = file("fresh", [root["id"]])
    # the reset dump no longer has b; it has a new file
    feed.push(ChangeSet([*nodes[:4], fresh], [], "cp9", True))
    result = store.sync(feed)
    assert result.reset and store.checkpoint == "cp9"
    assert store.get(nodes[4]["id"]) is None
    for n in nodes[:4]:
        assert store.get(n["id"]).ino == inos[n["id"]]  # type: ignore[union-attr]
    assert store.resolve("/fresh").ino not in inos.values()  # type: ignore[union-attr]


def test_duplicate_entries_last_wins(store: NodeStore, feed: Feed) -> None:
    root = folder(None, [], is_root=True)
    f = file("one", [root["id"]])
    feed.push(ChangeSet([root, f], [], "cp1", True),
              ChangeSet([dict(f, name="two", version=2)], [], "cp2", False))
    store.sync(feed)
    assert store.resolve("/one") is None and store.resolve("/two") is not None
    assert store.count() == 2


def test_properties_stored(store: NodeStore, feed: Feed) -> None:
    root = folder(None, [], is_root=True)
    f = dict(file("p", [root["id"]]), properties={"app": {"k": "v"}})
    feed.push(ChangeSet([root, f], [], "cp1", True))
    store.sync(feed)
    assert store.properties(f["id"]) == {"app": {"k": "v"}}
    store.apply_local(dict(f, properties={"app": {"k": "w", "k2": "x"}}, version=2))
    assert store.properties(f["id"]) == {"app": {"k": "w", "k2": "x"}}


def test_unknown_ids_and_empty_store(store: NodeStore) -> None:
    assert store.root() is None and store.resolve("/") is None and store.resolve("/a") is None
    assert store.get(new_id()) is None and store.children(new_id()) == []


def test_prefetch_passes_items_and_errors() -> None:
    assert list(prefetch(iter(range(100)), depth=2)) == list(range(100))

    def broken():
        yield 1
        yield 2
        raise ConnectionError("cut")

    got = []
    with pytest.raises(ConnectionError):
        for x in prefetch(broken(), depth=1):
            got.append(x)
    assert got == [1, 2]

    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    it = prefetch(endless(), depth=2)
    assert next(it) == 0
    it.close()  # the consumer stops early: the producer must exit and close its source
    assert closed.wait(10)


_INCOMPLETE = RequestError.CODE.INCOMPLETE_RESULT


@pytest.mark.parametrize("error", [
    IncompleteResult(_INCOMPLETE, "get changes: invalid JSON in change set 1 (stream cut?)"),
    RequestError(RequestError.CODE.FAILED_SUBREQUEST,
                 "get changes: partial failure in change set 1, statusCode 500"),
    IncompleteResult(_INCOMPLETE, 'get changes: stream ended without {"end": true}'),
])
def test_client_stream_errors_leave_mirror(store: NodeStore, feed: Feed, error: RequestError,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """The errors acdfuse.api raises for a bad changes stream (invalid JSON line, non-200 statusCode
    inside, missing end mark), after some good change sets were already handed out."""
    root, nodes = _tree()
    feed.push(ChangeSet(nodes, [], "cp1", True))
    store.sync(feed)
    before = list(store.walk("/"))
    feed.push(ChangeSet([file("half", [root["id"]])], [nodes[2]["id"]], "cp2", False), error)
    with caplog.at_level(logging.WARNING, logger="acdfuse.store"), pytest.raises(SyncError) as info:
        store.sync(feed)
    assert info.value.__cause__ is error
    assert list(store.walk("/")) == before and store.checkpoint == "cp1"
    assert "mirror and checkpoint left as they were" in caplog.text and error.msg in caplog.text
    # same for a first sync that fails: the mirror stays empty and the next sync starts over
    empty = NodeStore(store.path.with_name("other.db"))
    empty.open()
    try:
        feed.push(ChangeSet(nodes[:2], [], "cpA", True), error)
        with pytest.raises(SyncError):
            empty.sync(feed)
        assert empty.is_empty and empty.checkpoint is None
        feed.push(ChangeSet(nodes, [], "cpB", True))
        empty.sync(feed)
        assert feed.calls[-1] == ("", True) and empty.resolve("/docs/Sub/b.bin") is not None
    finally:
        empty.close()


def test_sync_result_lists_changed_ids_and_subfolder_count(store: NodeStore, feed: Feed) -> None:
    root, nodes = _tree()
    feed.push(ChangeSet(nodes, [], "cp1", True))
    first = store.sync(feed)
    assert first.changed is None                        # a rebuild: everything may have changed
    assert store.subfolder_count(root["id"]) == 1 and store.subfolder_count(nodes[1]["id"]) == 1
    extra = folder("extra", [root["id"]])
    feed.push(ChangeSet([extra, dict(nodes[3], status="TRASH", version=2)], [nodes[2]["id"]], "cp2", False))
    result = store.sync(feed)
    assert result.changed == {extra["id"], nodes[3]["id"], nodes[2]["id"]}
    assert store.subfolder_count(root["id"]) == 2 and store.subfolder_count(nodes[1]["id"]) == 0
    feed.push(ChangeSet([], [], "cp3", False))
    assert store.sync(feed).changed == frozenset()


def test_local_answers_during_a_rebuild_survive_the_swap(store: NodeStore, feed: Feed) -> None:
    root, nodes = _tree()
    feed.push(ChangeSet(nodes, [], "cp1", True))
    store.sync(feed)
    made = folder("made-locally", [root["id"]])
    renamed = dict(nodes[1], name="docs2", version=7)
    local: dict[str, object] = {}

    def changes(**kwargs: object):
        yield ChangeSet(nodes[:3], [], "r1", True)
        # while the rebuild stages, the mount creates and renames things
        local["made"] = store.apply_local(made)
        local["renamed"] = store.apply_local(renamed)
        assert store.resolve("/made-locally") is not None and store.resolve("/docs2") is not None
        yield ChangeSet(nodes[3:], [], "r2", False)

    result = store.sync(changes)
    assert result.reset and store.checkpoint == "r2"
    after = store.resolve("/made-locally")
    assert after is not None and after.ino == local["made"].ino  # type: ignore[attr-defined]
    assert store.resolve("/docs") is None and store.resolve("/docs2/Sub/b.bin") is not None


def test_purged_as_objects_forget_and_pending_answer(store: NodeStore, feed: Feed) -> None:
    root, nodes = _tree()
    feed.push(ChangeSet(nodes, [], "cp1", True))
    store.sync(feed)
    # purged entries may come as node objects too (status PURGED, in nodes or purged_nodes)
    feed.push(ChangeSet([dict(nodes[2], status="PURGED")], [{"id": nodes[4]["id"], "status": "PURGED"}],
                        "cp2", False))
    assert store.sync(feed).purged == 2
    assert store.get(nodes[2]["id"]) is None and store.get(nodes[4]["id"]) is None
    assert store.forget(nodes[3]["id"]) and not store.forget(nodes[3]["id"])
    assert store.resolve("/docs/Sub") is None
    # an unfinished upload is answered but not kept
    pending = store.apply_local(file("up", [root["id"]], status="PENDING"))
    assert pending.status == "PENDING" and pending.ino == 0 and store.get(pending.id) is None
    with pytest.raises(StoreError):
        store.apply_local({"name": "no id"})


class _Bug(Exception):
    """Stands for a programming error raised somewhere inside a sync."""


@pytest.mark.parametrize("failure", ["bug", "offline", "server-error", "malformed"])
def test_a_bug_in_sync_is_an_error_with_traceback_a_network_failure_is_not(
        store: NodeStore, feed: Feed, failure: str, caplog: pytest.LogCaptureFixture,
        expect_errors: list[str]) -> None:
    """Issue 9: a programming error inside sync is logged at ERROR with its traceback; a failure of
    the server, the network or its data is a WARNING. Either way the mirror stays as it was, and the
    SyncError names its cause, so the mount can tell "offline" from "failing"."""
    root, nodes = _tree()
    feed.push(ChangeSet(nodes, [], "cp1", True))
    store.sync(feed)
    before = list(store.walk("/"))
    cause: BaseException = {
        "bug": _Bug("'NoneType' object is not subscriptable"),
        "offline": make_error(RequestError.CODE.CONN_EXCEPTION, "get changes: Connection refused"),
        "server-error": make_error(503, "get changes: Service Unavailable"),
        "malformed": MalformedChange("malformed node in change set: {}"),
    }[failure]
    if failure == "bug":
        expect_errors.append("unexpected error")
    feed.push(ChangeSet([file("half", [root["id"]])], [], "cp2", False), cause)
    with caplog.at_level(logging.WARNING, logger="acdfuse.store"), pytest.raises(SyncError) as info:
        store.sync(feed)
    assert info.value.__cause__ is cause
    assert list(store.walk("/")) == before and store.checkpoint == "cp1"
    records = [r for r in caplog.records if "sync from checkpoint" in r.getMessage()]
    assert len(records) == 1
    if failure == "bug":
        assert records[0].levelno == logging.ERROR and records[0].exc_info is not None
        assert records[0].exc_info[1] is cause
        assert not is_offline(info.value)
    else:
        assert records[0].levelno == logging.WARNING and not records[0].exc_info
        assert is_offline(info.value) == (failure in ("offline", "server-error"))
