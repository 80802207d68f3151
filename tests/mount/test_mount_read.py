"""Reading through a real mount: chunk edges, EOF, concurrency, mmap, sync of remote changes, and the
disk cache across remounts (counted on the server)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import Mount, pattern, upload

from acdfuse.vfs import ReaderOptions

pytestmark = pytest.mark.mount

MiB = 1 << 20
CHUNK = MiB     # the reader's default chunk size; the edges below straddle it
SIZE = 3 * MiB + 12345


@pytest.fixture
def big(client: Any) -> tuple[dict[str, Any], bytes]:
    data = pattern(SIZE, 7)
    return upload(client, "big.bin", data), data


def pread(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def test_reads_at_chunk_edges_and_eof(mount: Mount, big: tuple[dict[str, Any], bytes]) -> None:
    _, data = big
    mount.start("-o", "direct_io")   # every pread reaches the reader, no kernel page rounding
    path = mount.mnt / "big.bin"
    cases = [(0, 1), (0, 4096), (CHUNK - 1, 1), (CHUNK - 1, 2), (CHUNK, 1), (CHUNK - 100, 200),
             (2 * CHUNK - 5, CHUNK + 10), (3 * CHUNK, 12345), (SIZE - 1, 1), (SIZE - 10, 100),
             (SIZE, 10), (SIZE + 4096, 10), (12345, 3 * CHUNK)]
    for offset, length in cases:
        assert pread(path, offset, length) == data[offset:offset + length], (offset, length)
    assert path.read_bytes() == data


def test_reads_through_the_page_cache(mount: Mount, big: tuple[dict[str, Any], bytes]) -> None:
    _, data = big
    mount.start()
    path = mount.mnt / "big.bin"
    for offset, length in [(CHUNK - 3, 7), (SIZE - 5, 50), (SIZE, 1), (0, SIZE)]:
        assert pread(path, offset, length) == data[offset:offset + length], (offset, length)
    with open(path, "rb") as f:
        f.seek(SIZE - 100)
        assert f.read() == data[-100:]
        assert f.read() == b""


def test_concurrent_readers_of_one_file(mount: Mount, big: tuple[dict[str, Any], bytes]) -> None:
    _, data = big
    mount.start()
    path = mount.mnt / "big.bin"
    want = hashlib.sha256(data).hexdigest()
    results: list[str] = []
    errors: list[BaseException] = []

    def sequential(block: int) -> None:
        h = hashlib.sha256()
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(block):
                h.update(chunk)
        results.append(h.hexdigest())

    def scattered(seed: int) -> None:
        rng = random.Random(seed)
        fd = os.open(path, os.O_RDONLY)
        try:
            for _ in range(60):
                off = rng.randrange(SIZE)
                n = rng.randrange(1, 300_000)
                assert os.pread(fd, n, off) == data[off:off + n]
        finally:
            os.close(fd)
        results.append(want)

    def run(fn: Any, arg: int) -> None:
        try:
            fn(arg)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(sequential, b)) for b in (4096, 65536, MiB + 7, 131072)]
    threads += [threading.Thread(target=run, args=(scattered, s)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert results == [want] * len(threads)


MMAP_CHECK = """
import hashlib, mmap, sys
path, chunk = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
    parts = [m[chunk - 10:chunk + 10], m[len(m) - 77:], m[:4096]]
    print(len(m), hashlib.md5(m).hexdigest(), *(hashlib.md5(p).hexdigest() for p in parts))
