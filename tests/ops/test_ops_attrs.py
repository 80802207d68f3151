"""chmod, chown, utimens, symlink, readlink and xattrs through the Operations class of the real stack
(built by the composition root), without a kernel, against the real server: the store shows a change at
once, the server holds it, and a second stack (another client) sees it after its sync (tier 3)."""

from __future__ import annotations

import errno
import io
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from ops_helpers import StackFactory

from acdfuse.fs.attrops import UTIME_NOW, UTIME_OMIT
from acdfuse.fs.attrs import Ownership, node_attrs
from acdfuse.fs.binding import FuseOSError
from acdfuse.mount import Stack
from acdfuse.server import DriveServer
from acdfuse.store import NodeStore
from acdfuse.vfs import posixattrs as pa
from acdfuse.vfs.nodeattrs import NodeAttrs

pytestmark = pytest.mark.timeout(120)

UID, GID = 1000, 1000


class Client:
    """One mount's stack as these tests use it (no kernel): ops, store, attrs, a sync."""

    def __init__(self, stack: Stack, *, caller: tuple[int, int, int]) -> None:
        self.stack = stack
        self.client = stack.client
        self.store: NodeStore = stack.store
        self.ops = stack.ops
        self.owner: Ownership = self.ops._owner
        assert self.ops._attrs is not None
        self.attrs: NodeAttrs = self.ops._attrs
        self.ops._caller = lambda: caller   # type: ignore[method-assign]

    def sync(self) -> None:
        self.stack.sync()

    def st(self, path: str) -> dict[str, int]:
        return self.ops.getattr(path)


@pytest.fixture
def clients(stacks: StackFactory) -> Callable[..., Client]:
    """``clients(name, writable=True, caller=(uid, gid, pid))``: a started stack on its own cache."""

    def make(name: str = "a", *, writable: bool = True,
             caller: tuple[int, int, int] = (UID, GID, 1)) -> Client:
        stack = stacks(cache=f"cache-{name}", uid=UID, gid=GID, read_only=not writable)
        return Client(stack, caller=caller)

    return make


@pytest.fixture
def tree(client: Any) -> dict[str, Any]:
    docs = client.create_folder("docs")
    f = client.upload_stream(io.BytesIO(b"hello world"), "f.txt", docs["id"])
    return {"docs": docs, "f": f}


def errno_of(call: Callable[[], Any]) -> int:
    with pytest.raises(FuseOSError) as info:
        call()
    return info.value.errno


def server_props(client: Any, node_id: str) -> dict[str, str]:
    return client.list_properties(node_id, client.get_owner_id())


# ---- modes, owners, times ---------------------------------------------------------------------

def test_chmod_is_shown_at_once_kept_on_the_server_and_seen_by_another_client(
        clients: Callable[..., Client], tree: dict[str, Any], client: Any) -> None:
    a = clients("a")
    before = a.st("/docs/f.txt")
    server_time = a.store.resolve("/docs/f.txt").modified   # type: ignore[union-attr]
    assert before["st_mode"] == stat.S_IFREG | 0o644
    time.sleep(0.01)   # so that the server's modifiedDate visibly moves with the property request
    t0 = time.time_ns()
    assert a.ops.chmod("/docs/f.txt", 0o100750) == 0
    after = a.st("/docs/f.txt")
    assert after["st_mode"] == stat.S_IFREG | 0o750
    assert after["st_mtime"] == before["st_mtime"]       # chmod does not move the mtime
    assert t0 <= after["st_ctime"] <= time.time_ns()     # but the ctime, at once
    record = pa.PosixRecord.decode(server_props(client, tree["f"]["id"])["posix"])
    assert record is not None and record.mode == stat.S_IFREG | 0o750
    # another client, after its sync; and this one after its own sync (the server moved modifiedDate)
    b = clients("b")
    a.sync()
    assert a.store.resolve("/docs/f.txt").modified > server_time   # type: ignore[union-attr]
    for s in (a, b):
        st = s.st("/docs/f.txt")
        assert st["st_mode"] == stat.S_IFREG | 0o750 and st["st_mtime"] == before["st_mtime"]
        assert st["st_ctime"] == after["st_ctime"]       # a sync does not move it
    # folders too; the type bits stay the node's
    a.ops.chmod("/docs", 0o700)
    assert a.st("/docs")["st_mode"] == stat.S_IFDIR | 0o700
    # the same mode again sends nothing
    version = a.store.resolve("/docs").version   # type: ignore[union-attr]
    a.ops.chmod("/docs", 0o40700)
    assert a.store.resolve("/docs").version == version   # type: ignore[union-attr]


