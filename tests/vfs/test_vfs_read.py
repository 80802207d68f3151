"""ContentReader byte ranges: chunk edges, EOF, handles, content identity (in-memory fetch)."""

from __future__ import annotations

import errno
import random
import threading

import pytest
from vfs_helpers import KiB, MemoryDrive, ReaderFactory, pattern, read_all

CHUNK = 64 * KiB


@pytest.mark.parametrize("size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 123])
@pytest.mark.parametrize("step", [1000, 4 * KiB, CHUNK, 3 * CHUNK + 7])
def test_sequential_read_returns_the_file(drive: MemoryDrive, make_reader: ReaderFactory,
                                          size: int, step: int) -> None:
    data = pattern(size)
    drive.add("n", data)
    reader = make_reader(drive)
    fh = reader.open("n", "md5-1", size)
    assert read_all(reader, fh, size, step) == data


def test_reads_across_chunk_edges_and_at_eof(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    size = 4 * CHUNK + 10
    data = pattern(size, seed=3)
    drive.add("n", data)
    reader = make_reader(drive, cache_dir=None, read_ahead=0)
    fh = reader.open("n", "k", size)
    for offset, length in [(CHUNK - 1, 2), (CHUNK, CHUNK), (CHUNK - 5, 2 * CHUNK + 10), (0, size),
                           (4 * CHUNK, 10), (4 * CHUNK + 9, 1), (2 * CHUNK + 1, 0)]:
        assert reader.read(fh, offset, length) == data[offset:offset + length], (offset, length)
    # short only at EOF, empty at and past it
    assert reader.read(fh, size - 4, 100) == data[-4:]
    assert reader.read(fh, size, 100) == b""
    assert reader.read(fh, size + CHUNK * 10, 100) == b""


def test_empty_file_never_fetches(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    drive.add("empty", b"")
    reader = make_reader(drive)
    fh = reader.open("empty", "d41d8cd98f00b204e9800998ecf8427e", 0)
    assert reader.read(fh, 0, 4096) == b""
    assert drive.calls == []


def test_bad_handles_and_ranges_raise_with_errno(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    drive.add("n", pattern(100))
    reader = make_reader(drive)
    fh = reader.open("n", "k", 100)
    with pytest.raises(OSError) as bad_offset:
        reader.read(fh, -1, 10)
    assert bad_offset.value.errno == errno.EINVAL
    reader.release(fh)
    with pytest.raises(OSError) as released:
        reader.read(fh, 0, 10)
    assert released.value.errno == errno.EBADF
    with pytest.raises(OSError) as twice:
        reader.release(fh)
    assert twice.value.errno == errno.EBADF
    with pytest.raises(OSError) as negative:
        reader.open("n", "k", -1)
    assert negative.value.errno == errno.EINVAL


def test_random_reads_fetch_only_the_chunks_they_touch(drive: MemoryDrive,
                                                       make_reader: ReaderFactory) -> None:
    size = 200 * CHUNK
    data = pattern(size, seed=7)
    drive.add("n", data)
    reader = make_reader(drive, cache_dir=None, memory_cache=64 * 1024 * KiB)
    fh = reader.open("n", "k", size)
    rng = random.Random(5)
    touched: set[int] = set()
    last_end = -1
    for _ in range(60):
        offset = rng.randrange(1, size - 10 * KiB)
        if offset == last_end:
            continue  # that would continue the previous read: a sequential start
        length = rng.choice([512, 4 * KiB, 10 * KiB])
        assert reader.read(fh, offset, length) == data[offset:offset + length]
        touched.update(range(offset // CHUNK, (offset + length - 1) // CHUNK + 1))
        last_end = offset + length
    fetched = drive.fetched_chunks("n", CHUNK)
    assert sorted(fetched) == sorted(touched)  # each touched chunk once, nothing else
    stats = reader.stats()
    assert stats["readahead_fetches"] == 0
    assert stats["fetched_bytes"] == len(touched) * CHUNK


def test_changed_content_is_never_served_from_cache(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    old, new = pattern(3 * CHUNK, seed=1), pattern(3 * CHUNK + 5, seed=2)
    drive.add("n", old)
    reader = make_reader(drive)
    fh = reader.open("n", "md5-old", len(old))
    assert read_all(reader, fh, len(old)) == old
    reader.release(fh)
    reader.flush()
    drive.add("n", new)  # someone overwrote it on the server
    fh = reader.open("n", "md5-new", len(new))
    assert read_all(reader, fh, len(new)) == new
    # the old content's chunks were dropped from both tiers: only the new 4 chunks are on disk
    assert reader.flush()
    assert reader.stats()["disk_chunks"] == 4


def test_invalidate_drops_chunks_of_a_node(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    data = pattern(2 * CHUNK)
    drive.add("n", data)
    drive.add("other", pattern(CHUNK, seed=9))
    reader = make_reader(drive)
    fh = reader.open("n", "k", len(data))
    other = reader.open("other", "k2", CHUNK)
    read_all(reader, fh, len(data))
    read_all(reader, other, CHUNK)
    reader.flush()
    before = len(drive.calls)
    reader.invalidate("n")
    assert read_all(reader, fh, len(data)) == data
    assert len(drive.calls) > before  # refetched
    calls_other = len(drive.calls)
    read_all(reader, other, CHUNK)
    assert len(drive.calls) == calls_other  # other nodes kept their chunks


def test_memory_tier_stays_within_its_budget(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    size = 100 * CHUNK
    drive.add("n", pattern(size))
    reader = make_reader(drive, cache_dir=None, memory_cache=10 * CHUNK)
    fh = reader.open("n", "k", size)
    offset = 0
    while offset < size:
        offset += len(reader.read(fh, offset, 32 * KiB))
        assert reader.stats()["memory_bytes"] <= 10 * CHUNK


def test_warm_reread_from_memory_makes_no_fetch(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    size = 20 * CHUNK
    data = pattern(size)
    drive.add("n", data)
    reader = make_reader(drive, cache_dir=None)
    fh = reader.open("n", "k", size)
    read_all(reader, fh, size)
    calls = len(drive.calls)
    reader.reset_stats()
    fh2 = reader.open("n", "k", size)
    assert read_all(reader, fh2, size, step=5000) == data
    assert len(drive.calls) == calls
    assert reader.stats()["fetches"] == 0


def test_invalidate_keeping_the_new_content(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    old, new = pattern(2 * CHUNK, seed=1), pattern(2 * CHUNK, seed=2)
    drive.add("n", old)
    reader = make_reader(drive, read_ahead=0)
    read_all(reader, reader.open("n", "v1", len(old)), len(old))
    drive.add("n", new)
    reader.invalidate("n", keep_content="v2")  # what a sync does when it sees new content
    assert reader.flush()
    assert reader.stats()["disk_chunks"] == 0
    fh = reader.open("n", "v2", len(new))
    assert read_all(reader, fh, len(new)) == new
    calls = len(drive.calls)
    reader.invalidate("n", keep_content="v2")  # nothing to drop: the new chunks stay
    assert read_all(reader, fh, len(new)) == new
    assert len(drive.calls) == calls


def test_fetch_in_flight_during_invalidate_is_served_but_not_cached(drive: MemoryDrive,
                                                                    make_reader: ReaderFactory) -> None:
    data = pattern(CHUNK)
    drive.add("n", data)
    entered, release = threading.Event(), threading.Event()

    def hook(node_id: str, offset: int, length: int) -> None:
        entered.set()
        release.wait(30)

    drive.hook = hook
    reader = make_reader(drive, read_ahead=0)
    fh = reader.open("n", "k", len(data))
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(reader.read(fh, 0, 100)))
    t.start()
    assert entered.wait(30)
    reader.invalidate("n")  # e.g. a sync saw the file change while its bytes were on the wire
    release.set()
    t.join(30)
    assert got == [data[:100]]
    drive.hook = None
    assert reader.read(fh, 0, 100) == data[:100]
    assert len(drive.calls) == 2  # the first answer was not cached


def test_memory_tier_bounds_whole_response_buffers(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    size = 64 * CHUNK
    drive.add("n", pattern(size))
    budget = 10 * CHUNK
    reader = make_reader(drive, cache_dir=None, memory_cache=budget, request_size=4 * CHUNK,
                         read_ahead=16 * CHUNK, read_ahead_budget=16 * CHUNK)
    fh = reader.open("n", "k", size)
    offset = 0
    mem = reader._mem
    while offset < size:
        offset += len(reader.read(fh, offset, 48 * KiB))
        with mem._lock:
            assert mem._lru is not None
            bases = {id(mem._base(v)): mem._base(v) for v in mem._lru.values()}
            held = sum(memoryview(b).nbytes for b in bases.values())
        # slices never keep more alive than the budget: siblings are evicted together
        assert held <= budget
    assert max(ln for _, ln in drive.calls_for("n")) > CHUNK  # multi-chunk responses were involved


def test_every_fetch_names_the_handles_content_key(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    # The fetch pins each range to the content its handle was opened on; two handles of different
    # contents (a long-open one across a remote overwrite, and a fresh one) each name their own key.
    size = 6 * CHUNK
    drive.add("n", pattern(size, seed=21))
    reader = make_reader(drive, cache_dir=None)
    old = reader.open("n", "key-old", size)
    assert reader.read(old, 0, 2 * CHUNK) == drive.files["n"][:2 * CHUNK]
    new = reader.open("n", "key-new", size)
    assert read_all(reader, new, size) == drive.files["n"]
    reader.read(old, 4 * CHUNK, CHUNK)
    keys = {key for node_id, key in drive.keys if node_id == "n"}
    assert keys == {"key-old", "key-new"}
    with drive.lock:
        calls = list(zip(drive.calls, drive.keys, strict=True))
    assert any(key == "key-old" and off >= 4 * CHUNK for (_, off, _), (_, key) in calls)
