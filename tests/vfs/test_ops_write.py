"""The Operations class called directly (no kernel) over the real stack: content through the write side,
namespace changes on the server at once, the read side showing pending and dirty files."""

from __future__ import annotations

import errno
import logging
import os
from types import SimpleNamespace
from typing import Any

import pytest
from vfs_helpers import pattern
from writes_helpers import KiB, WriteStack

from acdfuse.fs.attrs import Ownership
from acdfuse.fs.binding import FuseOSError
from acdfuse.fs.operations import DriveOperations
from acdfuse.runtime.syncloop import QuotaCache


def fi(flags: int = os.O_RDONLY) -> SimpleNamespace:
    return SimpleNamespace(flags=flags, fh=0, keep_cache=0, direct_io=0)


class Ops:
    """DriveOperations over a WriteStack, with file-like shortcuts."""

    def __init__(self, stack: WriteStack, writable: bool = True) -> None:
        self.stack = stack
        owner = Ownership(os.getuid(), os.getgid(), 0o022, writable=writable)
        assert stack.store is not None and stack.reader is not None
        self.ops = DriveOperations(stack.store, stack.reader, QuotaCache(), owner,
                                   writes=stack.ws if writable else None,
                                   api=stack.client if writable else None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ops, name)

    def put(self, path: str, data: bytes) -> None:
        f = fi(os.O_WRONLY | os.O_CREAT)
        self.ops.create(path, 0o644, f)
        if data:
            assert self.ops.write(path, data, 0, f) == len(data)
        self.ops.release(path, f)

    def get(self, path: str) -> bytes:
        f = fi()
        self.ops.open(path, f)
        try:
            out = bytearray()
            while True:
                piece = self.ops.read(path, 128 * KiB, len(out), f)
                if not piece:
                    return bytes(out)
                out += piece
        finally:
            self.ops.release(path, f)

    def ls(self, path: str = "/") -> list[str]:
        fh = self.ops.opendir(path)
        try:
            return sorted(e if isinstance(e, str) else e[0] for e in self.ops.readdir(path, fh))[2:]
        finally:
            self.ops.releasedir(path, fh)

    def errno_of(self, name: str, *args: Any) -> int:
        with pytest.raises(FuseOSError) as info:
            getattr(self.ops, name)(*args)
        return int(info.value.errno)


@pytest.fixture
def ops(wstack: WriteStack) -> Ops:
    return Ops(wstack)


def server_status(stack: WriteStack, node_id: str) -> str:
    return str(stack.client.get_metadata(node_id, temp_link=False)["status"])


def test_create_write_read_and_stat_before_and_after_upload(ops: Ops, wstack: WriteStack) -> None:
    data = pattern(300 * KiB, seed=1)
    ops.put("/a.bin", data)
    st = ops.getattr("/a.bin")
    assert st["st_size"] == len(data)
    assert "a.bin" in ops.ls()
    assert ops.get("/a.bin") == data
    assert wstack.w.wait_uploads(20)
    after = ops.getattr("/a.bin")
    assert after["st_ino"] == st["st_ino"] and after["st_size"] == len(data)
    assert ops.get("/a.bin") == data
    assert wstack.server_bytes(wstack.node("/a.bin").id) == data


def test_fstat_of_an_open_new_file_follows_its_writes(ops: Ops) -> None:
    f = fi(os.O_RDWR | os.O_CREAT)
    ops.create("/grow", 0o644, f)
    ops.write("/grow", b"12345", 0, f)
    assert ops.getattr("/grow", f)["st_size"] == 5
    ops.truncate("/grow", 2, f)
    assert ops.getattr("/grow", f)["st_size"] == 2
    assert ops.read("/grow", 100, 0, f) == b"12"
    ops.release("/grow", f)


