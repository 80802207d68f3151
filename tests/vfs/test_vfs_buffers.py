"""Aligned receive buffers: page-aligned, reused only once nobody holds them, written to disk as they are."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

from vfs_helpers import KiB, MiB, pattern

from acdfuse.vfs import diskcache
from acdfuse.vfs.buffers import AlignedBuffers
from acdfuse.vfs.diskcache import DiskCache, make_stem


def address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def test_buffers_are_page_aligned_writable_and_exactly_sized() -> None:
    pool = AlignedBuffers()
    for size in (1, 4095, 4 * MiB, 4 * MiB + 17):
        view = pool.get(size)
        assert len(view) == size and not view.readonly
        assert address(view) % mmap.PAGESIZE == 0
        view[-1:] = b"x"


def test_a_held_buffer_is_never_handed_out_again() -> None:
    pool = AlignedBuffers()
    first = pool.get(MiB)
    first[:5] = b"first"
    cached = first[:5].toreadonly()   # what the memory cache keeps of a fetch
    del first
    second = pool.get(MiB)
    second[:6] = b"second"
    assert bytes(cached) == b"first"


def test_a_released_buffer_takes_the_next_body() -> None:
    pool = AlignedBuffers()
    first = pool.get(MiB)
    where = address(first)
    del first
    assert pool.idle_bytes() == MiB
    again = pool.get(MiB)
    assert address(again) == where
    assert pool.get(2 * MiB) is not None and pool.idle_bytes() == 0


def test_idle_buffers_are_capped() -> None:
    pool = AlignedBuffers(max_idle=2 * MiB)
    views = [pool.get(MiB) for _ in range(5)]
    del views
    held = pool.get(3 * MiB)    # a look through the pool drops what is over the cap
    assert pool.idle_bytes() == 2 * MiB
    assert len(held) == 3 * MiB


def test_chunks_in_aligned_buffers_are_written_whole(tmp_path: Path) -> None:
    """The O_DIRECT path straight from an aligned buffer, with a tail that is not block-aligned."""
    data = pattern(4 * MiB + 123)
    buf = AlignedBuffers().get(len(data))
    buf[:] = data
    cache = DiskCache(tmp_path / "c", 64 * MiB, 8 * MiB)
    cache.start()
    stem = make_stem("node", "md5", 0)
    assert cache.put(stem, buf.toreadonly())
    got = cache.get(stem, len(data))
    assert got is not None and bytes(got) == data
    # and from unaligned memory (a bytes object) through the bounce buffer
    other = make_stem("node", "md5", 1)
    assert cache.put(other, memoryview(data[1:]))
    again = cache.get(other, len(data) - 1)
    assert again is not None and bytes(again) == data[1:]


def test_unaligned_file_writes_still_use_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = pattern(64 * KiB + 5)
    diskcache._write_file(path, memoryview(data)[3:])
    assert path.read_bytes() == data[3:]
    assert os.stat(path).st_mode & 0o777 == 0o600
