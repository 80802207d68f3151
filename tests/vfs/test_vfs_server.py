"""ContentReader over the real client and the real server (loopback HTTP, no mocks)."""

from __future__ import annotations

import errno
import io
import random
import threading
from pathlib import Path

import pytest
from vfs_helpers import KiB, MiB, ReaderFactory, pattern, read_all

from acdfuse.api.common import NotFound, RequestError
from acdfuse.server import DriveServer

CHUNK = 256 * KiB


def upload(client, name: str, data: bytes) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    node = client.upload_stream(io.BytesIO(data), name)
    return node["id"], node["contentProperties"]["md5"]


def pinned(client):  # type: ignore[no-untyped-def]
    """The reader's fetch over the client: each range pinned to the handle's content (md5) key."""
    def fetch(node_id: str, offset: int, length: int, content_key: str) -> bytearray:
        return client.download_chunk(node_id, offset, length, content_md5=content_key)
    return fetch


def downloads(server: DriveServer) -> int:
    return server.stats.snapshot()["download"]


@pytest.fixture
def options(tmp_path: Path) -> dict[str, object]:
    return dict(cache_dir=tmp_path / "cache", chunk_size=CHUNK, memory_cache=8 * MiB, cache_size=64 * MiB,
                read_ahead=4 * MiB, initial_window=CHUNK, read_ahead_budget=8 * MiB, request_size=1 * MiB,
                streams=4, timeout=20.0)


def test_reads_a_file_from_the_server(client, drive_server: DriveServer, make_reader: ReaderFactory,
                                      options: dict[str, object]) -> None:
    data = pattern(3 * MiB + 4321, seed=1)
    node_id, md5 = upload(client, "big.bin", data)
    reader = make_reader(pinned(client), **options)
    fh = reader.open(node_id, md5, len(data))
    assert read_all(reader, fh, len(data)) == data
    # chunk edges and the tail, served from the cache now
    for offset, length in [(CHUNK - 1, 2), (len(data) - 5, 100), (2 * CHUNK, CHUNK)]:
        assert reader.read(fh, offset, length) == data[offset:offset + length]
    assert reader.stats()["readahead_fetches"] > 0


def test_remount_reads_with_no_http(client, drive_server: DriveServer, make_reader: ReaderFactory,
                                    options: dict[str, object]) -> None:
    data = pattern(2 * MiB + 1, seed=2)
    node_id, md5 = upload(client, "warm.bin", data)
    first = make_reader(pinned(client), **options)
    read_all(first, first.open(node_id, md5, len(data)), len(data))
    first.close()
    drive_server.stats.reset()
    second = make_reader(pinned(client), **options)
    assert read_all(second, second.open(node_id, md5, len(data)), len(data), step=100 * KiB) == data
    assert downloads(drive_server) == 0
    assert drive_server.stats.snapshot()["requests"] == 0