def test_open_for_writing_an_existing_file(ops: Ops, wstack: WriteStack) -> None:
    node = wstack.upload("e.txt", b"hello world")
    reader = fi()
    ops.open("/e.txt", reader)                  # opened before anyone writes
    w = fi(os.O_WRONLY)
    ops.open("/e.txt", w)
    ops.write("/e.txt", b"HELLO", 0, w)
    assert ops.read("/e.txt", 100, 0, reader) == b"HELLO world"     # sees the write, as on a disk
    assert ops.getattr("/e.txt")["st_size"] == 11
    ops.release("/e.txt", w)
    ops.release("/e.txt", reader)
    a = fi(os.O_WRONLY | os.O_APPEND)
    ops.open("/e.txt", a)
    ops.write("/e.txt", b"!", 0, a)
    ops.release("/e.txt", a)
    t = fi(os.O_WRONLY | os.O_TRUNC)
    ops.open("/e.txt", t)
    ops.release("/e.txt", t)
    assert ops.getattr("/e.txt")["st_size"] == 0
    assert wstack.w.wait_uploads(20)
    assert wstack.server_bytes(node.id) == b""


def test_truncate_by_path(ops: Ops, wstack: WriteStack) -> None:
    node = wstack.upload("t.txt", b"0123456789")
    ops.truncate("/t.txt", 3)
    assert ops.getattr("/t.txt")["st_size"] == 3
    assert ops.get("/t.txt") == b"012"
    assert wstack.w.wait_uploads(20)
    assert wstack.server_bytes(node.id) == b"012"


def test_fsync_through_operations(ops: Ops, wstack: WriteStack) -> None:
    f = fi(os.O_WRONLY | os.O_CREAT)
    ops.create("/s.db", 0o644, f)
    ops.write("/s.db", b"commit", 0, f)
    ops.fsync("/s.db", 0, f)
    assert wstack.server_bytes(wstack.node("/s.db").id) == b"commit"
    ops.release("/s.db", f)


def test_mkdir_and_rmdir_show_at_once(ops: Ops, wstack: WriteStack) -> None:
    ops.mkdir("/d", 0o755)
    assert ops.getattr("/d")["st_mode"] & 0o170000 == 0o040000
    assert ops.getattr("/")["st_nlink"] == 3
    node = wstack.node("/d")
    ops.rmdir("/d")
    assert ops.errno_of("getattr", "/d") == errno.ENOENT
    assert server_status(wstack, node.id) == "TRASH"
    assert ops.getattr("/")["st_nlink"] == 2


def test_rmdir_of_a_non_empty_folder(ops: Ops, wstack: WriteStack) -> None:
    ops.mkdir("/d", 0o755)
    ops.put("/d/pending", b"x")                # not uploaded yet: still a child
    assert ops.errno_of("rmdir", "/d") == errno.ENOTEMPTY
    assert wstack.w.wait_uploads(20)
    assert ops.errno_of("rmdir", "/d") == errno.ENOTEMPTY
    assert ops.errno_of("rmdir", "/d/pending") == errno.ENOTDIR
    assert ops.errno_of("unlink", "/d") == errno.EISDIR
    assert ops.errno_of("rmdir", "/missing") == errno.ENOENT


def test_unlink_trashes_a_server_file_and_discards_a_pending_one(ops: Ops, wstack: WriteStack) -> None:
    node = wstack.upload("old.txt", b"old")
    ops.unlink("/old.txt")
    assert server_status(wstack, node.id) == "TRASH"
    assert ops.errno_of("getattr", "/old.txt") == errno.ENOENT
    before = wstack.stats()["upload"]
    ops.put("/tmp.txt", b"scratch")
    ops.unlink("/tmp.txt")
    assert ops.errno_of("getattr", "/tmp.txt") == errno.ENOENT
    assert wstack.w.wait_uploads(20)
    assert wstack.stats()["upload"] == before
    assert ops.errno_of("unlink", "/nothing") == errno.ENOENT


