"""GLib's ``gio``, the layer under GNOME Files and many other file managers, on a real mount: list, info,
copy in and out, rename, and trash (which lands in the drive's own trash, shown under ``/.Trash``).

Headless: ``gio`` runs with ``GIO_USE_VFS=local`` (GLib's own local-file code, no gvfs daemon or D-Bus
session needed) and ``GIO_USE_VOLUME_MONITOR=unix``; that is the code path ``gio trash`` of a local path
takes under a desktop too. ``gio list trash://`` needs gvfsd-trash (not installed here), so the trash is
checked through ``/.Trash`` and the drive itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import Mount, pattern, upload
from write_helpers import wait_uploaded

pytestmark = pytest.mark.mount

GIO_ENV = {**os.environ, "GIO_USE_VFS": "local", "GIO_USE_VOLUME_MONITOR": "unix",
           "DBUS_SESSION_BUS_ADDRESS": "disabled:", "LC_ALL": "C.UTF-8"}


def gio(*argv: str) -> str:
    done = subprocess.run(["gio", *argv], capture_output=True, text=True, check=False, timeout=120, env=GIO_ENV)
    assert done.returncode == 0, f"gio {' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def writable(cdir: Path, mounts: Any) -> Mount:
    return mounts(cdir).start("--upload-delay", "0.2")


def test_gio_list_info_copy_rename(writable: Mount, client: Any, tmp_path: Path) -> None:
    data = pattern(300_000, seed=3)
    folder = client.create_folder("pics")
    upload(client, "a.jpg", data, folder["id"])
    writable.sync(check=lambda: (writable.mnt / "pics" / "a.jpg").exists())
    mnt = writable.mnt
    assert gio("list", str(mnt / "pics")).split() == ["a.jpg"]
    info = gio("info", "-a", "standard::size,standard::type", str(mnt / "pics" / "a.jpg"))
    assert "standard::size: 300000" in info and "standard::type: 1" in info
    gio("copy", str(mnt / "pics" / "a.jpg"), str(tmp_path / "out.jpg"))                  # out
    assert (tmp_path / "out.jpg").read_bytes() == data
    (tmp_path / "in.bin").write_bytes(data[:1000])
    gio("copy", str(tmp_path / "in.bin"), str(mnt / "pics" / "in.bin"))                   # in
    gio("rename", str(mnt / "pics" / "in.bin"), "renamed.bin")
    assert sorted(os.listdir(mnt / "pics")) == ["a.jpg", "renamed.bin"]
    wait_uploaded(writable.cache_dir)
    node = client.get_node_list(filters="name:renamed.bin")[0]
    assert bytes(client.download_chunk(node["id"], 0, 2000)) == data[:1000]


def test_gio_trash_lands_in_the_drive_trash(writable: Mount, client: Any) -> None:
    upload(client, "old.txt", b"remove me")
    writable.sync(check=lambda: (writable.mnt / "old.txt").exists())
    mnt = writable.mnt
    node_id = client.get_node_list(filters="name:old.txt")[0]["id"]
    gio("trash", str(mnt / "old.txt"))
    assert not (mnt / "old.txt").exists()
    assert client.get_metadata(node_id)["status"] == "TRASH"
    assert (mnt / ".Trash" / "old.txt").read_bytes() == b"remove me"
    uid = os.getuid()
    assert (mnt / ".Trash" / str(uid) / "files" / "old.txt").read_bytes() == b"remove me"
    info = (mnt / ".Trash" / str(uid) / "info" / "old.txt.trashinfo").read_text()
    assert "Path=old.txt" in info
    # nothing of the desktop trash reached the drive
    assert not [n for n in client.get_node_list() if n.get("name", "").startswith(".Trash")]
    assert sorted(os.listdir(mnt)) == []
    # a second file of the same name: GLib picks another trash name, the drive keeps both
    (mnt / "old.txt").write_bytes(b"second")
    gio("trash", str(mnt / "old.txt"))
    assert (mnt / ".Trash" / "old.txt").read_bytes() == b"second"
    assert len([n for n in os.listdir(mnt / ".Trash") if n.startswith("old")]) == 2
    # a folder goes whole, and comes back whole with mv
    (mnt / "album").mkdir()
    (mnt / "album" / "p.jpg").write_bytes(b"jpeg")
    gio("trash", str(mnt / "album"))
    assert not (mnt / "album").exists()
    assert (mnt / ".Trash" / "album" / "p.jpg").read_bytes() == b"jpeg"
    os.rename(mnt / ".Trash" / "album", mnt / "album")
    assert (mnt / "album" / "p.jpg").read_bytes() == b"jpeg"


def test_thumbnails_read_heads_not_whole_files(writable: Mount, client: Any, drive_server: Any) -> None:
    """A file manager's thumbnailer reads the first bytes of every photo in a folder: opened cold, the
    first 64 KiB of each costs the file's head (128 KiB), not the whole file; reading on fetches only
    the rest. scripts/bench_thumbnails.py measures the same with 1,000 files."""
    files, size = 40, 256 * 1024
    folder = client.create_folder("photos")
    for i in range(files):
        upload(client, f"IMG_{i:03d}.jpg", pattern(size, seed=i), folder["id"])
    photos = writable.mnt / "photos"
    writable.sync(check=lambda: len(os.listdir(photos)) == files)
    before = drive_server.stats.snapshot()["download_bytes"]
    for name in sorted(os.listdir(photos)):
        fd = os.open(photos / name, os.O_RDONLY)
        try:
            assert len(os.read(fd, 64 * 1024)) == 64 * 1024
        finally:
            os.close(fd)
    fetched = drive_server.stats.snapshot()["download_bytes"] - before
    assert fetched <= files * 160 * 1024, fetched / files        # 128 KiB each, not 256 KiB
    before = drive_server.stats.snapshot()["download_bytes"]
    assert (photos / "IMG_007.jpg").read_bytes() == pattern(size, seed=7)
    assert drive_server.stats.snapshot()["download_bytes"] - before == size - 128 * 1024