def test_random_reads_download_only_touched_chunks(client, drive_server: DriveServer,
                                                   make_reader: ReaderFactory,
                                                   options: dict[str, object]) -> None:
    data = pattern(8 * MiB, seed=3)
    node_id, md5 = upload(client, "random.bin", data)
    reader = make_reader(pinned(client), **{**options, "cache_dir": None})
    fh = reader.open(node_id, md5, len(data))
    drive_server.stats.reset()
    rng = random.Random(1)
    touched: set[int] = set()
    previous_end = -1
    for _ in range(12):
        offset = rng.randrange(1, len(data) - 4096)
        if offset == previous_end:
            continue
        assert reader.read(fh, offset, 4096) == data[offset:offset + 4096]
        touched.update({offset // CHUNK, (offset + 4095) // CHUNK})
        previous_end = offset + 4096
    assert reader.stats()["fetched_bytes"] == len(touched) * CHUNK
    assert downloads(drive_server) <= len(touched)


def test_changed_file_on_the_server_is_read_fresh(client, drive_server: DriveServer,
                                                  make_reader: ReaderFactory,
                                                  options: dict[str, object]) -> None:
    old = pattern(600 * KiB, seed=4)
    node_id, md5 = upload(client, "changing.bin", old)
    reader = make_reader(pinned(client), **options)
    fh = reader.open(node_id, md5, len(old))
    assert read_all(reader, fh, len(old)) == old
    reader.release(fh)
    new = pattern(700 * KiB, seed=5)
    node = client.overwrite_stream(io.BytesIO(new), node_id)
    new_md5 = node["contentProperties"]["md5"]
    assert new_md5 != md5
    fh = reader.open(node_id, new_md5, len(new))
    assert read_all(reader, fh, len(new)) == new


def test_unknown_node_raises_the_clients_error_unchanged(client, make_reader: ReaderFactory,
                                                         options: dict[str, object]) -> None:
    reader = make_reader(pinned(client), **options)
    fh = reader.open("A" * 22, "nomd5", 1000)
    with pytest.raises(RequestError) as raised:
        reader.read(fh, 0, 100)
    assert isinstance(raised.value, NotFound)


def test_concurrent_readers_share_downloads(client, drive_server: DriveServer, make_reader: ReaderFactory,
                                            options: dict[str, object]) -> None:
    data = pattern(4 * MiB, seed=6)
    node_id, md5 = upload(client, "shared.bin", data)
    reader = make_reader(pinned(client), **{**options, "memory_cache": 16 * MiB})
    drive_server.stats.reset()
    errors: list[BaseException] = []

    def read(i: int) -> None:
        try:
            fh = reader.open(node_id, md5, len(data))
            assert read_all(reader, fh, len(data), step=(i + 1) * 50 * KiB) == data
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    # no byte downloaded twice: one fetch in flight per chunk, the rest from memory
    assert reader.stats()["fetched_bytes"] == len(data)


class TestStoppedServer:
    """The server stops answering: cached data is still served, uncached reads fail with EIO."""

    def test_cached_reads_work_and_uncached_fail_with_eio(self, client, drive_server: DriveServer,
                                                          make_reader: ReaderFactory,
                                                          options: dict[str, object]) -> None:
        data = pattern(2 * MiB, seed=7)
        node_id, md5 = upload(client, "offline.bin", data)
        reader = make_reader(pinned(client), **{**options, "timeout": 0.5, "read_ahead": 0})
        fh = reader.open(node_id, md5, len(data))
        assert reader.read(fh, 0, CHUNK) == data[:CHUNK]
        # every answer now takes far longer than the read timeout
        drive_server.faults.configure(latency_ms=3000)
        try:
            assert reader.read(fh, 10, 1000) == data[10:1010]
            with pytest.raises(OSError) as raised:
                reader.read(fh, MiB, 100)
            assert raised.value.errno == errno.EIO
        finally:
            drive_server.faults.configure(latency_ms=0)
        # the server answers again: the very same read succeeds (once the slow answer arrived)
        for _attempt in range(60):
            try:
                assert reader.read(fh, MiB, 100) == data[MiB:MiB + 100]
                break
            except OSError as exc:
                assert exc.errno == errno.EIO
        else:
            pytest.fail("the read never recovered after the server came back")


def test_flaky_server_never_yields_wrong_bytes(client, drive_server: DriveServer, make_reader: ReaderFactory,
                                               options: dict[str, object]) -> None:
    data = pattern(3 * MiB, seed=8)
    node_id, md5 = upload(client, "flaky.bin", data)
    reader = make_reader(pinned(client), **options)
    fh = reader.open(node_id, md5, len(data))
    drive_server.faults.configure(error_rate=0.2, cut_rate=0.2, seed=3)
    try:
        offset = 0
        failures = 0
        while offset < len(data):
            try:
                got = reader.read(fh, offset, 100 * KiB)
            except RequestError:
                failures += 1  # the client gave up on one range: the caller may simply retry
                assert failures < 50
                continue
            assert got == data[offset:offset + len(got)]
            offset += len(got)
    finally:
        drive_server.faults.configure(error_rate=0.0, cut_rate=0.0)
    assert reader.stats()["fetched_bytes"] >= len(data)