def test_rename_within_and_across_folders_and_case_only(ops: Ops, wstack: WriteStack) -> None:
    wstack.upload("a.txt", b"a")
    ops.mkdir("/sub", 0o755)
    ops.rename("/a.txt", "/b.txt")
    assert ops.get("/b.txt") == b"a"
    ops.rename("/b.txt", "/sub/c.txt")
    assert ops.get("/sub/c.txt") == b"a"
    ops.rename("/sub/c.txt", "/sub/C.txt")
    assert ops.ls("/sub") == ["C.txt"]
    ops.mkdir("/sub/inner", 0o755)
    ops.rename("/sub", "/moved")
    assert ops.ls("/moved") == ["C.txt", "inner"]
    ops.mkdir("/other", 0o755)
    ops.rename("/moved/inner", "/other/inner2")     # a folder across folders, renamed on the way
    assert ops.ls("/other") == ["inner2"]
    assert wstack.w.wait_uploads(20)
    node = wstack.node("/moved/C.txt")
    assert wstack.client.get_metadata(node.id, temp_link=False)["name"] == "C.txt"


def test_rename_over_an_existing_file_trashes_it(ops: Ops, wstack: WriteStack) -> None:
    src = wstack.upload("new.txt", b"new")
    dst = wstack.upload("old.txt", b"old")
    ops.rename("/new.txt", "/old.txt")
    assert ops.get("/old.txt") == b"new"
    assert wstack.node("/old.txt").id == src.id
    assert server_status(wstack, dst.id) == "TRASH"
    assert "new.txt" not in ops.ls()


def test_rename_over_folders(ops: Ops, wstack: WriteStack) -> None:
    ops.mkdir("/full", 0o755)
    ops.put("/full/f", b"1")
    ops.mkdir("/empty", 0o755)
    ops.mkdir("/src", 0o755)
    assert ops.errno_of("rename", "/src", "/full") == errno.ENOTEMPTY
    ops.rename("/src", "/empty")
    assert "src" not in ops.ls() and "empty" in ops.ls()
    assert ops.errno_of("rename", "/full/f", "/empty") == errno.EISDIR
    assert ops.errno_of("rename", "/empty", "/full/f") == errno.ENOTDIR
    assert wstack.w.wait_uploads(20)


def test_renamed_files_keep_their_pending_uploads(ops: Ops, wstack: WriteStack) -> None:
    ops.put("/draft", b"pending new")
    ops.mkdir("/dir", 0o755)
    ops.rename("/draft", "/dir/final")
    existing = wstack.upload("dirty.txt", b"v1")
    f = fi(os.O_WRONLY)
    ops.open("/dirty.txt", f)
    ops.write("/dirty.txt", b"v2", 0, f)
    ops.release("/dirty.txt", f)
    ops.rename("/dirty.txt", "/dir/dirty2.txt")
    assert ops.get("/dir/dirty2.txt") == b"v2"
    assert wstack.w.wait_uploads(20)
    assert wstack.server_bytes(wstack.node("/dir/final").id) == b"pending new"
    assert wstack.server_bytes(existing.id) == b"v2"
    assert wstack.node("/dir/dirty2.txt").id == existing.id


def test_editor_save_keeps_the_node(ops: Ops, wstack: WriteStack) -> None:
    original = wstack.upload("doc.txt", b"first draft")
    ino = ops.getattr("/doc.txt")["st_ino"]
    ops.put("/.doc.txt.tmp", b"second draft")
    ops.rename("/.doc.txt.tmp", "/doc.txt")
    assert ops.get("/doc.txt") == b"second draft"
    assert ops.ls() == ["doc.txt"]
    assert wstack.w.wait_uploads(20)
    node = wstack.node("/doc.txt")
    assert node.id == original.id and node.ino == ino
    assert wstack.server_bytes(node.id) == b"second draft"
    assert server_status(wstack, original.id) == "AVAILABLE"


def test_hard_link_adds_a_folder(ops: Ops, wstack: WriteStack) -> None:
    node = wstack.upload("shared.txt", b"both")
    ops.mkdir("/other", 0o755)
    ops.link("/other/shared.txt", "/shared.txt")
    assert ops.get("/other/shared.txt") == b"both"
    assert ops.getattr("/shared.txt")["st_nlink"] == 2
    assert ops.errno_of("link", "/other/renamed.txt", "/shared.txt") == errno.EPERM
    ops.put("/fresh", b"not uploaded")
    assert ops.errno_of("link", "/other/fresh", "/fresh") == errno.EPERM
    ops.unlink("/other/shared.txt")                 # one link goes, the node stays
    assert server_status(wstack, node.id) == "AVAILABLE"
    assert ops.getattr("/shared.txt")["st_nlink"] == 1


