"""Streaming uploads: a file written front to back starts going up while it is written (real server)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from vfs_helpers import pattern
from writes_helpers import KiB, MiB, WriteStack, leftover_spools

from acdfuse.vfs.options import WriteOptions


@pytest.fixture
def stack(client, drive_server, tmp_path: Path):  # type: ignore[no-untyped-def]
    s = WriteStack(client, drive_server, tmp_path / "c",
                   WriteOptions(upload_delay=0.2, stream_min=1 * MiB, retry_first=0.1, retry_cap=0.5)).open()
    try:
        yield s
    finally:
        s.close()


def write_sequentially(stack: WriteStack, h, data: bytes, piece: int = 128 * KiB,  # type: ignore[no-untyped-def]
                       start: int = 0) -> None:
    for off in range(0, len(data), piece):
        stack.w.write(h, start + off, data[off:off + piece])


def test_sequential_write_uploads_while_written_and_fsync_confirms_it(stack: WriteStack) -> None:
    data = pattern(6 * MiB + 5, seed=1)
    h = stack.w.create(stack.root.id, "big.bin")
    uploads = stack.stats()["upload"]
    write_sequentially(stack, h, data)
    stack.w.fsync(h)
    assert stack.w.stats["streamed"] == 1
    assert stack.stats()["upload"] == uploads + 1                # one upload, no second one at close
    node = stack.node("/big.bin")
    assert stack.server_bytes(node.id) == data
    stack.w.release(h)
    assert stack.w.wait_uploads(20)
    assert stack.stats()["upload"] == uploads + 1
    assert stack.w.pending_stats()["files"] == 0


def test_streamed_file_closed_without_fsync(stack: WriteStack) -> None:
    data = pattern(3 * MiB, seed=2)
    h = stack.w.create(stack.root.id, "closed.bin")
    write_sequentially(stack, h, data)
    stack.w.release(h)
    assert stack.w.wait_uploads(20)
    assert stack.w.stats["streamed"] == 1
    assert stack.server_bytes(stack.node("/closed.bin").id) == data


def test_a_write_back_into_the_file_stops_the_stream_and_the_file_still_goes_up(stack: WriteStack) -> None:
    data = bytearray(pattern(3 * MiB, seed=3))
    h = stack.w.create(stack.root.id, "patched.bin")
    write_sequentially(stack, h, bytes(data))
    stack.w.write(h, 100, b"PATCH")                  # not at the end: the streamed bytes are stale
    data[100:105] = b"PATCH"
    stack.w.release(h)
    assert stack.w.wait_uploads(20)
    assert stack.w.stats["streamed"] == 0
    assert stack.server_bytes(stack.node("/patched.bin").id) == bytes(data)


def test_truncate_and_rewrite_of_an_existing_file_streams_an_overwrite(stack: WriteStack) -> None:
    node = stack.upload("old.bin", b"old content")
    data = pattern(2 * MiB, seed=4)
    h = stack.w.open(node, write=True, truncate=True)
    assert h is not None
    write_sequentially(stack, h, data)
    stack.w.release(h)
    assert stack.w.wait_uploads(20)
    assert stack.w.stats["streamed"] == 1
    assert stack.node("/old.bin").id == node.id
    assert stack.server_bytes(node.id) == data


def test_a_writer_that_stops_writing_ends_the_stream(client, drive_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stack = WriteStack(client, drive_server, tmp_path / "c",
                       WriteOptions(upload_delay=0.1, stream_min=1 * MiB, stream_stall=0.3)).open()
    try:
        data = pattern(2 * MiB, seed=5)
        h = stack.w.create(stack.root.id, "paused.bin")
        write_sequentially(stack, h, data[:MiB + 1])
        time.sleep(1.0)           # longer than the stream waits for the next write
        write_sequentially(stack, h, data[MiB + 1:], piece=MiB, start=MiB + 1)
        stack.w.release(h)
        assert stack.w.wait_uploads(30)
        assert stack.server_bytes(stack.node("/paused.bin").id) == data
        assert stack.w.stats["streamed"] == 0
    finally:
        stack.close()


def test_deleting_a_file_while_it_streams_leaves_nothing(stack: WriteStack) -> None:
    h = stack.w.create(stack.root.id, "gone.bin")
    write_sequentially(stack, h, pattern(2 * MiB, seed=6))
    assert stack.w.unlink_pending(stack.root.id, "gone.bin")
    stack.w.release(h)
    assert stack.w.wait_uploads(20)
    stack.s.sync(stack.client.get_changes)
    assert stack.s.resolve("/gone.bin") is None
    assert leftover_spools(stack.cache) == []


def test_two_writers_do_not_stream(stack: WriteStack) -> None:
    h = stack.w.create(stack.root.id, "two.bin")
    pending = stack.w.lookup_pending(stack.root.id, "two.bin")
    assert pending is not None
    other = stack.w.open(pending, write=True)
    assert other is not None
    data = pattern(2 * MiB, seed=7)
    write_sequentially(stack, h, data)
    stack.w.release(other)
    stack.w.release(h)
    assert stack.w.wait_uploads(20)
    assert stack.w.stats["streamed"] == 0
    assert stack.server_bytes(stack.node("/two.bin").id) == data
