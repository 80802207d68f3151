"""The POSIX record read with every node row, and local property updates (``set_properties``): shown at
once, kept against a stale change staged before them, replayed across a rebuild, and overtaken by the
server's later state (scripted change streams, no server)."""

from __future__ import annotations

import pytest

from acdfuse.store import NodeStore
from acdfuse.store.node import ATTRS_KEY

from .helpers import ChangeSet, Feed, file, folder

pytestmark = pytest.mark.timeout(60)

APP = "app-owner"


def _synced(store: NodeStore, feed: Feed) -> tuple[dict, dict, dict]:
    root = folder(None, [], is_root=True)
    docs = folder("docs", [root["id"]])
    f = file("f.txt", [docs["id"]], version=3)
    feed.push(ChangeSet([root, docs, f], [], "cp1", True))
    store.sync(feed)
    return root, docs, f


def test_record_comes_with_every_node_row(store: NodeStore, feed: Feed) -> None:
    root = folder(None, [], is_root=True)
    plain = file("plain", [root["id"]])
    marked = dict(file("marked", [root["id"]]), properties={APP: {ATTRS_KEY: "a1;m100755", "x0": "k=tv"}})
    other_key = dict(file("other", [root["id"]]), properties={APP: {"x0": "k=tv"}})
    feed.push(ChangeSet([root, plain, marked, other_key], [], "cp1", True))
    store.sync(feed)
    assert store.resolve("/plain").posix is None  # type: ignore[union-attr]
    assert store.resolve("/other").posix is None  # type: ignore[union-attr]
    assert store.resolve("/marked").posix == "a1;m100755"  # type: ignore[union-attr]
    assert store.get(marked["id"]).posix == "a1;m100755"  # type: ignore[union-attr]
    assert {c.name: c.posix for c in store.children(root["id"])} == {
        "marked": "a1;m100755", "other": None, "plain": None}
    # an answer applied locally (a rename) carries its properties along
    renamed = store.apply_local(dict(marked, name="renamed", version=2,
                                     properties={APP: {ATTRS_KEY: "a1;m100700"}}))
    assert renamed.posix == "a1;m100700" and store.resolve("/renamed").posix == "a1;m100700"  # type: ignore[union-attr]


def test_set_properties_is_visible_at_once(store: NodeStore, feed: Feed) -> None:
    _root, _docs, f = _synced(store, feed)
    before = store.resolve("/docs/f.txt")   # cached in the path cache now
    assert before is not None and before.posix is None
    node = store.set_properties(f["id"], APP, {ATTRS_KEY: "a1;m100600", "x0": "a=tb"})
    assert node is not None and node.posix == "a1;m100600" and node.version == 4
    assert store.resolve("/docs/f.txt") == node
    assert store.properties(f["id"]) == {APP: {ATTRS_KEY: "a1;m100600", "x0": "a=tb"}}
    # everything else about the node stays as it was
    assert (node.ino, node.name, node.parents, node.size, node.md5, node.modified, node.created) == (
        before.ino, before.name, before.parents, before.size, before.md5, before.modified, before.created)
    node = store.set_properties(f["id"], APP, {}, delete=["x0"], requests=2)
    assert node is not None and node.version == 6
    assert store.properties(f["id"]) == {APP: {ATTRS_KEY: "a1;m100600"}}
    node = store.set_properties(f["id"], APP, {}, delete=[ATTRS_KEY])
    assert node is not None and node.posix is None and store.properties(f["id"]) == {}
    assert store.set_properties("no-such-node", APP, {"k": "v"}) is None


def test_stale_change_does_not_undo_a_local_update(store: NodeStore, feed: Feed) -> None:
    _root, _docs, f = _synced(store, feed)
    store.set_properties(f["id"], APP, {ATTRS_KEY: "a1;m100600"})
    # a change read from the server before the PUT: same version as the mirror had, old properties
    feed.push(ChangeSet([f], [], "cp2", False))
    store.sync(feed)
    assert store.resolve("/docs/f.txt").posix == "a1;m100600"  # type: ignore[union-attr]
    # the server's own later state wins, whatever it holds
    feed.push(ChangeSet([dict(f, version=9, properties={APP: {ATTRS_KEY: "a1;m100644"}})], [], "cp3", False))
    store.sync(feed)
    assert store.resolve("/docs/f.txt").posix == "a1;m100644"  # type: ignore[union-attr]
    feed.push(ChangeSet([dict(f, version=10)], [], "cp4", False))
    store.sync(feed)
    assert store.resolve("/docs/f.txt").posix is None  # type: ignore[union-attr]


def test_local_update_during_a_rebuild_survives_the_swap(store: NodeStore, feed: Feed) -> None:
    root, docs, f = _synced(store, feed)

    def changes(**kwargs: object):
        yield ChangeSet([root, docs], [], "r1", True)
        store.set_properties(f["id"], APP, {ATTRS_KEY: "a1;m100711"})
        yield ChangeSet([f], [], "r2", False)   # the dump's older state of f

    assert store.sync(changes).reset
    node = store.resolve("/docs/f.txt")
    assert node is not None and node.posix == "a1;m100711"
    assert store.properties(f["id"]) == {APP: {ATTRS_KEY: "a1;m100711"}}


def test_root_and_other_owners_keep_their_properties(store: NodeStore, feed: Feed) -> None:
    root = folder(None, [], is_root=True)
    f = dict(file("f", [root["id"]]), properties={"someone": {"k": "v"}})
    feed.push(ChangeSet([root, f], [], "cp1", True))
    store.sync(feed)
    r = store.set_properties(root["id"], APP, {ATTRS_KEY: "a1;m40700"})
    assert r is not None and r.is_root and r.posix == "a1;m40700" and store.resolve("/") == r
    store.set_properties(f["id"], APP, {"x0": "a=tb"})
    assert store.properties(f["id"]) == {"someone": {"k": "v"}, APP: {"x0": "a=tb"}}


def test_property_owners(store: NodeStore, feed: Feed) -> None:
    assert store.property_owners() == []
    _root, _docs, f = _synced(store, feed)
    assert store.property_owners() == []
    store.set_properties(f["id"], APP, {"k": "v"})
    assert store.property_owners() == [APP]
    store.set_properties(f["id"], "second", {"k": "v"})
    assert sorted(store.property_owners()) == [APP, "second"]