def test_chmod_makes_a_file_executable(clients: Callable[..., Client], tree: dict[str, Any]) -> None:
    a = clients()
    assert errno_of(lambda: a.ops.access("/docs/f.txt", os.X_OK)) == errno.EACCES
    a.ops.chmod("/docs/f.txt", 0o755)
    assert a.ops.access("/docs/f.txt", os.X_OK) == 0


def test_utimens_keeps_nanoseconds_and_ignores_atime(clients: Callable[..., Client],
                                                     tree: dict[str, Any]) -> None:
    a = clients()
    mtime = 1_234_567_890_123_456_789
    assert a.ops.utimens("/docs/f.txt", (5, mtime)) == 0
    st = a.st("/docs/f.txt")
    assert st["st_mtime"] == mtime and st["st_atime"] == mtime
    a.sync()
    assert a.st("/docs/f.txt")["st_mtime"] == mtime
    b = clients("b")
    assert b.st("/docs/f.txt")["st_mtime"] == mtime
    # atime only: nothing to store, no request
    version = a.store.resolve("/docs/f.txt").version   # type: ignore[union-attr]
    a.ops.utimens("/docs/f.txt", (7, UTIME_OMIT))
    assert a.store.resolve("/docs/f.txt").version == version   # type: ignore[union-attr]
    # now (touch): the mtime moves to the present
    t0 = time.time_ns()
    a.ops.utimens("/docs/f.txt", (UTIME_NOW, UTIME_NOW))
    assert t0 <= a.st("/docs/f.txt")["st_mtime"] <= time.time_ns()
    a.ops.utimens("/docs/f.txt", None)
    assert t0 <= a.st("/docs/f.txt")["st_mtime"] <= time.time_ns()
    # times before 1970 are times too
    a.ops.utimens("/docs", (0, -86_400_000_000_001))
    assert a.st("/docs")["st_mtime"] == -86_400_000_000_001


def test_mtime_of_replaced_content_gives_way(clients: Callable[..., Client], tree: dict[str, Any],
                                             client: Any) -> None:
    """Another client overwrites the content without knowing the record: the file shows the server's
    time again (make and rsync see the change), while its mode stays."""
    a = clients()
    a.ops.chmod("/docs/f.txt", 0o600)
    a.ops.utimens("/docs/f.txt", (0, 1_000_000_000_000_000_000))
    client.overwrite_stream(io.BytesIO(b"new content"), tree["f"]["id"])
    a.sync()
    st = a.st("/docs/f.txt")
    node = a.store.resolve("/docs/f.txt")
    assert node is not None and st["st_mtime"] == round(node.modified * 1000) * 1_000_000
    assert st["st_mode"] == stat.S_IFREG | 0o600 and st["st_size"] == 11


def test_chown_follows_posix_rules(clients: Callable[..., Client], tree: dict[str, Any]) -> None:
    user = clients("user")
    # giving a file away, or changing to a group the caller is not in: root only
    assert errno_of(lambda: user.ops.chown("/docs/f.txt", 4242, -1)) == errno.EPERM
    assert errno_of(lambda: user.ops.chown("/docs/f.txt", -1, 4242)) == errno.EPERM
    # what a stat already shows: nothing to do (cp -p does this for every file)
    assert user.ops.chown("/docs/f.txt", UID, GID) == 0
    assert user.store.resolve("/docs/f.txt").posix is None   # type: ignore[union-attr]
    root = clients("root", caller=(0, 0, 1))
    assert root.ops.chown("/docs/f.txt", 4242, 4343) == 0
    st = root.st("/docs/f.txt")
    assert (st["st_uid"], st["st_gid"]) == (4242, 4343)
    root.ops.chown("/docs/f.txt", -1, 7)
    assert (root.st("/docs/f.txt")["st_uid"], root.st("/docs/f.txt")["st_gid"]) == (4242, 7)
    user.sync()
    assert user.st("/docs/f.txt")["st_uid"] == 4242
    # not the owner any more: no chmod, no explicit times (touch to "now" still works)
    assert errno_of(lambda: user.ops.chmod("/docs/f.txt", 0o777)) == errno.EPERM
    assert errno_of(lambda: user.ops.utimens("/docs/f.txt", (0, 5))) == errno.EPERM
    assert user.ops.utimens("/docs/f.txt", None) == 0


