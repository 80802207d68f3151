"""Which kernel notices a sync turns into (fs/kernelcache.py), without a kernel: a real server, a real
mirror synced through ``KernelCache.watch``, and a notifier that records what it is told.

The real mounts prove the notices work (tests/mount/test_mount_coherence.py); these pin down that each
kind of change sends exactly its own: entries for places a node left or arrived at, attributes only for
a node that stayed where it was.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from acdfuse.fs.kernelcache import ROOT_NODEID, KernelCache, KernelSizes
from acdfuse.store import NodeStore

MNT = "/mnt/drive"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def expire_entry(self, parent: int, name: str) -> int:
        self.calls.append(("expire", ids.path(parent), name))
        return 0

    def drop_entry(self, parent: int, name: str) -> int:
        self.calls.append(("drop", ids.path(parent), name))
        return 0

    def inval_inode(self, nodeid: int) -> int:
        self.calls.append(("inode", ids.path(nodeid)))
        return 0


class NodeIds:
    """Stands in for the kernel's node ids: every path on the mount is known, each with its own id."""

    def __init__(self) -> None:
        self.by_path: dict[str, int] = {MNT: ROOT_NODEID}

    def __call__(self, path: str) -> int:
        return self.by_path.setdefault(path, len(self.by_path) + 1)

    def path(self, nodeid: int) -> str:
        return next(p for p, i in self.by_path.items() if i == nodeid).removeprefix(MNT) or "/"


ids = NodeIds()


def synced(store: NodeStore, cache: KernelCache, client: Any) -> None:
    result = store.sync(cache.watch(client.get_changes))
    cache.after_sync(result.changed, result.reset)


def test_each_change_forgets_its_own_places(tmp_path: Path, client: Any) -> None:
    docs = client.create_folder("docs")
    a = client.upload_stream(io.BytesIO(b"a"), "a.txt", docs["id"])
    old = client.upload_stream(io.BytesIO(b"o"), "old.txt")
    gone = client.upload_stream(io.BytesIO(b"g"), "gone.txt")
    client.upload_stream(io.BytesIO(b"k"), "kept.txt")
    with NodeStore(tmp_path / "nodes.db") as store:
        cache = KernelCache(Path(MNT), store, nodeid_of=ids)
        notices = Recorder()
        cache.attach(notices)

        synced(store, cache, client)      # the first sync is a reset: everything below the root goes
        assert sorted(notices.calls) == sorted([("inode", "/")] + [
            ("drop", "/", name) for name in ("docs", "old.txt", "gone.txt", "kept.txt")])

        notices.calls.clear()
        client.rename_node(old["id"], "new.txt")
        client.move_to_trash(gone["id"])
        client.overwrite_stream(io.BytesIO(b"new content"), a["id"])
        client.upload_stream(io.BytesIO(b"f"), "fresh.txt", docs["id"])
        synced(store, cache, client)
        assert sorted(notices.calls) == sorted([
            ("expire", "/", "old.txt"), ("expire", "/", "new.txt"), ("expire", "/", "gone.txt"),
            ("inode", "/"),                                     # the root's listing changed
            ("expire", "/docs", "fresh.txt"), ("inode", "/docs"),
            ("inode", "/docs/a.txt"),                           # new content, same place: attributes only
        ])

        notices.calls.clear()
        client.rename_node(docs["id"], "papers")   # one change; everything below it moves along
        synced(store, cache, client)
        assert sorted(notices.calls) == sorted([("expire", "/", "docs"), ("expire", "/", "papers"),
                                                ("inode", "/")])

        notices.calls.clear()
        synced(store, cache, client)               # nothing changed: nothing said
        assert notices.calls == []


def test_nothing_is_sent_before_the_mount_attaches(tmp_path: Path, client: Any) -> None:
    client.upload_stream(io.BytesIO(b"x"), "x.txt")
    with NodeStore(tmp_path / "nodes.db") as store:
        cache = KernelCache(Path(MNT), store, nodeid_of=ids)
        synced(store, cache, client)
        assert cache.sent == 0


def test_the_size_the_kernel_was_given_is_kept_until_it_is_told_the_new_one(tmp_path: Path,
                                                                             client: Any) -> None:
    # A sync changes the store a moment before its notices reach the kernel, and a notice leaves the old
    # size in place until the kernel asks: an open meanwhile must learn that the kernel's size is another
    big = client.upload_stream(io.BytesIO(b"x" * 5000), "big.txt")
    same = client.upload_stream(io.BytesIO(b"1234"), "same.txt")
    with NodeStore(tmp_path / "nodes.db") as store:
        cache = KernelCache(Path(MNT), store, nodeid_of=ids)
        cache.attach(Recorder())
        sizes = cache.sizes
        synced(store, cache, client)            # a reset: nothing noted (the kernel forgets everything)
        assert len(sizes) == 0
        client.overwrite_stream(io.BytesIO(b"short"), big["id"])
        client.overwrite_stream(io.BytesIO(b"abcd"), same["id"])
        synced(store, cache, client)
        assert sizes.differs(big["id"], 5) and not sizes.differs(big["id"], 5000)
        assert not sizes.differs(same["id"], 4)         # new content of the same size: nothing to fear
        assert len(sizes) == 1                          # kept: the kernel was never told the new size
        client.overwrite_stream(io.BytesIO(b"longer now"), big["id"])
        synced(store, cache, client)
        assert sizes.differs(big["id"], 10) and not sizes.differs(big["id"], 5000)   # still the first
        sizes.told(big["id"], 10)                       # a getattr, lookup or READDIRPLUS answer
        assert not sizes.differs(big["id"], 10)
        synced(store, cache, client)
        assert len(sizes) == 0                          # the kernel holds the store's size again
        sizes.told(big["id"], 10)                       # answers about files nobody noted cost nothing
        assert len(sizes) == 0


def test_the_sizes_noted_are_bounded(tmp_path: Path, client: Any) -> None:
    nodes = [client.upload_stream(io.BytesIO(b"x" * n), f"f{n}.txt") for n in range(1, 6)]
    with NodeStore(tmp_path / "nodes.db") as store:
        store.sync(client.get_changes)
        sizes = KernelSizes(store, limit=3)
        sizes.before_change([n["id"] for n in nodes])
        assert len(sizes) == 3
        assert sizes.differs(nodes[-1]["id"], 99) and not sizes.differs(nodes[0]["id"], 99)   # oldest went
