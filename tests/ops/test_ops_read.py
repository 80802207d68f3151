"""The real stack, built by the composition root, driven in-process as libfuse would (tier 3): lookups,
listings, reads and statfs through DriveOperations, the SQLite mirror, the content reader and the API
client against the real server. No kernel, so no page cache in between: every call reaches our code."""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import Any

import pytest

from ops_helpers import StackFactory, fails_with, fi, pattern, read_file, resync, upload


def tree(client: Any) -> dict[str, Any]:
    """/docs/a.txt, /docs/sub/, /big.bin (3 chunks and a bit): what the tests read."""
    docs = client.create_folder("docs")
    client.create_folder("sub", docs["id"])
    return {"a": upload(client, "a.txt", b"hello world\n", docs["id"]),
            "big": upload(client, "big.bin", pattern(3 * (4 << 20) + 1234, 5)),
            "big_data": pattern(3 * (4 << 20) + 1234, 5)}


def test_build_touches_nothing_until_start(stacks: StackFactory, client: Any) -> None:
    stack = stacks(start=False)
    # no thread, no mirror file, nothing in the cache dir: build() only wires
    assert stack.sync_loop.syncs == 0
    assert not stack.opts.cache_dir.exists()
    stack.start()
    assert stack.opts.db_path.exists()
    assert stack.ops.getattr("/")["st_ino"] > 0


def test_getattr(stacks: StackFactory, client: Any) -> None:
    nodes = tree(client)
    writable = stacks(cache="writable", uid=1234, gid=567, umask=0o027).ops.getattr("/")
    assert writable["st_mode"] & 0o777 == 0o750                                # writable, umask 027
    stack = stacks(uid=1234, gid=567, umask=0o027, read_only=True)
    ops = stack.ops
    root = ops.getattr("/")
    assert stat.S_ISDIR(root["st_mode"]) and root["st_mode"] & 0o777 == 0o550   # read-only, umask 027
    assert root["st_nlink"] == 3                                               # ., .. and docs
    st = ops.getattr("/docs/a.txt")
    assert stat.S_ISREG(st["st_mode"]) and st["st_mode"] & 0o777 == 0o440
    assert (st["st_size"], st["st_uid"], st["st_gid"]) == (12, 1234, 567)
    assert ops.getattr("/docs")["st_nlink"] == 3                               # ., .. and sub
    assert ops.getattr("/big.bin")["st_size"] == len(nodes["big_data"])
    # inode numbers are the store's, stable across calls and unique
    inos = {ops.getattr(p)["st_ino"] for p in ("/", "/docs", "/docs/a.txt", "/docs/sub", "/big.bin")}
    assert len(inos) == 5
    assert ops.getattr("/docs/a.txt")["st_ino"] == st["st_ino"]
    fails_with(errno.ENOENT, lambda: ops.getattr("/docs/missing"))
    fails_with(errno.ENOENT, lambda: ops.getattr("/docs/a.txt/below-a-file"))


def test_readdir(stacks: StackFactory, client: Any) -> None:
    tree(client)
    ops = stacks().ops
    fh = ops.opendir("/docs")
    entries = ops.readdir("/docs", fh)
    assert ops.releasedir("/docs", fh) == 0
    assert entries[:2] == [".", ".."]
    by_name = {e[0]: e[1] for e in entries[2:] if isinstance(e, tuple)}
    assert sorted(by_name) == ["a.txt", "sub"]
    # type and inode with each name, as readdir's d_type/d_ino
    assert stat.S_ISDIR(by_name["sub"]["st_mode"]) and stat.S_ISREG(by_name["a.txt"]["st_mode"])
    assert by_name["a.txt"]["st_ino"] == ops.getattr("/docs/a.txt")["st_ino"]
    fails_with(errno.ENOTDIR, lambda: ops.opendir("/docs/a.txt"))
    fails_with(errno.ENOENT, lambda: ops.opendir("/nowhere"))


def test_open_read_release(stacks: StackFactory, client: Any) -> None:
    nodes = tree(client)
    stack = stacks()
    ops, data = stack.ops, nodes["big_data"]
    assert read_file(stack, "/docs/a.txt") == b"hello world\n"
    assert read_file(stack, "/big.bin") == data
    f = fi()
    assert ops.open("/big.bin", f) == 0 and f.fh > 0
    # reads at any offset, across chunk boundaries; short only at end of file
    assert ops.read("/big.bin", 100, (4 << 20) - 50, f) == data[(4 << 20) - 50:(4 << 20) + 50]
    assert ops.read("/big.bin", 4096, len(data) - 10, f) == data[-10:]
    assert ops.read("/big.bin", 4096, len(data) + 10, f) == b""
    # fstat through the handle answers from the open file's node
    assert ops.getattr("/big.bin", f)["st_size"] == len(data)
    assert ops.release("/big.bin", f) == 0
    assert stack.ops.handles.open_files() == []
    fails_with(errno.EBADF, lambda: ops.read("/big.bin", 10, 0, f))
    fails_with(errno.EISDIR, lambda: ops.open("/docs", fi()))
    fails_with(errno.ENOENT, lambda: ops.open("/docs/missing", fi()))
    # the second read of a file came from the caches: one fetch per chunk in all
    stats = stack.reader.stats()
    assert stats["fetch_errors"] == 0 and stats["hits"] > 0


