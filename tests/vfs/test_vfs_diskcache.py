"""Disk tier: survives restarts, strict budget with LRU eviction, corruption, a full disk."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vfs_helpers import KiB, MemoryDrive, MiB, ReaderFactory, pattern, read_all

from acdfuse.vfs import diskcache
from acdfuse.vfs.diskcache import DiskCache, make_stem

CHUNK = 64 * KiB


def disk_usage(path: Path) -> int:
    """Bytes the cache really occupies: allocated blocks of every file and directory in it."""
    total = os.lstat(path).st_blocks * 512
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass  # renamed or evicted by a cache writer while we walked
    return total


def chunk_files(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "chunks").glob("*.c"))


def test_cache_survives_a_restart_with_no_fetch(drive: MemoryDrive, make_reader: ReaderFactory,
                                                tmp_path: Path) -> None:
    size = 20 * CHUNK + 17
    data = pattern(size)
    drive.add("n", data)
    first = make_reader(drive, cache_dir=tmp_path / "c")
    assert read_all(first, first.open("n", "md5", size), size) == data
    first.close()  # writes out what is still queued
    fetched = len(drive.calls)
    second = make_reader(drive, cache_dir=tmp_path / "c")
    assert read_all(second, second.open("n", "md5", size), size, step=10 * KiB) == data
    assert len(drive.calls) == fetched
    assert second.stats()["disk_hits"] == 21
    assert second.stats()["disk_ahead"] > 0  # read-ahead loaded chunks from disk in the background
    assert second.stats()["fetches"] == 0


def test_restart_with_changed_content_refetches(drive: MemoryDrive, make_reader: ReaderFactory,
                                                tmp_path: Path) -> None:
    old, new = pattern(4 * CHUNK, seed=1), pattern(4 * CHUNK, seed=2)
    drive.add("n", old)
    first = make_reader(drive, cache_dir=tmp_path / "c")
    read_all(first, first.open("n", "v1", len(old)), len(old))
    first.close()
    drive.add("n", new)
    second = make_reader(drive, cache_dir=tmp_path / "c")
    assert read_all(second, second.open("n", "v2", len(new)), len(new)) == new
    second.flush()
    assert len(chunk_files(tmp_path / "c")) == 4  # the old content's files are gone


def test_disk_budget_is_never_exceeded_and_evicts_least_recently_used(
        drive: MemoryDrive, make_reader: ReaderFactory, tmp_path: Path) -> None:
    cache_dir = tmp_path / "c"
    cap = 12 * CHUNK + 40 * KiB
    size = 40 * CHUNK
    data = pattern(size)
    drive.add("n", data)
    drive.add("hot", pattern(2 * CHUNK, seed=5))
    # no memory tier: every hit on "hot" goes to the disk tier and refreshes its LRU position
    reader = make_reader(drive, cache_dir=cache_dir, cache_size=cap, memory_cache=0,
                         read_ahead=4 * CHUNK)
    hot = reader.open("hot", "k", 2 * CHUNK)
    fh = reader.open("n", "k", size)
    read_all(reader, hot, 2 * CHUNK)
    offset = 0
    while offset < size:
        offset += len(reader.read(fh, offset, 16 * KiB))
        if offset % (4 * CHUNK) == 0:
            # writes are behind reads; once they are done, reading "hot" makes it the most recent
            assert reader.flush(30)
            read_all(reader, hot, 2 * CHUNK)
            assert disk_usage(cache_dir) <= cap
        assert reader.stats()["disk_bytes"] <= cap
    assert reader.flush(30)
    assert disk_usage(cache_dir) <= cap
    names = [p.name for p in chunk_files(cache_dir)]
    assert 8 <= len(names) <= 12
    hot_hex = b"hot".hex()
    assert sum(name.startswith(hot_hex + ".") for name in names) == 2  # recently used: kept
    kept = sorted(int(name.split(".")[2]) for name in names if name.startswith(b"n".hex() + "."))
    # the file's oldest chunks went first (two writer threads may swap neighbours)
    assert kept[0] >= 40 - len(kept) - 2


def test_lru_order_survives_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "c"
    cache = DiskCache(root, capacity=3 * (CHUNK + 4096) + 3 * 4096, chunk_size=CHUNK)
    cache.start()
    stems = [make_stem("n", "k", i) for i in range(3)]
    for stem in stems:
        assert cache.put(stem, memoryview(pattern(CHUNK, seed=stem[2])))
    # make the on-disk order unambiguous, then touch chunk 0: now 1 is the oldest
    for age, stem in zip((300, 200, 100), stems, strict=True):
        path = next((root / "chunks").glob(f"{stem[0]}.{stem[1]}.{stem[2]}.*"))
        os.utime(path, (path.stat().st_mtime - age,) * 2)
    assert cache.get(stems[0], CHUNK) is not None
    reopened = DiskCache(root, capacity=3 * (CHUNK + 4096) + 3 * 4096, chunk_size=CHUNK)
    reopened.start()
    assert reopened.put(make_stem("n", "k", 3), memoryview(pattern(CHUNK, seed=3)))
    assert not reopened.contains(stems[1])
    assert reopened.contains(stems[0]) and reopened.contains(stems[2])


def test_a_file_taken_into_the_cache_is_moved_not_copied(tmp_path: Path) -> None:
    root = tmp_path / "c"
    cache = DiskCache(root, capacity=2 * (CHUNK + 4096) + 3 * 4096, chunk_size=CHUNK)
    cache.start()
    data = pattern(CHUNK - 100, seed=4)
    src = root / "spool-file"
    src.write_bytes(data)
    ino = src.stat().st_ino
    stem = make_stem("n", "k", 0)
    assert not cache.take(stem, src, len(data) + 1) and src.exists()     # not the length it says
    assert cache.take(stem, src, len(data))
    assert not src.exists()
    (moved,) = chunk_files(root)
    assert moved.stat().st_ino == ino                                     # the same file, renamed
    got = cache.get(stem, len(data))
    assert got is not None and bytes(got) == data
    other = root / "other"
    other.write_bytes(data)
    assert not cache.take(stem, other, len(data)) and other.exists()      # that chunk is there already
    # the budget counts taken files as written ones: a third chunk evicts the oldest
    for i in (1, 2):
        f = root / f"f{i}"
        f.write_bytes(pattern(CHUNK, seed=i))
        assert cache.take(make_stem("n", "k", i), f, CHUNK)
    assert not cache.contains(stem) and len(chunk_files(root)) == 2
    reopened = DiskCache(root, capacity=2 * (CHUNK + 4096) + 3 * 4096, chunk_size=CHUNK)
    reopened.start()                                   # its name checks out after a restart
    got = reopened.get(make_stem("n", "k", 2), CHUNK)
    assert got is not None and bytes(got) == pattern(CHUNK, seed=2)


@pytest.mark.parametrize("read_ahead", [0, 1 * MiB], ids=["reader-loads", "read-ahead-loads"])
@pytest.mark.parametrize("damage", ["flip", "truncate", "extend"])
def test_corrupt_entries_are_refetched_never_served(drive: MemoryDrive, make_reader: ReaderFactory,
                                                    tmp_path: Path, damage: str, read_ahead: int) -> None:
    size = 16 * CHUNK
    data = pattern(size)
    drive.add("n", data)
    first = make_reader(drive, cache_dir=tmp_path / "c")
    read_all(first, first.open("n", "k", size), size)
    first.close()
    victim = next(p for p in chunk_files(tmp_path / "c") if p.name.split(".")[2] == "2")
    raw = bytearray(victim.read_bytes())
    if damage == "flip":
        raw[1234] ^= 0x40
    elif damage == "truncate":
        del raw[-100:]
    else:
        raw += b"x"
    victim.write_bytes(bytes(raw))
    calls = len(drive.calls)
    second = make_reader(drive, cache_dir=tmp_path / "c", read_ahead=read_ahead)
    assert read_all(second, second.open("n", "k", size), size) == data
    assert drive.calls[calls:] == [("n", 2 * CHUNK, CHUNK)]
    assert (second.stats()["disk_ahead"] > 0) == bool(read_ahead)
    assert second.stats()["disk_corrupt"] == 1
    assert second.flush(30)
    assert len(chunk_files(tmp_path / "c")) == 16  # replaced by a sound copy


def test_format_change_drops_old_chunks(drive: MemoryDrive, make_reader: ReaderFactory,
                                        tmp_path: Path) -> None:
    data = pattern(4 * CHUNK)
    drive.add("n", data)
    first = make_reader(drive, cache_dir=tmp_path / "c")
    read_all(first, first.open("n", "k", len(data)), len(data))
    first.close()
    second = make_reader(drive, cache_dir=tmp_path / "c", chunk_size=32 * KiB, request_size=32 * KiB)
    assert len(chunk_files(tmp_path / "c")) == 0
    assert read_all(second, second.open("n", "k", len(data)), len(data)) == data


def test_pinned_chunks_are_not_evicted_under_a_reader(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", capacity=2 * (CHUNK + 4096) + 3 * 4096, chunk_size=CHUNK)
    cache.start()
    a, b, c = (make_stem("n", "k", i) for i in range(3))
    assert cache.put(a, memoryview(pattern(CHUNK)))
    assert cache.put(b, memoryview(pattern(CHUNK)))
    with cache._lock:  # a reader is in the middle of reading both
        for stem in (a, b):
            cache._index[stem].pins += 1
    assert not cache.put(c, memoryview(pattern(CHUNK)))  # no room without evicting a pinned file
    assert cache.used <= 2 * (CHUNK + 4096) + 3 * 4096
    with cache._lock:
        for stem in (a, b):
            cache._index[stem].pins -= 1
    assert cache.put(c, memoryview(pattern(CHUNK)))
    assert not cache.contains(a) and cache.contains(c)


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache dir on a filesystem that is (nearly) full.

    As root: a real 1 MiB tmpfs.  Otherwise the chunk writer gets ENOSPC as a full disk gives it.
    """
    path = tmp_path / "small"
    path.mkdir()
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
                                 check=False, capture_output=True).returncode == 0
    if not mounted:
        def no_space(target: Path, data: memoryview) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        monkeypatch.setattr(diskcache, "_write_file", no_space)
    try:
        yield path
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)


