"""Helpers of the vfs tests: deterministic data, an in-memory fetch callable, read loops."""

from __future__ import annotations

import threading
from collections.abc import Callable

from acdfuse.vfs import ContentReader

KiB = 1024
MiB = 1024 * KiB


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes where every 4-byte word encodes its own offset (mix-ups show up)."""
    words = (size + 3) // 4
    out = bytearray(words * 4)
    view = memoryview(out).cast("I")
    for i in range(words):
        view[i] = (i * 2654435761 + seed) & 0xFFFFFFFF
    view.release()
    return bytes(out[:size])


class FetchFailed(Exception):
    """What a failing in-memory fetch raises (stands in for a RequestError subclass)."""


class MemoryDrive:
    """A fetch callable over in-memory files, with a call log and hooks for timing/failures."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.calls: list[tuple[str, int, int]] = []
        self.keys: list[tuple[str, str]] = []   # (node id, content key) of every call
        self.lock = threading.Condition()
        self.active = 0
        self.max_active = 0
        self.active_bytes = 0
        self.max_active_bytes = 0
        # hook(node_id, offset, length) runs inside every call, before the data is returned
        self.hook: Callable[[str, int, int], None] | None = None

    def add(self, node_id: str, data: bytes) -> None:
        self.files[node_id] = data

    def __call__(self, node_id: str, offset: int, length: int, content_key: str = "") -> bytearray:
        with self.lock:
            self.calls.append((node_id, offset, length))
            self.keys.append((node_id, content_key))
            self.active += 1
            self.active_bytes += length
            self.max_active = max(self.max_active, self.active)
            self.max_active_bytes = max(self.max_active_bytes, self.active_bytes)
            self.lock.notify_all()
        try:
            if self.hook is not None:
                self.hook(node_id, offset, length)
            data = self.files[node_id]
            return bytearray(data[offset:offset + length])
        finally:
            with self.lock:
                self.active -= 1
                self.active_bytes -= length

    def calls_for(self, node_id: str) -> list[tuple[int, int]]:
        with self.lock:
            return [(off, ln) for nid, off, ln in self.calls if nid == node_id]

    def fetched_chunks(self, node_id: str, chunk: int) -> list[int]:
        """Chunk indices covered by fetches of ``node_id``, with repeats."""
        out: list[int] = []
        for off, ln in self.calls_for(node_id):
            out.extend(range(off // chunk, (off + ln - 1) // chunk + 1))
        return out


ReaderFactory = Callable[..., ContentReader]


def read_all(reader: ContentReader, fh: int, size: int, step: int = 128 * KiB) -> bytes:
    parts = []
    offset = 0
    while True:
        data = reader.read(fh, offset, step)
        if not data:
            break
        parts.append(data)
        offset += len(data)
    assert offset == size
    return b"".join(parts)
