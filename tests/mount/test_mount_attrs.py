"""POSIX attributes through a real mount: what another client stored in node properties (modes, owners,
nanosecond mtimes, symlinks, user.* xattrs) is what stat, readlink and getxattr show, also after a
sync brings a change; the node's identity as read-only xattrs."""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import Any

import pytest
from mount_helpers import Mount, upload

from acdfuse.vfs import posixattrs as pa
from acdfuse.vfs.posixattrs import PosixRecord

pytestmark = pytest.mark.mount


def put_record(client: Any, node_id: str, record: PosixRecord) -> None:
    client.add_property(node_id, client.get_owner_id(), pa.RECORD_KEY, record.encode())


@pytest.fixture
def tree(client: Any) -> dict[str, Any]:
    owner = client.get_owner_id()
    docs = client.create_folder("docs")
    script = upload(client, "run.sh", b"#!/bin/sh\necho hi\n", docs["id"])
    put_record(client, script["id"], PosixRecord(mode=stat.S_IFREG | 0o750, uid=4242, gid=4343,
                                                 mtime_ns=1_500_000_000_123_456_789, mtime_cv=1))
    put_record(client, docs["id"], PosixRecord(mode=stat.S_IFDIR | 0o700, mtime_ns=1_400_000_000_000_000_007))
    client.add_property(script["id"], owner, "x0", pa.encode_xattr("user.mime_type", b"text/x-sh"))
    client.add_property(script["id"], owner, "x1", pa.encode_xattr("user.bin", b"\x00\xff"))
    link = client.upload_stream(io.BytesIO(b"run.sh"), "link", docs["id"], properties={owner: {
        pa.RECORD_KEY: PosixRecord(mode=stat.S_IFLNK | 0o777, link="run.sh").encode()}})
    long_target = "../" + "x" * 1500
    long_link = client.upload_stream(io.BytesIO(long_target.encode()), "long", docs["id"], properties={
        owner: {pa.RECORD_KEY: PosixRecord(mode=stat.S_IFLNK | 0o777).encode()}})
    plain = upload(client, "plain.txt", b"plain", docs["id"])
    return {"docs": docs, "script": script, "link": link, "long": long_link, "long_target": long_target,
            "plain": plain}


def test_stored_attributes_show_through_the_mount(mount: Mount, tree: dict[str, Any]) -> None:
    mount.start("--read-only")
    docs = mount.mnt / "docs"
    st = os.stat(docs / "run.sh")
    assert st.st_mode == stat.S_IFREG | 0o750 and (st.st_uid, st.st_gid) == (4242, 4343)
    assert st.st_mtime_ns == 1_500_000_000_123_456_789
    assert os.stat(docs).st_mode == stat.S_IFDIR | 0o700
    assert os.stat(docs).st_mtime_ns == 1_400_000_000_000_000_007
    plain = os.stat(docs / "plain.txt")
    assert plain.st_mode == stat.S_IFREG | 0o444 and plain.st_uid == os.getuid()   # read-only defaults
    # symlinks: lstat, readlink, and the kernel follows them
    assert os.path.islink(docs / "link") and os.readlink(docs / "link") == "run.sh"
    assert os.lstat(docs / "link").st_size == len("run.sh")
    assert (docs / "link").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.readlink(docs / "long") == tree["long_target"]
    with os.scandir(docs) as it:
        assert sorted(e.name for e in it if e.is_symlink()) == ["link", "long"]
    # executable by its stored mode
    assert os.access(docs / "run.sh", os.X_OK) and not os.access(docs / "plain.txt", os.X_OK)
    # xattrs
    assert sorted(os.listxattr(docs / "run.sh")) == ["user.bin", "user.mime_type"]
    assert os.getxattr(docs / "run.sh", "user.mime_type") == b"text/x-sh"
    assert os.getxattr(docs / "run.sh", "user.bin") == b"\x00\xff"
    assert os.listxattr(docs / "plain.txt") == []
    for name in ("user.none", "security.selinux", "system.posix_acl_access"):
        with pytest.raises(OSError) as info:
            os.getxattr(docs / "run.sh", name)
        assert info.value.errno == errno.ENODATA
    assert os.getxattr(docs / "run.sh", "system.acdfuse.id") == tree["script"]["id"].encode()
    md5 = tree["plain"]["contentProperties"]["md5"]
    assert os.getxattr(docs / "plain.txt", "system.acdfuse.md5") == md5.encode()
    # the mount is read-only: every change is refused
    for call in (lambda: os.chmod(docs / "plain.txt", 0o600), lambda: os.utime(docs / "plain.txt", ns=(1, 1)),
                 lambda: os.setxattr(docs / "plain.txt", "user.a", b"1"),
                 lambda: os.symlink("x", docs / "new-link")):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EROFS


def test_a_change_from_another_client_shows_after_a_sync(mount: Mount, tree: dict[str, Any],
                                                          client: Any) -> None:
    mount.start("--read-only")
    path = mount.mnt / "docs" / "plain.txt"
    assert os.stat(path).st_mode & 0o777 == 0o444
    put_record(client, tree["plain"]["id"], PosixRecord(mode=stat.S_IFREG | 0o640, mtime_ns=123_456_789_012,
                                                        mtime_cv=1))
    mount.sync(check=lambda: os.stat(path).st_mode & 0o777 == 0o640)
    assert os.stat(path).st_mtime_ns == 123_456_789_012
    # content replaced by a client that knows nothing of records: the server's time is shown again
    client.overwrite_stream(io.BytesIO(b"new!"), tree["plain"]["id"])
    mount.sync(check=lambda: os.stat(path).st_size == 4)
    assert os.stat(path).st_mtime_ns != 123_456_789_012 and os.stat(path).st_mode & 0o777 == 0o640