def test_full_disk_degrades_to_memory_only_without_losing_reads(
        drive: MemoryDrive, make_reader: ReaderFactory, full_disk: Path) -> None:
    size = 40 * CHUNK  # 2.5 MiB: cannot fit into the 1 MiB filesystem
    data = pattern(size, seed=6)
    drive.add("n", data)
    reader = make_reader(drive, cache_dir=full_disk, cache_size=64 * MiB, memory_cache=64 * MiB)
    fh = reader.open("n", "k", size)
    assert read_all(reader, fh, size) == data
    assert reader.flush(30)
    calls = len(drive.calls)
    assert read_all(reader, reader.open("n", "k", size), size) == data  # from memory
    assert len(drive.calls) == calls
    assert reader.stats()["disk_bytes"] <= 1 * MiB


def test_skip_mode_slow_disk_never_slows_reads_skipped_chunks_are_cached_later(
        drive: MemoryDrive, make_reader: ReaderFactory, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    size = 32 * CHUNK
    data = pattern(size, seed=9)
    drive.add("n", data)
    disk_free = threading.Event()
    real_write = diskcache._write_file

    def stuck_disk(target: Path, view: memoryview) -> None:
        assert disk_free.wait(60)
        real_write(target, view)

    monkeypatch.setattr(diskcache, "_write_file", stuck_disk)
    reader = make_reader(drive, cache_dir=tmp_path / "c", disk_queue=4 * CHUNK, memory_cache=64 * CHUNK,
                         disk_skip_when_full=True)
    fh = reader.open("n", "k", size)
    assert read_all(reader, fh, size) == data  # completes while the disk is stuck
    skipped = reader.stats()["disk_skipped"]
    assert skipped > 0
    disk_free.set()
    assert reader.flush(30)
    assert reader.stats()["disk_chunks"] == 32 - skipped
    reader.close()
    # after a restart the skipped chunks come from the server once, and are cached this time
    calls = len(drive.calls)
    second = make_reader(drive, cache_dir=tmp_path / "c")
    assert read_all(second, second.open("n", "k", size), size) == data
    refetched = [c for _, off, ln in drive.calls[calls:] for c in range(off // CHUNK, (off + ln) // CHUNK)]
    assert len(refetched) == skipped
    second.flush(30)
    assert second.stats()["disk_chunks"] == 32


def test_disk_budget_holds_with_many_concurrent_readers(drive: MemoryDrive, make_reader: ReaderFactory,
                                                        tmp_path: Path) -> None:
    cache_dir = tmp_path / "c"
    cap = 10 * CHUNK + 40 * KiB
    files = 6
    size = 24 * CHUNK
    for i in range(files):
        drive.add(f"f{i}", pattern(size, seed=i))
    reader = make_reader(drive, cache_dir=cache_dir, cache_size=cap, memory_cache=4 * CHUNK,
                         read_ahead=4 * CHUNK)
    errors: list[BaseException] = []

    def read(i: int) -> None:
        try:
            for _ in range(2):
                fh = reader.open(f"f{i}", "k", size)
                assert read_all(reader, fh, size, step=(i + 1) * 10 * KiB) == drive.files[f"f{i}"]
                reader.release(fh)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(files)]
    for t in threads:
        t.start()
    samples = 0
    while any(t.is_alive() for t in threads):
        assert disk_usage(cache_dir) <= cap
        assert reader.stats()["disk_bytes"] <= cap
        samples += 1
        threads[0].join(0.005)
    for t in threads:
        t.join(60)
    assert not errors
    assert reader.flush(30)
    assert disk_usage(cache_dir) <= cap
    assert samples > 0


def test_default_mode_a_slow_disk_still_gets_every_chunk(
        drive: MemoryDrive, make_reader: ReaderFactory, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    size = 48 * CHUNK
    data = pattern(size, seed=10)
    drive.add("n", data)
    real_write = diskcache._write_file

    def slow_disk(target: Path, view: memoryview) -> None:
        time.sleep(0.005)  # a disk far slower than this in-memory "network"
        real_write(target, view)

    monkeypatch.setattr(diskcache, "_write_file", slow_disk)
    reader = make_reader(drive, cache_dir=tmp_path / "c", disk_queue=4 * CHUNK, memory_cache=8 * CHUNK)
    assert read_all(reader, reader.open("n", "k", size), size) == data
    assert reader.stats()["disk_skipped"] == 0
    reader.close()
    calls = len(drive.calls)
    second = make_reader(drive, cache_dir=tmp_path / "c")
    assert read_all(second, second.open("n", "k", size), size) == data
    assert len(drive.calls) == calls  # the whole file came from the disk tier


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, MiB, 3 * MiB + 12345])
def test_chunk_files_hold_exactly_the_bytes(tmp_path: Path, size: int) -> None:
    # The block-aligned bulk goes with O_DIRECT through a bounce buffer, the tail buffered: both
    # halves and every bounce window must land where they belong.
    data = pattern(size, seed=size)
    path = tmp_path / "chunk.c"
    diskcache._write_file(path, memoryview(data))
    assert path.read_bytes() == data


def test_chunk_files_on_a_filesystem_without_o_direct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # tmpfs refuses O_DIRECT with EINVAL: the cache falls back to buffered writes and stays correct
    shm = Path("/dev/shm")
    if not shm.is_dir():
        shm = tmp_path
    monkeypatch.setattr(diskcache, "_direct_ok", True)
    target = Path(shm) / f"acdfuse-test-{os.getpid()}-{threading.get_ident()}.c"
    data = pattern(2 * MiB + 3, seed=5)
    try:
        diskcache._write_file(target, memoryview(data))
        assert target.read_bytes() == data
    finally:
        target.unlink(missing_ok=True)


def test_chunk_files_are_private(drive: MemoryDrive, make_reader: ReaderFactory, tmp_path: Path) -> None:
    # chunk files hold the user's file contents: 0600 whatever the umask, their directory 0700
    drive.add("n", pattern(3 * CHUNK + 5, seed=8))
    reader = make_reader(drive, cache_dir=tmp_path / "cache", chunk_size=CHUNK)
    read_all(reader, reader.open("n", "k", 3 * CHUNK + 5), 3 * CHUNK + 5)
    assert reader.flush(10)
    files = chunk_files(tmp_path / "cache")
    assert len(files) == 4
    assert {f.stat().st_mode & 0o777 for f in files} == {0o600}
    assert (tmp_path / "cache" / "chunks").stat().st_mode & 0o777 == 0o700
