"""Helpers shared by the api tests (imported as ``api_helpers``; a unique name across test dirs)."""

from __future__ import annotations

import io
from collections.abc import Callable

from acdfuse.api.client import ACDClient


def put_file(client: ACDClient, name: str, data: bytes, parent: str | None = None) -> dict:
    return client.upload_stream(io.BytesIO(data), name, parent)


class PatternReader(io.RawIOBase):
    """A non-seekable stream of ``size`` deterministic bytes, produced on the fly (constant memory)."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self.remaining = size
        block = bytes((seed * 31 + i * 7) % 251 for i in range(65536))
        self._block = block

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = min(len(b), self.remaining, len(self._block))
        b[:n] = self._block[:n]
        self.remaining -= n
        return n


def pattern_bytes(size: int, seed: int = 7) -> bytes:
    out = bytearray()
    r = PatternReader(size, seed)
    while chunk := r.read(65536):
        out += chunk
    return bytes(out)


MakeClient = Callable[..., ACDClient]
"""type of the ``make_client`` fixture"""
