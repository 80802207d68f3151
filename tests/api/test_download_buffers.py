"""download_chunk's buffers: a plain call hands out a bytearray of its own, never used again; a pooled
call hands out a read-only view, and its buffer takes another body only after every view of it is gone."""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys

import pytest
from api_helpers import pattern_bytes, put_file

from acdfuse.api.client import ACDClient
from acdfuse.api.common import RequestError

MiB = 1024 * 1024


def test_a_plain_download_is_a_bytearray_of_its_own(client: ACDClient) -> None:
    data = pattern_bytes(4 * MiB, seed=2)
    node = put_file(client, "a.bin", data)
    first = client.download_chunk(node["id"], 0, 2 * MiB)
    first_id = id(first)
    assert type(first) is bytearray and first == data[:2 * MiB]
    for _ in range(3):
        other = client.download_chunk(node["id"], 2 * MiB, 2 * MiB)
        assert type(other) is bytearray and other == data[2 * MiB:]
        del other
        gc.collect()
    assert id(first) == first_id and first == data[:2 * MiB]    # nobody wrote into the held result


def test_a_view_or_a_slice_of_it_keeps_its_buffer_from_reuse(client: ACDClient) -> None:
    data = pattern_bytes(6 * MiB, seed=3)
    node = put_file(client, "b.bin", data)
    first = client.download_chunk(node["id"], 0, 2 * MiB, pooled=True)
    assert type(first) is memoryview and first.readonly and first == data[:2 * MiB]
    piece = client.download_chunk(node["id"], 2 * MiB, 2 * MiB, pooled=True)[10:20]   # the view itself is gone
    gc.collect()
    for _ in range(3):
        other = client.download_chunk(node["id"], 4 * MiB, 2 * MiB, pooled=True)
        assert other.obj is not first.obj and other.obj is not piece.obj
        assert other == data[4 * MiB:]
        del other
        gc.collect()
    assert first == data[:2 * MiB]
    assert piece == data[2 * MiB + 10:2 * MiB + 20]


def test_a_released_buffer_carries_the_next_body_correctly(client: ACDClient) -> None:
    data = pattern_bytes(4 * MiB + 5, seed=4)
    node = put_file(client, "c.bin", data)
    seen: set[int] = set()
    for rnd in range(6):
        offset = (rnd % 2) * 2 * MiB
        view = client.download_chunk(node["id"], offset, 2 * MiB, pooled=True)
        assert view == data[offset:offset + 2 * MiB]
        seen.add(id(view.obj))
        if rnd % 3 == 0:
            view.release()          # an explicit release frees the buffer as dropping the view does
        del view
        gc.collect()
    # released buffers are taken again rather than a fresh one per call
    assert len(seen) < 6
    tail = client.download_chunk(node["id"], 4 * MiB, 2 * MiB, pooled=True)  # a short answer at the end
    assert tail == data[4 * MiB:] and tail.nbytes == 5


def test_a_failed_pooled_download_hands_out_nothing(client: ACDClient) -> None:
    data = pattern_bytes(2 * MiB, seed=5)
    node = put_file(client, "d.bin", data)
    held = client.download_chunk(node["id"], 0, 2 * MiB, pooled=True)
    with pytest.raises(RequestError):   # past the end: 416
        client.download_chunk(node["id"], 3 * MiB, 2 * MiB, pooled=True)
    again = client.download_chunk(node["id"], 0, 2 * MiB, pooled=True)
    assert again.obj is not held.obj and again == held == data


def test_importing_the_client_changes_no_ctypes_symbol() -> None:
    """The uninitialised-bytearray maker has its own prototype, built on first use (issue 9)."""
    code = (
        "import ctypes\n"
        "f = ctypes.pythonapi.PyByteArray_FromStringAndSize\n"
        "before = (f.restype, f.argtypes)\n"
        "import acdfuse.api.client, acdfuse.api.content as c\n"
        "assert (f.restype, f.argtypes) == before, 'changed at import'\n"
        "b = c._uninitialised(1 << 20)\n"
        "assert type(b) is bytearray and len(b) == 1 << 20\n"
        "assert (f.restype, f.argtypes) == before, 'changed on first use'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert ctypes.pythonapi.PyByteArray_FromStringAndSize.restype is ctypes.c_int
