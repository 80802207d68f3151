"""download_chunk's buffers: a held result is never overwritten; a released one may carry the next body."""

from __future__ import annotations

import gc

from api_helpers import pattern_bytes, put_file

from acdfuse.api.client import ACDClient

MiB = 1024 * 1024


def test_a_held_buffer_or_a_view_of_it_is_never_reused(client: ACDClient) -> None:
    data = pattern_bytes(6 * MiB, seed=3)
    node = put_file(client, "b.bin", data)
    first = client.download_chunk(node["id"], 0, 2 * MiB)
    view = memoryview(client.download_chunk(node["id"], 2 * MiB, 2 * MiB))[10:20]
    for _ in range(3):
        other = client.download_chunk(node["id"], 4 * MiB, 2 * MiB)
        assert other is not first and other is not view.obj
        assert other == data[4 * MiB:]
    assert first == data[:2 * MiB]
    assert view == data[2 * MiB + 10:2 * MiB + 20]


def test_a_released_buffer_carries_the_next_body_correctly(client: ACDClient) -> None:
    data = pattern_bytes(4 * MiB + 5, seed=4)
    node = put_file(client, "c.bin", data)
    seen: set[int] = set()
    for rnd in range(6):
        offset = (rnd % 2) * 2 * MiB
        buf = client.download_chunk(node["id"], offset, 2 * MiB)
        assert type(buf) is bytearray and buf == data[offset:offset + 2 * MiB]
        seen.add(id(buf))
        del buf
        gc.collect()
    # released buffers are taken again rather than a fresh one per call
    assert len(seen) < 6
    tail = client.download_chunk(node["id"], 4 * MiB, 2 * MiB)  # a short answer at the end of the file
    assert tail == data[4 * MiB:]