# ---- symlinks ---------------------------------------------------------------------------------

def test_symlink_and_readlink(clients: Callable[..., Client], tree: dict[str, Any], client: Any,
                              drive_server: DriveServer) -> None:
    a = clients()
    assert a.ops.symlink("/docs/link", "../elsewhere/f.txt") == 0
    st = a.st("/docs/link")
    assert stat.S_ISLNK(st["st_mode"]) and st["st_size"] == len("../elsewhere/f.txt")
    assert a.ops.readlink("/docs/link") == "../elsewhere/f.txt"
    assert [n for n, attrs, _ in a.ops.readdir("/docs", 0)[2:] if stat.S_ISLNK(attrs["st_mode"])] == ["link"]
    # the node is a small file holding the target, for clients that know nothing of records
    node = a.store.resolve("/docs/link")
    assert node is not None and node.is_file
    assert bytes(client.download_chunk(node.id, 0, node.size)) == b"../elsewhere/f.txt"
    b = clients("b")
    assert stat.S_ISLNK(b.st("/docs/link")["st_mode"])
    assert b.ops.readlink("/docs/link") == "../elsewhere/f.txt"
    # a target too long for the record is read from the content
    long_target = "/".join(["ä" * 100] * 20)            # 4019 bytes of UTF-8
    a.ops.symlink("/docs/long", long_target)
    assert a.st("/docs/long")["st_size"] == len(long_target.encode())
    downloads = drive_server.stats.snapshot()["download"]
    assert a.ops.readlink("/docs/long") == long_target
    assert drive_server.stats.snapshot()["download"] == downloads + 1
    b.sync()
    assert b.ops.readlink("/docs/long") == long_target
    # errors: an existing name, a name or target too long, a parent that is a file, not a link
    assert errno_of(lambda: a.ops.symlink("/docs/f.txt", "x")) == errno.EEXIST
    # the drive's names are caseless: the server refuses the clash
    assert errno_of(lambda: a.ops.symlink("/docs/F.TXT", "x")) == errno.EEXIST
    assert errno_of(lambda: a.ops.symlink("/docs/" + "n" * 256, "x")) == errno.ENAMETOOLONG
    assert errno_of(lambda: a.ops.symlink("/docs/t", "t" * 4096)) == errno.ENAMETOOLONG
    assert errno_of(lambda: a.ops.symlink("/docs/f.txt/x", "t")) == errno.ENOTDIR
    assert errno_of(lambda: a.ops.symlink("/nowhere/x", "t")) == errno.ENOENT
    assert errno_of(lambda: a.ops.readlink("/docs/f.txt")) == errno.EINVAL
    assert errno_of(lambda: a.ops.readlink("/docs")) == errno.EINVAL


def test_lutimes_and_xattrs_of_a_symlink_keep_it_a_symlink(clients: Callable[..., Client],
                                                            tree: dict[str, Any]) -> None:
    a = clients()
    a.ops.symlink("/docs/link", "f.txt")
    a.ops.utimens("/docs/link", (0, 42))
    a.ops.setxattr("/docs/link", "user.k", b"v", 0)
    b = clients("b")
    for s in (a, b):
        st = s.st("/docs/link")
        assert stat.S_ISLNK(st["st_mode"]) and st["st_mtime"] == 42
        assert s.ops.readlink("/docs/link") == "f.txt"


# ---- xattrs -----------------------------------------------------------------------------------

