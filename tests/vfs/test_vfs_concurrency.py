"""Many readers, one fetch per chunk, failing and hung fetches, the EIO timeout."""

from __future__ import annotations

import errno
import random
import threading

import pytest
from vfs_helpers import FetchFailed, KiB, MemoryDrive, MiB, ReaderFactory, pattern, read_all

CHUNK = 64 * KiB
WAIT = 30.0  # upper bound for waits that should end at once; never an assertion on time


def run_threads(n: int, target, *args) -> list[BaseException]:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i, *args)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 4)
        assert not t.is_alive(), "a reader hung"
    return errors


def test_one_fetch_per_chunk_while_many_readers_wait(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    data = pattern(CHUNK)
    drive.add("n", data)
    gate = threading.Event()
    drive.hook = lambda *_: gate.wait(WAIT)
    reader = make_reader(drive)
    fh = reader.open("n", "k", len(data))
    results: list[bytes] = []
    arrived = threading.Semaphore(0)

    def read(i: int) -> None:
        arrived.release()
        results.append(reader.read(fh, (i * 997) % (CHUNK - 100), 100))

    errors: list[BaseException] = []
    readers = threading.Thread(target=lambda: errors.extend(run_threads(16, read)))
    readers.start()
    for _ in range(16):
        assert arrived.acquire(timeout=WAIT)
    with drive.lock:  # the first reader's fetch is in the server; the rest wait for it
        assert drive.lock.wait_for(lambda: drive.active == 1, WAIT)
    gate.set()
    readers.join(WAIT * 4)
    assert not errors
    assert sorted(results) == sorted(data[(i * 997) % (CHUNK - 100):][:100] for i in range(16))
    assert len(drive.calls) == 1


def test_many_threads_reading_one_file(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    size = 6 * MiB + 333
    data = pattern(size, seed=11)
    drive.add("n", data)
    reader = make_reader(drive, memory_cache=16 * MiB, cache_size=32 * MiB)

    def sequential(i: int) -> None:
        fh = reader.open("n", "k", size)
        assert read_all(reader, fh, size, step=(i + 1) * 7 * KiB) == data
        reader.release(fh)

    def scattered(i: int) -> None:
        fh = reader.open("n", "k", size)
        rng = random.Random(i)
        for _ in range(200):
            offset = rng.randrange(size)
            length = rng.randrange(1, 300 * KiB)
            assert reader.read(fh, offset, length) == data[offset:offset + length]
        reader.release(fh)

    assert not run_threads(4, sequential)
    assert not run_threads(6, scattered)
    # every chunk came from the server once: the memory tier holds the whole file
    assert sorted(set(drive.fetched_chunks("n", CHUNK))) == sorted(drive.fetched_chunks("n", CHUNK))
    assert reader.stats()["open_handles"] == 0


def test_fetch_errors_propagate_unchanged_and_do_not_poison_the_cache(drive: MemoryDrive,
                                                                      make_reader: ReaderFactory) -> None:
    data = pattern(4 * CHUNK)
    drive.add("n", data)
    failure = FetchFailed("503 from the server")
    broken = {"on": True}

    def hook(node_id: str, offset: int, length: int) -> None:
        if broken["on"] and offset <= 2 * CHUNK < offset + length:
            raise failure

    drive.hook = hook
    reader = make_reader(drive, read_ahead=0)
    fh = reader.open("n", "k", len(data))
    with pytest.raises(FetchFailed) as raised:
        reader.read(fh, 2 * CHUNK + 10, 100)
    assert raised.value is failure
    assert reader.read(fh, 0, CHUNK) == data[:CHUNK]  # other chunks are fine meanwhile
    broken["on"] = False
    assert reader.read(fh, 2 * CHUNK + 10, 100) == data[2 * CHUNK + 10:2 * CHUNK + 110]
    assert reader.flush(WAIT)
    stats = reader.stats()
    assert stats["fetch_errors"] == 1
    assert stats["pending_chunks"] == 0


def test_short_answer_is_eio_and_never_cached(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    data = pattern(3 * CHUNK)
    drive.add("n", data[: 2 * CHUNK])  # the server's copy is shorter than the size we were told
    reader = make_reader(drive, read_ahead=0)
    fh = reader.open("n", "k", len(data))
    with pytest.raises(OSError) as raised:
        reader.read(fh, 2 * CHUNK, 10)
    assert raised.value.errno == errno.EIO
    drive.add("n", data)
    assert reader.read(fh, 2 * CHUNK, 10) == data[2 * CHUNK:2 * CHUNK + 10]


def test_hung_fetch_fails_with_eio_within_the_timeout_and_recovers(drive: MemoryDrive,
                                                                   make_reader: ReaderFactory) -> None:
    data = pattern(8 * CHUNK)
    drive.add("slow", data)
    drive.add("fast", data)
    release = threading.Event()

    def hook(node_id: str, offset: int, length: int) -> None:
        if node_id == "slow":
            release.wait(WAIT)

    drive.hook = hook
    reader = make_reader(drive, timeout=0.3, read_ahead=0, demand_workers=2, streams=1)
    slow = reader.open("slow", "k", len(data))
    fast = reader.open("fast", "k", len(data))
    try:
        for i in range(4):  # more hung chunks than workers: each read still returns
            with pytest.raises(OSError) as raised:
                reader.read(slow, i * CHUNK, 10)
            assert raised.value.errno == errno.EIO
        assert reader.stats()["timeouts"] == 4
    finally:
        release.set()
    # the server is back: the same chunks read fine, and the other file too
    assert read_all(reader, slow, len(data)) == data
    assert read_all(reader, fast, len(data)) == data


def test_close_does_not_hang_on_a_hung_fetch(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    data = pattern(2 * CHUNK)
    drive.add("n", data)
    release = threading.Event()
    drive.hook = lambda *_: release.wait(WAIT)
    reader = make_reader(drive, timeout=WAIT)
    fh = reader.open("n", "k", len(data))
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            reader.read(fh, 0, 10)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=read)
    t.start()
    with drive.lock:
        assert drive.lock.wait_for(lambda: drive.active >= 1, WAIT)
    reader.close()
    t.join(WAIT)
    release.set()
    assert not t.is_alive()
    assert isinstance(outcome[0], OSError) and outcome[0].errno == errno.EIO
    with pytest.raises(OSError):
        reader.open("n", "k", len(data))
