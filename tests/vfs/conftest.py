"""Fixtures for the content read path: in-memory fetch callables and reader factories.

The in-memory ``MemoryDrive`` stands in for ``ACDClient.download_chunk`` where a test needs to
control timing or failures exactly (slow, hung, failing fetches); the server-backed tests use the
real client against the real server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vfs_helpers import KiB, MemoryDrive, MiB, ReaderFactory

from acdfuse.vfs import ContentReader, ReaderOptions


@pytest.fixture
def drive() -> MemoryDrive:
    return MemoryDrive()


@pytest.fixture
def make_reader(tmp_path: Path) -> Iterator[ReaderFactory]:
    """make_reader(fetch, **option overrides) -> a started ContentReader, closed at teardown.

    Defaults are small so that edge cases are cheap: 64 KiB chunks, 1 MiB read-ahead.
    Pass ``cache_dir=None`` for memory only; the default disk tier lives in tmp_path/cache.
    """
    readers: list[ContentReader] = []
    defaults = dict(cache_dir=tmp_path / "cache", chunk_size=64 * KiB, memory_cache=4 * MiB,
                    cache_size=16 * MiB, read_ahead=1 * MiB, initial_window=64 * KiB,
                    read_ahead_budget=2 * MiB, request_size=256 * KiB, streams=4, timeout=10.0)

    def factory(fetch: Callable[[str, int, int, str], bytes | bytearray], **overrides: object) -> ContentReader:
        reader = ContentReader(fetch, ReaderOptions(**{**defaults, **overrides}))  # type: ignore[arg-type]
        reader.start()
        readers.append(reader)
        return reader

    yield factory
    for reader in readers:
        reader.close()
