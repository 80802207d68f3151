"""Browsing a real mount: listing, stat, link counts, stable inodes, multi-parent folders, statfs, EROFS."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import Mount, pattern, upload

pytestmark = pytest.mark.mount


@pytest.fixture
def tree(client: Any) -> dict[str, Any]:
    docs = client.create_folder("docs")
    sub = client.create_folder("sub", docs["id"])
    client.create_folder("deeper", sub["id"])
    a = upload(client, "a.txt", b"hello world\n", docs["id"])
    b = upload(client, "b.bin", pattern(70_000, 1), sub["id"])
    empty = upload(client, "empty", b"")
    return {"docs": docs, "sub": sub, "a": a, "b": b, "empty": empty}


def test_listing_and_stat(mount: Mount, tree: dict[str, Any]) -> None:
    mount.start()
    mnt = mount.mnt
    assert sorted(os.listdir(mnt)) == ["docs", "empty"]
    assert sorted(os.listdir(mnt / "docs")) == ["a.txt", "sub"]
    assert sorted(os.listdir(mnt / "docs" / "sub")) == ["b.bin", "deeper"]

    st = os.stat(mnt / "docs" / "a.txt")
    assert stat.S_ISREG(st.st_mode)
    assert st.st_size == 12
    assert st.st_uid == os.getuid()
    assert st.st_nlink == 1
    assert os.stat(mnt / "empty").st_size == 0
    assert os.stat(mnt / "docs" / "sub" / "b.bin").st_size == 70_000

    # link counts follow the Unix convention: 2 + number of subfolders
    assert stat.S_ISDIR(os.stat(mnt / "docs").st_mode)
    assert os.stat(mnt / "docs").st_nlink == 3
    assert os.stat(mnt / "docs" / "sub").st_nlink == 3
    assert os.stat(mnt / "docs" / "sub" / "deeper").st_nlink == 2
    assert os.stat(mnt).st_nlink == 3

    # readdir hands out type and inode (d_type/d_ino), the same inode stat reports
    with os.scandir(mnt / "docs") as it:
        entries = {e.name: (e.is_dir(follow_symlinks=False), e.inode()) for e in it}
    assert entries == {"a.txt": (False, os.stat(mnt / "docs" / "a.txt").st_ino),
                       "sub": (True, os.stat(mnt / "docs" / "sub").st_ino)}

    with pytest.raises(FileNotFoundError):
        os.stat(mnt / "nope")
    with pytest.raises(NotADirectoryError):
        os.listdir(mnt / "docs" / "a.txt")


def test_mtimes_are_the_servers(mount: Mount, tree: dict[str, Any], client: Any) -> None:
    mount.start()
    meta = client.get_metadata(tree["a"]["id"])
    modified = datetime.fromisoformat(meta["modifiedDate"].replace("Z", "+00:00")).timestamp()
    st = os.stat(mount.mnt / "docs" / "a.txt")
    assert abs(st.st_mtime - modified) < 0.002


def test_inodes_are_stable_across_remounts(mounts: Any, cdir: Path, tree: dict[str, Any]) -> None:
    m = mounts(cdir).start()
    paths = ["docs", "docs/a.txt", "docs/sub", "docs/sub/b.bin", "empty"]
    before = {p: os.stat(m.mnt / p).st_ino for p in paths}
    assert len(set(before.values())) == len(paths)
    m.stop()
    m.start()
    assert {p: os.stat(m.mnt / p).st_ino for p in paths} == before


def test_multi_parent_folder_visible_in_both_places(mount: Mount, client: Any) -> None:
    left = client.create_folder("left")
    right = client.create_folder("right")
    shared = client.create_folder("shared", left["id"])
    upload(client, "inside.txt", b"both places\n", shared["id"])
    client.add_child(right["id"], shared["id"])
    mount.start()
    mnt = mount.mnt
    assert os.listdir(mnt / "left") == ["shared"]
    assert os.listdir(mnt / "right") == ["shared"]
    assert (mnt / "left/shared/inside.txt").read_bytes() == b"both places\n"
    assert (mnt / "right/shared/inside.txt").read_bytes() == b"both places\n"
    assert os.stat(mnt / "left/shared").st_ino == os.stat(mnt / "right/shared").st_ino


def test_statfs_reports_the_quota(mount: Mount, client: Any) -> None:
    total, available = client.fs_sizes()
    mount.start()
    sv = os.statvfs(mount.mnt)
    assert sv.f_blocks * sv.f_frsize == total - total % sv.f_frsize
    assert sv.f_bavail * sv.f_frsize == available - available % sv.f_frsize
    assert sv.f_namemax == 255


def test_every_change_is_refused_with_erofs(mount: Mount, tree: dict[str, Any]) -> None:
    mount.start("--read-only")
    mnt = mount.mnt
    attempts = [
        lambda: open(mnt / "new.txt", "w"),
        lambda: open(mnt / "docs" / "a.txt", "r+b"),
        lambda: open(mnt / "docs" / "a.txt", "ab"),
        lambda: os.mkdir(mnt / "newdir"),
        lambda: os.rmdir(mnt / "docs" / "sub" / "deeper"),
        lambda: os.unlink(mnt / "docs" / "a.txt"),
        lambda: os.rename(mnt / "docs" / "a.txt", mnt / "docs" / "c.txt"),
        lambda: os.symlink("a.txt", mnt / "docs" / "link"),
        lambda: os.link(mnt / "docs" / "a.txt", mnt / "docs" / "hard"),
        lambda: os.chmod(mnt / "docs" / "a.txt", 0o600),
        lambda: os.truncate(mnt / "docs" / "a.txt", 0),
        lambda: os.utime(mnt / "docs" / "a.txt", (1, 1)),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno in (errno.EROFS, errno.EACCES), info.value
    # the mount still answers and nothing changed
    assert sorted(os.listdir(mnt / "docs")) == ["a.txt", "sub"]
    assert (mnt / "docs" / "a.txt").read_bytes() == b"hello world\n"
    assert not os.access(mnt / "docs" / "a.txt", os.W_OK)
    assert not os.access(mnt / "docs" / "a.txt", os.X_OK)
    assert os.access(mnt / "docs" / "a.txt", os.R_OK)
    assert os.access(mnt / "docs", os.R_OK | os.X_OK)


def test_tools_walk_the_tree(mount: Mount, tree: dict[str, Any], tmp_path: Path) -> None:
    mount.start()
    out = subprocess.run(["find", str(mount.mnt), "-ls"], capture_output=True, text=True, check=True)
    assert out.stdout.count("\n") == 7      # root, docs, a.txt, sub, b.bin, deeper, empty
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(mount.mnt), str(copy)], check=True)
    assert (copy / "docs" / "sub" / "b.bin").read_bytes() == pattern(70_000, 1)
    assert (copy / "empty").read_bytes() == b""
    synced = tmp_path / "rsynced"
    subprocess.run(["rsync", "-a", f"{mount.mnt}/", f"{synced}/"], check=True)
    subprocess.run(["diff", "-r", str(copy), str(synced)], check=True)
    assert os.stat(synced / "docs" / "a.txt").st_mtime == os.stat(mount.mnt / "docs" / "a.txt").st_mtime
    tar = subprocess.run(["tar", "-cf", "-", "-C", str(mount.mnt), "."], capture_output=True, check=True)
    listing = subprocess.run(["tar", "-tvf", "-"], input=tar.stdout, capture_output=True, check=True)
    assert b"./docs/sub/b.bin" in listing.stdout and b"70000" in listing.stdout


def test_many_lookups_do_not_leak_descriptors(mount: Mount, client: Any, drive_server: Any) -> None:
    # Each FUSE callback runs on a libfuse thread; if per-thread state (the store's SQLite connection)
    # were rebuilt per call, every lookup would leave an open file behind.
    folder = client.create_folder("many")
    drive_server.generate_tree(n_nodes=1500, fanout=1500, folders_per_folder=1, parent=folder["id"])
    mount.start()
    assert mount.proc is not None
    fds = Path(f"/proc/{mount.proc.pid}/fd")
    os.listdir(mount.mnt)
    before = len(os.listdir(fds))
    names = os.listdir(mount.mnt / "many")
    assert len(names) == 1500
    for name in names:
        os.stat(mount.mnt / "many" / name)
    subprocess.run(["find", str(mount.mnt), "-ls"], stdout=subprocess.DEVNULL, check=True)
    assert len(os.listdir(fds)) - before < 40