"""


def test_mmap_reads(mount: Mount, big: tuple[dict[str, Any], bytes]) -> None:
    # In another process: a page fault holds this process's GIL, and the test server serving the
    # fault's HTTP request runs in this process.
    _, data = big
    mount.start()
    out = subprocess.run([sys.executable, "-c", MMAP_CHECK, str(mount.mnt / "big.bin"), str(CHUNK)],
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    parts = [data[CHUNK - 10:CHUNK + 10], data[SIZE - 77:], data[:4096]]
    assert out == [str(SIZE), hashlib.md5(data).hexdigest(), *(hashlib.md5(p).hexdigest() for p in parts)]


def test_remote_change_is_picked_up_by_sync(mount: Mount, client: Any) -> None:
    v1 = pattern(300_000, 1)
    node = upload(client, "changing.bin", v1)
    upload(client, "other.txt", b"unchanged")
    mount.start()
    path = mount.mnt / "changing.bin"
    assert path.read_bytes() == v1
    before = os.stat(path)

    # same size, new bytes: only the content identity tells the caches apart
    v2 = pattern(300_000, 2)
    client.overwrite_stream(io.BytesIO(v2), node["id"])
    mount.sync(check=lambda: path.read_bytes() == v2)
    assert os.stat(path).st_size == len(v2)

    # a new size and mtime
    v3 = pattern(1_500_000, 3)
    client.overwrite_stream(io.BytesIO(v3), node["id"])
    mount.sync(check=lambda: os.stat(path).st_size == len(v3))
    assert path.read_bytes() == v3
    after = os.stat(path)
    assert after.st_mtime >= before.st_mtime
    assert after.st_ino == before.st_ino

    # new and trashed nodes appear and disappear
    upload(client, "appeared.txt", b"new")
    client.move_to_trash(node["id"])
    # (the kernel forgets a cached name after entry_timeout, hence the polling)
    mount.sync(check=lambda: sorted(os.listdir(mount.mnt)) == ["appeared.txt", "other.txt"]
               and not path.exists())
    assert (mount.mnt / "appeared.txt").read_bytes() == b"new"


def test_cache_survives_a_remount_with_no_http(mounts: Any, cdir: Path, drive_server: Any, client: Any,
                                                big: tuple[dict[str, Any], bytes]) -> None:
    _, data = big
    small = pattern(5000, 9)
    upload(client, "small.bin", small)
    m = mounts(cdir).start()
    assert (m.mnt / "big.bin").read_bytes() == data
    assert (m.mnt / "small.bin").read_bytes() == small
    assert drive_server.stats.snapshot()["download"] > 0
    m.stop()

    m.start()
    drive_server.stats.reset()
    assert (m.mnt / "big.bin").read_bytes() == data
    assert (m.mnt / "small.bin").read_bytes() == small
    assert pread(m.mnt / "big.bin", CHUNK - 10, 20) == data[CHUNK - 10:CHUNK + 10]
    assert drive_server.stats.snapshot()["download"] == 0
    m.stop()
    # the unmount's log line says the same: bytes came from the disk tier, no range requests
    lines = [line for line in m.log_file.read_text().splitlines() if "range requests" in line]
    assert len(lines) == 2
    last = re.search(r"(\d+) chunks loaded from the disk cache; fetched (\d+) bytes in (\d+) range requests",
                     lines[-1])
    assert last is not None
    disk_hits, fetched, requests = map(int, last.groups())
    assert disk_hits > 0 and fetched == 0 and requests == 0



def test_content_changed_before_the_mirror_knows_is_never_mixed(mount: Mount, client: Any) -> None:
    # The server has new bytes, the mirror (no sync yet) still names the old md5: the read must not
    # hand out the new bytes as the old file, and the mount syncs by itself.
    v1 = pattern(200_000, 11)
    node = upload(client, "moving.bin", v1)
    mount.start()
    path = mount.mnt / "moving.bin"
    assert os.stat(path).st_size == len(v1)
    v2 = pattern(250_000, 12)
    client.overwrite_stream(io.BytesIO(v2), node["id"])
    try:
        first = path.read_bytes()
    except OSError as exc:
        assert exc.errno == errno.ESTALE
    else:
        assert first == v2      # the automatic sync was already through
    deadline = time.monotonic() + 30
    while True:
        try:
            if path.read_bytes() == v2:
                break
        except OSError as exc:
            assert exc.errno == errno.ESTALE
        assert time.monotonic() < deadline, "the mount did not catch up with the new content"
        time.sleep(0.1)
    assert os.stat(path).st_size == len(v2)


def test_page_cache_is_kept_across_opens(mount: Mount, drive_server: Any,
                                         big: tuple[dict[str, Any], bytes]) -> None:
    # With both chunk caches off, any read that reaches the mount costs a download: a second open
    # of unchanged content must be served by the kernel's page cache alone.
    _, data = big
    mount.start("--memory-cache", "0", "--cache-size", "0")
    path = mount.mnt / "big.bin"
    assert path.read_bytes() == data
    drive_server.stats.reset()
    for _ in range(3):
        assert path.read_bytes() == data
    assert drive_server.stats.snapshot()["download"] == 0


@pytest.mark.parametrize("read_ahead", ["0", "64M"])
def test_handle_open_across_remote_overwrites_never_mixes_versions(mount: Mount, client: Any,
                                                                    read_ahead: str) -> None:
    # QA F6: a handle kept open across an overwrite read old+new bytes mixed, and after the content
    # went back to the first md5 a fresh open was served that mix from the kernel's page cache.
    # Same sizes throughout: only the content identity tells the versions apart. Without read-ahead
    # the old handle's later chunks are fetched after the overwrite (the pinning is what is tested).
    size = 2 * ReaderOptions().chunk_size + 12345
    v1, v2, v3 = (pattern(size, seed) for seed in (31, 32, 33))
    node = upload(client, "versions.bin", v1)
    mount.start("--read-ahead", read_ahead)
    path = mount.mnt / "versions.bin"
    markers = iter(range(100))

    def overwrite_and_sync(data: bytes) -> None:
        client.overwrite_stream(io.BytesIO(data), node["id"])
        # a file uploaded after the overwrite: once the mount lists it, the sync saw the overwrite
        marker = mount.mnt / f"marker-{next(markers)}"
        upload(client, marker.name, b"")
        mount.sync(check=marker.exists)

    overwrite_and_sync(v3)
    with open(path, "rb", buffering=0) as f:
        assert f.read(MiB) == v3[:MiB]
        overwrite_and_sync(v2)
        # a fresh open while the old handle is still open reads the new content
        assert hashlib.md5(path.read_bytes()).hexdigest() == hashlib.md5(v2).hexdigest()
        # the old handle reads on: its own version's bytes, or an errno -- never v2's bytes
        pos = MiB
        try:
            while block := f.read(64 * 1024):
                assert block == v3[pos:pos + len(block)], f"bytes of another version at {pos}"
                pos += len(block)
        except OSError as exc:
            assert exc.errno in (errno.ESTALE, errno.EIO), exc
        else:
            assert pos == size
            # with no read-ahead the later chunks were not cached: only v2 was on the server
            assert read_ahead != "0", "the old handle got bytes the server no longer has"
    overwrite_and_sync(v3)
    # the md5 matches the old handle's again: the page cache may still be used only if it holds v3 alone
    for _ in range(2):
        assert hashlib.md5(path.read_bytes()).hexdigest() == hashlib.md5(v3).hexdigest()
    assert pread(path, 3 * MiB - 10, 20) == v3[3 * MiB - 10:3 * MiB + 10]


@pytest.mark.parametrize("change", ["rename", "move", "trash"])
def test_open_handle_reads_on_after_a_remote_rename_move_or_trash(mount: Mount, client: Any,
                                                                  change: str) -> None:
    # QA F15: like unlink on a local fs, an fd opened before the change keeps reading its content;
    # only new lookups see the new path (or ENOENT). Reading past EOF makes the kernel ask getattr
    # with the open file's handle: that must answer from the handle, not from the old path.
    data = pattern(3 * MiB + 77, 41)
    node = upload(client, "moving-away.bin", data)
    folder = client.create_folder("elsewhere")
    mount.start("--read-ahead", "1M")
    path = mount.mnt / "moving-away.bin"
    with open(path, "rb", buffering=0) as f:
        assert f.read(MiB) == data[:MiB]
        if change == "rename":
            client.rename_node(node["id"], "renamed.bin")
        elif change == "move":
            client.move_node(node["id"], folder["id"])
        else:
            client.move_to_trash(node["id"])
        # gone from its folder; on a writable mount a stat of the old path itself still finds the file
        # while it is open (the kernel asks for an open file's attributes by that path: see
        # DriveOperations._opened_at), and it fails once the file is closed
        mount.sync(check=lambda: "moving-away.bin" not in os.listdir(mount.mnt))
        with pytest.raises(FileNotFoundError):
            open(path, "rb").close()
        assert f.read(30 * MiB) == data[MiB:]
        assert f.read(10) == b""
        assert os.fstat(f.fileno()).st_size == len(data)
    mount.sync(check=lambda: not path.exists())
    if change == "rename":
        assert (mount.mnt / "renamed.bin").read_bytes() == data
    elif change == "move":
        assert (mount.mnt / "elsewhere" / "moving-away.bin").read_bytes() == data


@pytest.mark.parametrize("read_ahead", ["0", "64M"])
@pytest.mark.parametrize("new_size", [100_000, 12 * MiB], ids=["shrunk", "grown"])
def test_handle_open_across_a_remote_resize_reads_its_version_or_an_errno(
        mount: Mount, client: Any, read_ahead: str, new_size: int) -> None:
    # The many-mounts test found a read that returned the first 128 KiB of the old version and then
    # EOF: the kernel asked for the new size (with the old handle) and ended the file there. The old
    # handle must read its whole version or get an errno; and it must not leave the kernel believing
    # its old size, so a fresh open reads the new version whole. (Not covered, as on a local disk: a
    # stat or listing by anyone between two reads tells the kernel the new size, and a read past it
    # then ends at EOF without asking the mount.)
    size = 2 * ReaderOptions().chunk_size + 12345
    v1, v2 = pattern(size, 51), pattern(new_size, 52)
    node = upload(client, "resized.bin", v1)
    mount.start("--read-ahead", read_ahead)
    path = mount.mnt / "resized.bin"
    with open(path, "rb", buffering=0) as f:
        got = f.read(128 * 1024)
        assert got == v1[:len(got)]
        client.overwrite_stream(io.BytesIO(v2), node["id"])
        marker = mount.mnt / "marker"
        upload(client, marker.name, b"")
        mount.sync(check=marker.exists)
        try:
            while block := f.read(256 * 1024):
                assert block == v1[len(got):len(got) + len(block)], f"bytes of another version at {len(got)}"
                got += block
        except OSError as exc:
            assert exc.errno in (errno.ESTALE, errno.EIO), exc
        else:
            assert len(got) == size, f"the old version ended at {len(got)} of {size} bytes without an error"
        assert hashlib.md5(path.read_bytes()).hexdigest() == hashlib.md5(v2).hexdigest()
    assert os.stat(path).st_size == new_size
    assert hashlib.md5(path.read_bytes()).hexdigest() == hashlib.md5(v2).hexdigest()