def test_xattrs_round_trip_and_persist(clients: Callable[..., Client], tree: dict[str, Any]) -> None:
    a = clients()
    mtime = a.st("/docs/f.txt")["st_mtime"]
    server_time = a.store.resolve("/docs/f.txt").modified   # type: ignore[union-attr]
    assert a.ops.listxattr("/docs/f.txt") == []
    time.sleep(0.01)
    a.ops.setxattr("/docs/f.txt", "user.mime_type", b"text/plain", 0)
    a.ops.setxattr("/docs/f.txt", "user.bin", bytes(range(256)), 0)
    assert a.ops.getxattr("/docs/f.txt", "user.mime_type") == b"text/plain"
    assert a.ops.listxattr("/docs/f.txt") == ["user.bin", "user.mime_type"]
    a.sync()
    assert a.store.resolve("/docs/f.txt").modified > server_time   # type: ignore[union-attr]
    assert a.st("/docs/f.txt")["st_mtime"] == mtime       # setxattr does not move the mtime
    b = clients("b")
    assert b.ops.getxattr("/docs/f.txt", "user.bin") == bytes(range(256))
    assert b.st("/docs/f.txt")["st_mtime"] == mtime
    # flags, replace, remove
    assert errno_of(lambda: a.ops.setxattr("/docs/f.txt", "user.bin", b"x", os.XATTR_CREATE)) == errno.EEXIST
    assert errno_of(lambda: a.ops.setxattr("/docs/f.txt", "user.no", b"x", os.XATTR_REPLACE)) == errno.ENODATA
    a.ops.setxattr("/docs/f.txt", "user.bin", b"", os.XATTR_REPLACE)
    assert a.ops.getxattr("/docs/f.txt", "user.bin") == b""
    a.ops.removexattr("/docs/f.txt", "user.bin")
    assert a.ops.listxattr("/docs/f.txt") == ["user.mime_type"]
    assert errno_of(lambda: a.ops.getxattr("/docs/f.txt", "user.bin")) == errno.ENODATA
    assert errno_of(lambda: a.ops.removexattr("/docs/f.txt", "user.bin")) == errno.ENODATA
    b.sync()
    assert b.ops.listxattr("/docs/f.txt") == ["user.mime_type"]
    # folders have xattrs too
    a.ops.setxattr("/docs", "user.d", b"1", 0)
    assert a.ops.listxattr("/docs") == ["user.d"]


def test_xattr_limits_give_enospc(clients: Callable[..., Client], tree: dict[str, Any]) -> None:
    a = clients()
    for i in range(9):
        a.ops.setxattr("/docs/f.txt", f"user.k{i}", b"v" * 100, 0)
    assert errno_of(lambda: a.ops.setxattr("/docs/f.txt", "user.tenth", b"v", 0)) == errno.ENOSPC
    assert errno_of(lambda: a.ops.setxattr("/docs/f.txt", "user.k0", b"v" * 500, 0)) == errno.ENOSPC
    assert a.ops.getxattr("/docs/f.txt", "user.k0") == b"v" * 100    # unchanged
    # chmod still fits: the record's key is reserved
    a.ops.chmod("/docs/f.txt", 0o600)
    assert a.st("/docs/f.txt")["st_mode"] & 0o777 == 0o600
    a.ops.removexattr("/docs/f.txt", "user.k3")
    a.ops.setxattr("/docs/f.txt", "user.tenth", b"v", 0)
    assert len(a.ops.listxattr("/docs/f.txt")) == 9


def test_other_namespaces_and_the_node_identity(clients: Callable[..., Client], tree: dict[str, Any]) -> None:
    a = clients()
    for name in ("security.capability", "security.selinux", "system.posix_acl_access", "trusted.x"):
        assert errno_of(lambda name=name: a.ops.getxattr("/docs/f.txt", name)) == errno.ENODATA
        assert errno_of(lambda name=name: a.ops.setxattr("/docs/f.txt", name, b"x", 0)) == errno.ENOTSUP
    # no lookup for the kernel's questions: even a missing path answers ENODATA at once
    assert errno_of(lambda: a.ops.getxattr("/missing", "security.capability")) == errno.ENODATA
    f = tree["f"]
    assert a.ops.getxattr("/docs/f.txt", "system.acdfuse.id") == f["id"].encode()
    assert a.ops.getxattr("/docs/f.txt", "system.acdfuse.md5") == f["contentProperties"]["md5"].encode()
    assert a.ops.getxattr("/docs/f.txt", "system.acdfuse.content_version") == b"1"
    assert int(a.ops.getxattr("/docs/f.txt", "system.acdfuse.version")) >= 1
    assert a.ops.getxattr("/docs", "system.acdfuse.id") == tree["docs"]["id"].encode()
    assert errno_of(lambda: a.ops.getxattr("/docs", "system.acdfuse.md5")) == errno.ENODATA
    assert errno_of(lambda: a.ops.getxattr("/docs/f.txt", "system.acdfuse.other")) == errno.ENODATA
    assert errno_of(lambda: a.ops.setxattr("/docs/f.txt", "system.acdfuse.id", b"x", 0)) == errno.EPERM
    assert errno_of(lambda: a.ops.removexattr("/docs/f.txt", "system.acdfuse.md5")) == errno.EPERM
    assert "system.acdfuse.id" not in a.ops.listxattr("/docs/f.txt")   # never copied by cp/tar/rsync
    assert errno_of(lambda: a.ops.getxattr("/missing", "user.a")) == errno.ENOENT