def test_case_insensitive_clash_is_eexist_with_a_log_line(ops: Ops, wstack: WriteStack, caplog) -> None:  # type: ignore[no-untyped-def]
    node = wstack.upload("a.txt", b"x")
    with caplog.at_level(logging.WARNING, logger="acdfuse"):
        assert ops.errno_of("create", "/A.txt", 0o644, fi(os.O_WRONLY | os.O_CREAT)) == errno.EEXIST
    assert any(node.id in r.getMessage() and "A.txt" in r.getMessage() for r in caplog.records)
    assert ops.errno_of("mkdir", "/A.TXT", 0o755) == errno.EEXIST
    ops.put("/b.txt", b"pending")
    assert ops.errno_of("create", "/B.txt", 0o644, fi(os.O_WRONLY | os.O_CREAT)) == errno.EEXIST
    assert ops.errno_of("create", "/a.txt", 0o644, fi(os.O_WRONLY | os.O_CREAT)) == errno.EEXIST
    wstack.upload("c.txt", b"c")
    ops.invalidate([wstack.node("/c.txt").id])      # as after the sync that brought it
    assert ops.errno_of("rename", "/b.txt", "/C.txt") == errno.EEXIST


def test_bad_names(ops: Ops) -> None:
    assert ops.errno_of("create", "/" + "x" * 256, 0o644, fi(os.O_WRONLY | os.O_CREAT)) == errno.ENAMETOOLONG
    assert ops.errno_of("mkdir", "/" + "é" * 128, 0o755) == errno.ENAMETOOLONG
    ops.put("/" + "é" * 127, b"")                 # 254 bytes: fine
    bad = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert ops.errno_of("create", "/" + bad, 0o644, fi(os.O_WRONLY | os.O_CREAT)) == errno.EINVAL
    assert ops.errno_of("mkdir", "/" + bad, 0o755) == errno.EINVAL


def test_mknod_makes_regular_files_only(ops: Ops) -> None:
    ops.mknod("/node", 0o100644, 0)
    assert ops.getattr("/node")["st_size"] == 0
    assert ops.errno_of("mknod", "/fifo", 0o010644, 0) == errno.EPERM


def test_read_only_mount_refuses_changes(wstack: WriteStack) -> None:
    ro = Ops(wstack, writable=False)
    wstack.upload("f.txt", b"x")
    assert ro.errno_of("create", "/n", 0o644, fi(os.O_WRONLY | os.O_CREAT)) == errno.EROFS
    assert ro.errno_of("open", "/f.txt", fi(os.O_WRONLY)) == errno.EROFS
    assert ro.errno_of("mkdir", "/d", 0o755) == errno.EROFS
    assert ro.errno_of("unlink", "/f.txt") == errno.EROFS
    assert ro.errno_of("rename", "/f.txt", "/g") == errno.EROFS
    assert ro.errno_of("truncate", "/f.txt", 0) == errno.EROFS
    assert ro.errno_of("utimens", "/f.txt", None) == errno.EROFS
    assert ro.get("/f.txt") == b"x"


def test_pending_files_show_after_a_remount(ops: Ops, wstack: WriteStack) -> None:
    slow = WriteStack(wstack.client, wstack.server, wstack.cache.parent / "other", wstack.opts)
    from acdfuse.vfs.options import WriteOptions

    slow.open(WriteOptions(upload_delay=3600))
    try:
        first = Ops(slow)
        first.put("/later.txt", b"uploaded at the next mount")
        ino = first.getattr("/later.txt")["st_ino"]
        slow.remount(WriteOptions(upload_delay=3600))
        again = Ops(slow)
        assert again.getattr("/later.txt")["st_ino"] == ino
        assert again.get("/later.txt") == b"uploaded at the next mount"
        assert "later.txt" in again.ls()
    finally:
        slow.close()
