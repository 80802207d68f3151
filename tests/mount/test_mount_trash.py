"""``/.Trash`` on a real mount: what rm sends to the drive's trash shows there at once, even where the
kernel remembered a miss; ``mv`` out restores; every change inside gets EROFS; a trash or restore by
another client shows after the next sync."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import Mount, upload

pytestmark = pytest.mark.mount


def errno_of(call: Any) -> int | None:
    try:
        call()
    except OSError as exc:
        return exc.errno
    return None


@pytest.fixture
def writable(cdir: Path, mounts: Any) -> Mount:
    return mounts(cdir).start("--upload-delay", "0.2")


def test_rm_then_mv_out_restores(writable: Mount, client: Any) -> None:
    folder = client.create_folder("docs")
    node = upload(client, "a.txt", b"alpha", folder["id"])
    mnt = writable.mnt
    writable.sync(check=lambda: (mnt / "docs" / "a.txt").exists())
    trash = mnt / ".Trash"
    assert not (trash / "a.txt").exists()          # the kernel now remembers the miss
    os.unlink(mnt / "docs" / "a.txt")
    assert (trash / "a.txt").read_bytes() == b"alpha"
    assert ".Trash" not in os.listdir(mnt)
    assert errno_of(lambda: (trash / "new.txt").write_bytes(b"x")) == errno.EROFS
    assert errno_of(lambda: os.unlink(trash / "a.txt")) == errno.EROFS
    assert errno_of(lambda: os.mkdir(trash / "d")) == errno.EROFS
    assert errno_of(lambda: os.rename(trash / "a.txt", trash / "b.txt")) == errno.EROFS
    os.rename(trash / "a.txt", mnt / "docs" / "b.txt")
    assert (mnt / "docs" / "b.txt").read_bytes() == b"alpha"
    assert not (trash / "a.txt").exists()
    meta = client.get_metadata(node["id"])
    assert (meta["status"], meta["name"], meta["parents"]) == ("AVAILABLE", "b.txt", [folder["id"]])


def test_remote_trash_and_restore_show_after_a_sync(writable: Mount, client: Any) -> None:
    node = upload(client, "remote.txt", b"far")
    mnt = writable.mnt
    writable.sync(check=lambda: (mnt / "remote.txt").exists())
    trash = mnt / ".Trash"
    assert sorted(os.listdir(trash)) == [str(os.getuid())]
    assert not (trash / "remote.txt").exists()
    client.move_to_trash(node["id"])
    writable.sync(check=lambda: (trash / "remote.txt").exists() and not (mnt / "remote.txt").exists())
    assert (trash / "remote.txt").read_bytes() == b"far"
    client.restore(node["id"])
    writable.sync(check=lambda: not (trash / "remote.txt").exists() and (mnt / "remote.txt").exists())
    assert (mnt / "remote.txt").read_bytes() == b"far"


def test_a_second_trashed_file_of_a_name_takes_it(writable: Mount, client: Any) -> None:
    first = upload(client, "x.txt", b"first")
    mnt, trash = writable.mnt, writable.mnt / ".Trash"
    writable.sync(check=lambda: (mnt / "x.txt").exists())
    os.unlink(mnt / "x.txt")
    assert (trash / "x.txt").read_bytes() == b"first"          # the kernel keeps this entry...
    upload(client, "x.txt", b"second")
    writable.sync(check=lambda: (mnt / "x.txt").exists())
    os.unlink(mnt / "x.txt")
    assert (trash / "x.txt").read_bytes() == b"second"         # ...and was told to forget it
    assert (trash / f"x ({first['id']}).txt").read_bytes() == b"first"