def test_concurrent_changes_of_one_node_all_land(clients: Callable[..., Client], tree: dict[str, Any],
                                                 client: Any) -> None:
    a = clients()
    errors: list[BaseException] = []

    def setter(i: int) -> None:
        try:
            a.ops.setxattr("/docs/f.txt", f"user.t{i}", str(i).encode(), 0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=setter, args=(i,)) for i in range(8)]
    threads.append(threading.Thread(target=lambda: a.ops.chmod("/docs/f.txt", 0o640)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert a.ops.listxattr("/docs/f.txt") == [f"user.t{i}" for i in range(8)]
    assert len(server_props(client, tree["f"]["id"])) == 9
    b = clients("b")
    assert b.ops.listxattr("/docs/f.txt") == [f"user.t{i}" for i in range(8)]
    assert b.st("/docs/f.txt")["st_mode"] & 0o777 == 0o640


def test_read_only_refuses_changes_but_reads(clients: Callable[..., Client], tree: dict[str, Any]) -> None:
    a = clients("a")
    a.ops.setxattr("/docs/f.txt", "user.a", b"1", 0)
    a.ops.symlink("/docs/l", "f.txt")
    ro = clients("ro", writable=False)
    for call in (lambda: ro.ops.chmod("/docs/f.txt", 0o600), lambda: ro.ops.chown("/docs/f.txt", 1, 1),
                 lambda: ro.ops.utimens("/docs/f.txt", None), lambda: ro.ops.symlink("/docs/m", "x"),
                 lambda: ro.ops.setxattr("/docs/f.txt", "user.b", b"1", 0),
                 lambda: ro.ops.removexattr("/docs/f.txt", "user.a")):
        assert errno_of(call) == errno.EROFS
    assert ro.ops.getxattr("/docs/f.txt", "user.a") == b"1"
    assert ro.ops.listxattr("/docs/f.txt") == ["user.a"]
    assert ro.ops.readlink("/docs/l") == "f.txt"


def test_owner_id_comes_from_the_mirror_when_it_can(clients: Callable[..., Client], tree: dict[str, Any],
                                                     client: Any) -> None:
    """The probe (a file created and trashed) runs once for a mirror without properties; a mirror that
    has some knows the owner already."""
    a = clients("a")
    a.ops.chmod("/docs/f.txt", 0o600)           # probes: no properties anywhere yet
    trashed = len(client.list_trash())
    assert trashed == 1                          # the probe file
    b = clients("b")
    b.ops.chmod("/docs", 0o700)
    assert len(client.list_trash()) == trashed   # b learned the owner from its mirror
    assert b.attrs.owner() == client.get_owner_id()


class FakeWriteSide:
    """Stands in for vfs/writes.py's WriteSide: the attribute text it keeps for files whose content is
    local (``dirty``), refused (False) for the others, as the real one does."""

    def __init__(self, dirty: set[str]) -> None:
        self.dirty = dirty
        self.kept: dict[str, str | None] = {}

    def has_local(self, node_id: str) -> bool:
        return node_id in self.dirty

    def get_attrs(self, key: str) -> str | None:
        return self.kept.get(key)

    def set_attrs(self, key: str, attrs_json: str | None) -> bool:
        if key not in self.dirty:
            return False
        self.kept[key] = attrs_json
        return True


def test_files_with_local_content_keep_attributes_with_the_write_side(
        clients: Callable[..., Client], tree: dict[str, Any], client: Any) -> None:
    """A file being rewritten: attribute changes go into the text the write side keeps for its upload
    (nothing to the server), starting from the server's attributes without their mtime; once it is
    uploaded, the write side's hook stores them, with the mtime bound to the new content."""
    a = clients()
    node_id = tree["f"]["id"]
    a.ops.setxattr("/docs/f.txt", "user.old", b"1", 0)
    a.ops.utimens("/docs/f.txt", (0, 55))
    ws = FakeWriteSide({node_id})
    a.ops._pending = ws
    version = a.store.resolve("/docs/f.txt").version   # type: ignore[union-attr]
    assert a.ops.listxattr("/docs/f.txt") == ["user.old"]      # the server's, until something is kept
    a.ops.chmod("/docs/f.txt", 0o700)
    a.ops.setxattr("/docs/f.txt", "user.p", b"q", 0)
    a.ops.removexattr("/docs/f.txt", "user.old")
    assert a.ops.getxattr("/docs/f.txt", "user.p") == b"q" and a.ops.listxattr("/docs/f.txt") == ["user.p"]
    assert a.store.resolve("/docs/f.txt").version == version      # nothing went to the server
    kept = pa.pending_props(ws.kept[node_id])
    record = pa.PosixRecord.decode(kept["posix"])
    assert record is not None and record.ctime_ns is not None
    assert replace(record, ctime_ns=None) == pa.PosixRecord(mode=stat.S_IFREG | 0o700)   # no old mtime
    # the upload made content version 2; the hook stores what was kept, with the local write time
    client.overwrite_stream(io.BytesIO(b"rewritten"), node_id)
    a.sync()
    uploaded = a.store.get(node_id)
    assert uploaded is not None and uploaded.content_version == 2
    a.attrs.after_upload(uploaded, ws.kept[node_id] or "", 1_700_000_000_000_000_001)
    ws.dirty.clear()
    st = a.st("/docs/f.txt")
    assert st["st_mode"] == stat.S_IFREG | 0o700 and st["st_mtime"] == 1_700_000_000_000_000_001
    assert a.ops.listxattr("/docs/f.txt") == ["user.p"]
    b = clients("b")
    assert b.st("/docs/f.txt")["st_mtime"] == 1_700_000_000_000_000_001
    assert b.ops.listxattr("/docs/f.txt") == ["user.p"]
    # set_attrs refused (the upload finished meanwhile): the change goes to the server instead
    ws.dirty.add(node_id)
    ws.set_attrs = lambda key, text: False   # type: ignore[method-assign]
    a.ops.chmod("/docs/f.txt", 0o640)
    assert a.st("/docs/f.txt")["st_mode"] == stat.S_IFREG | 0o640
    assert pa.PosixRecord.decode(server_props(client, node_id)["posix"]).mode == stat.S_IFREG | 0o640  # type: ignore[union-attr]


def test_new_files_keep_attributes_until_their_upload(clients: Callable[..., Client],
                                                      tree: dict[str, Any]) -> None:
    """A new file (id ``local:<n>``) has no server attributes and no node identity yet."""
    a = clients()
    local = replace(a.store.resolve("/docs/f.txt"), id="local:7")   # type: ignore[type-var]
    a.ops._node = lambda path: local   # type: ignore[method-assign]
    ws = FakeWriteSide({"local:7"})
    a.ops._pending = ws
    a.ops.utimens("/docs/f.txt", (0, 77))
    a.ops._initial_mode("/docs/f.txt", local, 0o100444)
    a.ops._initial_mode("/docs/f.txt", local, 0o100644)      # the default: nothing to keep
    sent = pa.properties_for_upload(ws.kept["local:7"], content_version=1)
    record = pa.PosixRecord.decode(sent["posix"])
    assert record is not None and record.ctime_ns is not None
    assert replace(record, ctime_ns=None) == pa.PosixRecord(mode=stat.S_IFREG | 0o444, mtime_ns=77,
                                                            mtime_cv=1)
    assert errno_of(lambda: a.ops.getxattr("/docs/f.txt", "system.acdfuse.id")) == errno.ENODATA
    assert a.ops.listxattr("/docs/f.txt") == []


def test_a_new_folder_keeps_its_creation_mode(clients: Callable[..., Client], tree: dict[str, Any]) -> None:
    a = clients()
    docs = a.store.resolve("/docs")
    assert docs is not None
    a.ops._initial_mode("/docs", docs, 0o40700)
    assert a.st("/docs")["st_mode"] == stat.S_IFDIR | 0o700
    b = clients("b")
    assert b.st("/docs")["st_mode"] == stat.S_IFDIR | 0o700


def test_stat_defaults_unchanged_without_records(clients: Callable[..., Client],
                                                 tree: dict[str, Any]) -> None:
    a = clients()
    node = a.store.resolve("/docs/f.txt")
    assert node is not None and a.st("/docs/f.txt") == node_attrs(node, a.owner, 1)
