"""The cache disk fills up (the mount's cache dir on a small tmpfs): a write gets ENOSPC, nothing already
acknowledged is lost (fsynced files are on the server, closed ones stay journaled and go up), reads
return the right bytes or a clean errno, and the mount works again once space is freed."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from common_helpers import small_tmpfs
from mount_helpers import pattern, upload
from write_helpers import pending_uploads, wait_uploaded, write_file

pytestmark = pytest.mark.mount

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs for the cache dir."""
    with small_tmpfs(tmp_path / "small", "24m") as path:
        yield path


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def read_or_errno(path: Path) -> bytes | int:
    try:
        return path.read_bytes()
    except OSError as exc:
        return exc.errno or -1


def test_full_cache_disk_gives_enospc_loses_nothing_and_recovers(small_disk: Path, cdir: Path, mounts: Any,
                                                                 client: Any) -> None:
    remote = pattern(3 * MiB, 9)
    upload(client, "remote.bin", remote)
    m = mounts(cdir, cache="small/cache").start("--upload-delay", "3600", "-o", "direct_io")
    acked, closed = pattern(1 * MiB, 1), pattern(2 * MiB, 2)
    write_file(m.mnt / "acked.bin", acked, fsync=True)          # on the server
    write_file(m.mnt / "closed.bin", closed)                    # journaled, held by the upload delay
    # fill the disk through one more file until a write is refused
    piece = pattern(256 * KiB, 3)
    written = 0
    fd = os.open(m.mnt / "filler.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with pytest.raises(OSError) as refused:
            while written < 64 * MiB:
                written += os.write(fd, piece)
        assert refused.value.errno == errno.ENOSPC, refused.value
    finally:
        os.close(fd)
    assert written > 0
    print(f"ENOSPC after {written} bytes of filler.bin")
    # the disk is full: what was acknowledged is still served, the rest answers cleanly
    assert (m.mnt / "acked.bin").read_bytes() == acked
    assert (m.mnt / "closed.bin").read_bytes() == closed
    got = read_or_errno(m.mnt / "remote.bin")
    print("uncached read with the disk full:",
          got if isinstance(got, int) else f"{len(got)} bytes, right: {got == remote}")
    assert got == remote or got in (errno.ENOSPC, errno.EIO), got
    assert sorted(os.listdir(m.mnt)) == ["acked.bin", "closed.bin", "filler.bin", "remote.bin"]
    assert pending_uploads(m.cache_dir) == 2                    # closed.bin and filler.bin
    # space comes back: the mount works again without a remount
    os.unlink(m.mnt / "filler.bin")
    # its spool goes with the file's last release, which the kernel sends after close() returned
    # (FUSE releases asynchronously): the space comes back a moment after the unlink
    deadline = time.monotonic() + 30
    while free_bytes(small_disk) < 8 * MiB:
        assert time.monotonic() < deadline, f"the filler's space did not come back: {free_bytes(small_disk)}"
        time.sleep(0.05)
    after = pattern(1 * MiB, 4)
    write_file(m.mnt / "after.bin", after, fsync=True)
    assert (m.mnt / "remote.bin").read_bytes() == remote
    # the held upload goes at the next mount (same cache dir): the journal kept it through it all
    m.stop()
    m.start("--upload-delay", "0.2")
    wait_uploaded(m.cache_dir)
    m.stop()
    found = {c["name"]: c for c in client.list_children(client.get_root_id())
             if c.get("status") == "AVAILABLE"}
    assert sorted(found) == ["acked.bin", "after.bin", "closed.bin", "remote.bin"]
    for name, data in (("acked.bin", acked), ("closed.bin", closed), ("after.bin", after)):
        assert bytes(client.download_chunk(found[name]["id"], 0, len(data))) == data, name