def test_keep_cache_only_while_the_content_is_unchanged(stacks: StackFactory, client: Any) -> None:
    nodes = tree(client)
    stack = stacks()
    ops = stack.ops
    first, second = fi(), fi()
    ops.open("/docs/a.txt", first)
    assert first.keep_cache == 0                 # nothing in the kernel's page cache yet
    ops.open("/docs/a.txt", second)
    assert second.keep_cache == 1                # same content: the kernel may keep its pages
    client.overwrite_stream(io.BytesIO(b"new content!"), nodes["a"]["id"])
    resync(stack)
    third = fi()
    ops.open("/docs/a.txt", third)
    assert third.keep_cache == 0                 # new content: the kernel must drop its pages
    assert ops.read("/docs/a.txt", 100, 0, third) == b"new content!"
    for f in (first, second, third):
        ops.release("/docs/a.txt", f)


@pytest.mark.parametrize("writable", [False, True])
def test_an_open_while_the_kernel_may_hold_the_old_size_bypasses_it(stacks: StackFactory, client: Any,
                                                                     writable: bool) -> None:
    # The many-mounts test read a file changed on the server as its new bytes cut at the old size (or
    # padded with zeros up to it): a sync changed the store, and the open came before the kernel was
    # told the new size. Such an open gets direct_io, so the kernel's size plays no part in its reads.
    nodes = tree(client)
    stack = stacks(**({} if writable else {"read_only": True}))
    ops = stack.ops
    assert ops.getattr("/docs/a.txt")["st_size"] == 12              # the kernel holds 12
    client.overwrite_stream(io.BytesIO(b"four"), nodes["a"]["id"])
    resync(stack)
    flags = os.O_RDWR if writable else os.O_RDONLY
    before = fi(flags)
    ops.open("/docs/a.txt", before)
    assert before.direct_io == 1 and before.keep_cache == 0
    assert ops.read("/docs/a.txt", 128 * 1024, 0, before) == b"four"
    assert ops.getattr("/docs/a.txt")["st_size"] == 4               # the kernel has asked: now it knows
    after = fi(flags)
    ops.open("/docs/a.txt", after)
    assert after.direct_io == 0
    assert ops.read("/docs/a.txt", 128 * 1024, 0, after) == b"four"
    for f in (before, after):
        ops.release("/docs/a.txt", f)
    client.overwrite_stream(io.BytesIO(b"same"), nodes["a"]["id"])  # new content of the same size
    resync(stack)
    same = fi(flags)
    ops.open("/docs/a.txt", same)
    assert same.direct_io == 0
    ops.release("/docs/a.txt", same)


def test_an_open_file_reads_on_after_a_remote_rename(stacks: StackFactory, client: Any) -> None:
    nodes = tree(client)
    stack = stacks(read_only=True)
    ops = stack.ops
    f = fi()
    ops.open("/big.bin", f)
    client.rename_node(nodes["big"]["id"], "renamed.bin")
    resync(stack)
    fails_with(errno.ENOENT, lambda: ops.getattr("/big.bin"))          # a new lookup sees the change
    assert ops.getattr("/big.bin", f)["st_size"] == len(nodes["big_data"])   # the fd does not
    assert ops.read("/big.bin", 1000, 5000, f) == nodes["big_data"][5000:6000]
    ops.release("/big.bin", f)
    assert read_file(stack, "/renamed.bin") == nodes["big_data"]


def test_an_open_file_renamed_elsewhere_on_a_writable_mount(stacks: StackFactory, client: Any) -> None:
    # the kernel asks for an open file's attributes by the path it was opened at, without its handle,
    # on a writable mount (see DriveOperations._opened_at): that path answers while the file is open;
    # the folder and new opens see the change
    nodes = tree(client)
    stack = stacks()
    ops = stack.ops
    f = fi()
    ops.open("/big.bin", f)
    client.rename_node(nodes["big"]["id"], "renamed.bin")
    resync(stack)
    assert ops.getattr("/big.bin")["st_size"] == len(nodes["big_data"])
    fh = ops.opendir("/")
    names = [e if isinstance(e, str) else e[0] for e in ops.readdir("/", fh)]
    ops.releasedir("/", fh)
    assert "big.bin" not in names and "renamed.bin" in names
    fails_with(errno.ENOENT, lambda: ops.open("/big.bin", fi()))
    assert ops.read("/big.bin", 1000, 5000, f) == nodes["big_data"][5000:6000]
    ops.release("/big.bin", f)
    fails_with(errno.ENOENT, lambda: ops.getattr("/big.bin"))          # closed: the old path is gone
    assert read_file(stack, "/renamed.bin") == nodes["big_data"]


