"""Read-ahead: window growth, parallel range requests, reordered kernel reads, the global budget."""

from __future__ import annotations

import itertools
import threading
import time

from vfs_helpers import KiB, MemoryDrive, MiB, ReaderFactory, pattern, read_all

from acdfuse.vfs.readahead import ReadAheadState

CHUNK = 64 * KiB


def test_policy_window_starts_small_and_doubles_to_the_maximum() -> None:
    ra = ReadAheadState(size=1 << 40, initial=1 * MiB, maximum=64 * MiB)
    windows = []
    offset = 0
    while offset < 300 * MiB:
        ahead = ra.on_read(offset, offset + 128 * KiB)
        if ahead is not None:
            windows.append(ra.window)
            ra.scheduled(ahead[1])
            assert ahead[1] - offset <= 64 * MiB + 128 * KiB  # never further than the window
        offset += 128 * KiB
    assert windows[0] == 1 * MiB
    assert windows == sorted(windows)
    assert windows[-1] == 64 * MiB
    # each step at most doubles
    assert all(b in (a, 2 * a) for a, b in itertools.pairwise(windows))


def test_policy_small_reorders_keep_the_stream_a_far_jump_resets_it() -> None:
    ra = ReadAheadState(size=1 << 40, initial=1 * MiB, maximum=64 * MiB)
    offset = 0
    for _ in range(200):  # grow a window first
        ahead = ra.on_read(offset, offset + 128 * KiB)
        if ahead:
            ra.scheduled(ahead[1])
        offset += 128 * KiB
    window = ra.window
    assert window > 1 * MiB
    # the kernel's own readahead: the next two requests swapped, one slightly behind
    for a, b in [(offset + 128 * KiB, offset + 256 * KiB), (offset, offset + 128 * KiB),
                 (offset - 128 * KiB, offset)]:
        result = ra.on_read(a, b)
        if result:
            ra.scheduled(result[1])
        assert ra.window >= window
    # a random jump turns read-ahead off, and a continued read turns it back on, small
    assert ra.on_read(offset + 10 * 1024 * MiB, offset + 10 * 1024 * MiB + 4096) is None
    assert ra.window == 0
    again = ra.on_read(offset + 10 * 1024 * MiB + 4096, offset + 10 * 1024 * MiB + 8192)
    assert again is not None and ra.window == 1 * MiB


def test_sequential_reader_reads_ahead_with_growing_requests(drive: MemoryDrive,
                                                             make_reader: ReaderFactory) -> None:
    size = 64 * MiB
    drive.add("n", pattern(size))
    reader = make_reader(drive, cache_dir=None, memory_cache=128 * MiB, chunk_size=1 * MiB,
                         read_ahead=16 * MiB, initial_window=1 * MiB, read_ahead_budget=64 * MiB,
                         request_size=64 * MiB, streams=1)
    fh = reader.open("n", "k", size)
    highest_ahead = 0
    offset = 0
    while offset < size:
        offset += len(reader.read(fh, offset, 128 * KiB))
        with drive.lock:
            ends = [off + ln for _, off, ln in drive.calls]
        highest_ahead = max(highest_ahead, max(ends) - offset)
    stats = reader.stats()
    assert stats["misses"] == 1  # only the very first chunk was waited for without read-ahead
    lengths = [ln for _, ln in drive.calls_for("n")]
    assert lengths[0] == 1 * MiB
    assert max(lengths) > 4 * MiB  # the window grew
    assert highest_ahead <= 16 * MiB + 1 * MiB  # ...but never beyond read_ahead (+ one chunk)
    assert sorted(drive.fetched_chunks("n", 1 * MiB)) == list(range(64))  # each chunk exactly once


def test_read_ahead_runs_several_range_requests_at_once(drive: MemoryDrive,
                                                        make_reader: ReaderFactory) -> None:
    size = 48 * MiB
    data = pattern(size, seed=4)
    drive.add("n", data)

    def slow(node_id: str, offset: int, length: int) -> None:
        time.sleep(0.02)  # a link with latency: requests overlap only if issued in parallel

    drive.hook = slow
    reader = make_reader(drive, cache_dir=None, memory_cache=96 * MiB, chunk_size=1 * MiB,
                         read_ahead=16 * MiB, initial_window=1 * MiB, read_ahead_budget=32 * MiB,
                         request_size=2 * MiB, streams=4, demand_workers=2)
    fh = reader.open("n", "k", size)
    assert read_all(reader, fh, size) == data
    assert drive.max_active >= 4
    assert drive.max_active <= 4 + 2  # streams plus the demand workers
    assert sorted(drive.fetched_chunks("n", 1 * MiB)) == list(range(48))


def test_reordered_kernel_reads_do_not_reset_read_ahead(drive: MemoryDrive,
                                                       make_reader: ReaderFactory) -> None:
    size = 16 * MiB
    data = pattern(size, seed=8)
    drive.add("n", data)
    reader = make_reader(drive, cache_dir=None, memory_cache=32 * MiB, chunk_size=256 * KiB,
                         read_ahead=4 * MiB, initial_window=256 * KiB, read_ahead_budget=8 * MiB,
                         request_size=1 * MiB)
    fh = reader.open("n", "k", size)
    step = 128 * KiB
    order = []
    for pair in range(0, size, 2 * step):
        order += [pair + step, pair] if pair else [pair, pair + step]  # each pair swapped
    for offset in order:
        assert reader.read(fh, offset, step) == data[offset:offset + step]
    stats = reader.stats()
    assert stats["misses"] == 1
    assert stats["readahead_fetches"] >= 3


def test_global_read_ahead_budget_bounds_all_files_together(drive: MemoryDrive,
                                                           make_reader: ReaderFactory) -> None:
    files = 8
    size = 12 * MiB
    for i in range(files):
        drive.add(f"f{i}", pattern(size, seed=i))

    def slow(node_id: str, offset: int, length: int) -> None:
        time.sleep(0.005)

    drive.hook = slow
    budget = 3 * MiB
    reader = make_reader(drive, cache_dir=None, memory_cache=8 * MiB, chunk_size=256 * KiB,
                         read_ahead=4 * MiB, initial_window=256 * KiB, read_ahead_budget=budget,
                         request_size=1 * MiB, streams=4)
    errors: list[BaseException] = []
    peak = [0]

    def worker(i: int) -> None:
        try:
            fh = reader.open(f"f{i}", "k", size)
            offset = 0
            while offset < size:
                got = reader.read(fh, offset, 128 * KiB)
                assert got == drive.files[f"f{i}"][offset:offset + len(got)]
                offset += len(got)
                peak[0] = max(peak[0], reader.stats()["readahead_inflight_bytes"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(files)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert peak[0] <= budget
    # what the server saw in flight: the read-ahead budget plus at most one demand chunk per reader
    assert drive.max_active_bytes <= budget + files * 256 * KiB
    assert reader.stats()["readahead_fetches"] > 0
