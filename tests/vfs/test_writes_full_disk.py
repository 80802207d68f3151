"""A full cache disk: the writer gets ENOSPC, and nothing already written is lost (real server, a real
small filesystem for the cache dir)."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest
from common_helpers import small_tmpfs
from vfs_helpers import pattern
from writes_helpers import KiB, MiB, WriteStack

from acdfuse.vfs.options import WriteOptions


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs."""
    with small_tmpfs(tmp_path / "small", "6m") as path:
        yield path


def test_full_cache_disk_gives_enospc_and_loses_nothing(  # type: ignore[no-untyped-def]
        client, drive_server, small_disk: Path) -> None:
    stack = WriteStack(client, drive_server, small_disk / "cache", WriteOptions(upload_delay=3600)).open()
    first = pattern(1 * MiB, seed=1)
    stack.write_file("first.bin", first)                 # closed before the disk fills up
    h = stack.w.create(stack.root.id, "second.bin")
    piece = pattern(256 * KiB, seed=2)
    written = 0
    with pytest.raises(OSError) as info:
        while written < 64 * MiB:
            stack.w.write(h, written, piece)
            written += len(piece)
    assert info.value.errno == errno.ENOSPC
    assert written > 0
    assert stack.w.read(h, 0, 100) == piece[:100]
    stack.w.release(h)
    stack.close(timeout=1)
    # a new mount on the same (still full) disk uploads both as acknowledged
    stack.open(WriteOptions(upload_delay=0.1), sync=False)
    assert stack.w.wait_uploads(60)
    stack.s.sync(client.get_changes)
    assert stack.server_bytes(stack.node("/first.bin").id) == first
    second = stack.server_bytes(stack.node("/second.bin").id)
    assert len(second) == written and second == piece * (written // len(piece))
    stack.close()