def test_statfs_is_the_account_quota(stacks: StackFactory, client: Any) -> None:
    tree(client)
    stack = stacks()
    total, available = client.fs_sizes()
    sv = stack.ops.statfs("/")
    assert sv["f_blocks"] * sv["f_frsize"] == total - total % sv["f_frsize"]
    assert sv["f_bavail"] * sv["f_frsize"] == available - available % sv["f_frsize"]
    assert sv["f_namemax"] == 255


def test_every_change_is_refused_read_only(stacks: StackFactory, client: Any) -> None:
    tree(client)
    for read_only in (True,):           # (a writable mount: tests/vfs/test_ops_write.py)
        stack = stacks(cache=f"cache-{read_only}", read_only=read_only)
        ops = stack.ops
        calls: dict[str, tuple[Any, ...]] = {
            "create": ("/n", 0o644, fi()), "write": ("/docs/a.txt", b"x", 0, fi()),
            "truncate": ("/docs/a.txt", 0), "mkdir": ("/d", 0o755), "mknod": ("/n", 0o644, 0),
            "rmdir": ("/docs/sub",), "unlink": ("/docs/a.txt",), "rename": ("/docs/a.txt", "/b"),
            "link": ("/b", "/docs/a.txt"), "symlink": ("/b", "/docs/a.txt"),
            "chmod": ("/docs/a.txt", 0o600), "chown": ("/docs/a.txt", 0, 0), "utimens": ("/docs/a.txt", None),
            "setxattr": ("/docs/a.txt", "user.a", b"1", 0), "removexattr": ("/docs/a.txt", "user.a"),
        }
        for name, args in calls.items():
            fails_with(errno.EROFS, lambda name=name, args=args: getattr(ops, name)(*args))
        for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
            fails_with(errno.EROFS, lambda flags=flags: ops.open("/docs/a.txt", fi(flags)))
        fails_with(errno.EROFS, lambda: ops.access("/docs/a.txt", os.W_OK))
        fails_with(errno.EACCES, lambda: ops.access("/docs/a.txt", os.X_OK))
        assert ops.access("/docs", os.R_OK | os.X_OK) == 0
        assert read_file(stack, "/docs/a.txt") == b"hello world\n"   # nothing changed


def test_operations_libfuse_does_not_get(stacks: StackFactory) -> None:
    # left out on purpose: libfuse answers ENOSYS once and the kernel stops asking (fsync is there:
    # it waits for the upload of a written file)
    ops = stacks().ops
    for name in ("flush", "lock", "bmap", "ioctl"):
        assert getattr(ops, name, None) is None, name
    fails_with(errno.ENOSYS, lambda: ops("flush", "/", fi()))



def test_readdir_plus_gives_attributes_once_per_folder_until_the_tree_changes(stacks: StackFactory,
                                                                              client: Any) -> None:
    """READDIRPLUS: the kernel gets every entry's attributes with the first listing of a folder (no
    lookup per entry), then plain listings (it keeps what it got), and again after a sync changed
    the tree."""
    tree(client)
    stack = stacks()
    ops = stack.ops
    fh = ops.opendir("/docs")
    try:
        plus = ops.readdir_plus("/docs", fh)
        assert plus is not None
        assert plus[:2] == [(".", None), ("..", None)]
        assert dict(plus[2:]) == {name: ops.getattr(f"/docs/{name}") for name in ("a.txt", "sub")}
        assert ops.readdir_plus("/docs", fh) is None            # the kernel has them already
        other = ops.opendir("/")
        assert ops.readdir_plus("/", other) is not None          # each folder once
        ops.releasedir("/", other)
        client.upload_stream(io.BytesIO(b"new"), "new.txt", stack.store.resolve("/docs").id)
        resync(stack)
        again = ops.readdir_plus("/docs", fh)
        assert again is not None and "new.txt" in dict(again)
    finally:
        ops.releasedir("/docs", fh)


def test_readdir_plus_gives_attributes_again_when_the_kernel_keeps_them_briefly(stacks: StackFactory,
                                                                                client: Any) -> None:
    """With short timeouts (``-o attr_timeout=...`` for libfuse) the kernel forgets the attributes
    soon, and a plain listing would cost a lookup per entry: every listing carries them then."""
    tree(client)
    ops = stacks(fuse_options=("entry_timeout=0",)).ops
    fh = ops.opendir("/docs")
    try:
        assert ops.readdir_plus("/docs", fh) is not None
        assert ops.readdir_plus("/docs", fh) is not None
    finally:
        ops.releasedir("/docs", fh)
