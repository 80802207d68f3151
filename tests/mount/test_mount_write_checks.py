"""Write checks on real mounts: random operations against a shadow copy, kill -9 during uploads, and
two mounts of one drive writing the same file."""

from __future__ import annotations

import os
import random
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import Mount, fusermount_u
from shadow import KiB, Shadowed
from write_helpers import pending_uploads, wait_uploaded, write_file

pytestmark = pytest.mark.mount


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_operations_match_a_shadow_copy(cdir: Path, mounts: Any, seed: int) -> None:
    rng = random.Random(seed)
    m = mounts(cdir).start("--upload-delay", "0.2")
    files = [Shadowed(m.mnt / f"file{i}.bin") for i in range(4)]
    done: dict[str, int] = {}
    for _ in range(400):
        f = rng.choice(files)
        op = f.step(rng)
        done[op] = done.get(op, 0) + 1
    for f in files:
        f.close()
        assert f.path.read_bytes() == bytes(f.expect), f.path.name
    assert all(done.get(op, 0) > 0 for op in ("write", "append", "truncate", "read", "reopen", "fsync"))
    wait_uploaded(m.cache_dir)
    m.stop()
    fresh = mounts(cdir, name="fresh", cache="fresh-cache").start()
    for f in files:
        assert (fresh.mnt / f.path.name).read_bytes() == bytes(f.expect), f.path.name


def kill9(m: Mount) -> None:
    """Kill the mount process (our own child, by pid) and detach its dead mount."""
    assert m.proc is not None
    m.proc.kill()
    m.proc.wait(timeout=10)
    m.proc = None
    fusermount_u(m.mnt, lazy=True)


def test_kill_9_during_uploads_then_everything_is_uploaded_at_the_next_mount(
        cdir: Path, mounts: Any, drive_server: Any) -> None:
    m = mounts(cdir).start("--upload-delay", "0.3")
    rng = random.Random(7)
    expect: dict[str, bytes] = {}
    drive_server.faults.configure(bandwidth=20 * 1024 * 1024)     # uploads take a while
    for i in range(12):
        data = rng.randbytes(rng.choice([0, 10, 70_000, 2_000_000]))
        write_file(m.mnt / f"f{i}.bin", data, fsync=(i == 3))
        expect[f"f{i}.bin"] = data
    (m.mnt / "dir").mkdir()
    write_file(m.mnt / "dir" / "inner", b"inside")
    expect["dir/inner"] = b"inside"
    assert pending_uploads(m.cache_dir) > 0
    kill9(m)
    drive_server.faults.reset()
    m.start("--upload-delay", "0.3")            # the same cache dir: the journal is taken up
    wait_uploaded(m.cache_dir)
    m.stop()
    fresh = mounts(cdir, name="fresh", cache="fresh-cache").start()
    for name, data in expect.items():
        assert (fresh.mnt / name).read_bytes() == data, name
    names = set(os.listdir(fresh.mnt))
    assert not [n for n in names if "conflict" in n], names


def test_two_mounts_writing_one_file_keep_both_versions(cdir: Path, mounts: Any) -> None:
    one = mounts(cdir, name="one", cache="cache-one").start("--upload-delay", "0.2")
    two = mounts(cdir, name="two", cache="cache-two").start("--upload-delay", "0.2")
    write_file(one.mnt / "shared.txt", b"base\n")
    wait_uploaded(one.cache_dir)
    two.sync(check=lambda: (two.mnt / "shared.txt").read_bytes() == b"base\n")
    fd = os.open(two.mnt / "shared.txt", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"written on two\n")
    write_file(one.mnt / "shared.txt", b"written on one\n", fsync=True)     # lands first
    os.close(fd)                                                           # two's upload: too late
    wait_uploaded(two.cache_dir)
    pattern = re.compile(r"^shared \(conflict \d{4}-\d\d-\d\d \d{6}\)\.txt$")

    def both() -> bool:
        return any(pattern.match(n) for n in os.listdir(one.mnt))

    one.sync(check=both)
    copy = next(n for n in os.listdir(one.mnt) if pattern.match(n))
    assert (one.mnt / "shared.txt").read_bytes() == b"written on one\n"
    assert (one.mnt / copy).read_bytes() == b"written on two\n"
    two.sync(check=lambda: (two.mnt / "shared.txt").read_bytes() == b"written on one\n")
    assert (two.mnt / copy).read_bytes() == b"written on two\n"
    # a file written on one shows on the other after its next sync
    write_file(one.mnt / "from-one.txt", b"hello two")
    wait_uploaded(one.cache_dir)
    two.sync(check=lambda: (two.mnt / "from-one.txt").read_bytes() == b"hello two")


def test_kill_9_while_a_file_is_being_written(cdir: Path, mounts: Any, client: Any) -> None:
    """Killed in the middle of a write: every file closed before is uploaded by the next mount with the
    right content, and the file that was open is uploaded as far as its writes had returned."""
    m = mounts(cdir).start("--upload-delay", "0.3")
    rng = random.Random(11)
    closed: dict[str, bytes] = {}
    for i in range(8):
        data = rng.randbytes(rng.choice([0, 5_000, 400_000, 1_500_000]))
        write_file(m.mnt / f"c{i}.bin", data, fsync=(i % 4 == 0))
        closed[f"c{i}.bin"] = data
    piece = 64 * KiB
    data = rng.randbytes(8 * 1024 * KiB)
    returned = 0                                    # bytes of the writes that returned before the kill
    fd = os.open(m.mnt / "open.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while returned < len(data) // 2:
            returned += os.write(fd, data[returned:returned + piece])
        def last_write() -> None:
            try:
                os.write(fd, data[returned:returned + piece])
            except OSError:
                pass                                # the mount died under it: ENOTCONN or EIO

        writing = threading.Thread(target=last_write, daemon=True)
        writing.start()                             # may or may not land before the kill
        kill9(m)
        writing.join(30)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass                                    # its mount is gone
    m.start("--upload-delay", "0.3")                # the same cache dir: the journal is taken up
    wait_uploaded(m.cache_dir)
    m.stop()
    root = {c["name"]: c for c in client.list_children(client.get_root_id())
            if c.get("status") == "AVAILABLE"}
    for name, expect in closed.items():
        size = root[name]["contentProperties"]["size"]
        got = bytes(client.download_chunk(root[name]["id"], 0, size)) if size else b""
        assert got == expect, name
    size = root["open.bin"]["contentProperties"]["size"]
    assert returned <= size <= returned + piece, (size, returned)     # the last write: none, part or all
    assert bytes(client.download_chunk(root["open.bin"]["id"], 0, size)) == data[:size]
