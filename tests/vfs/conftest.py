"""Fixtures for the content read path: in-memory fetch callables and reader factories.

The in-memory ``MemoryDrive`` stands in for ``ACDClient.download_chunk`` where a test needs to
control timing or failures exactly (slow, hung, failing fetches); the server-backed tests use the
real client against the real server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from vfs_helpers import KiB, MemoryDrive, MiB, ReaderFactory
from writes_helpers import WriteStack

from acdfuse.vfs import ContentReader, ReaderOptions
from acdfuse.vfs.options import WriteOptions


@pytest.fixture
def drive() -> MemoryDrive:
    return MemoryDrive()


@pytest.fixture
def make_reader(tmp_path: Path) -> Iterator[ReaderFactory]:
    """make_reader(fetch, **option overrides) -> a started ContentReader, closed at teardown.

    Defaults are small so that edge cases are cheap: 64 KiB chunks, 1 MiB read-ahead.
    Pass ``cache_dir=None`` for memory only; the default disk tier lives in tmp_path/cache.
    The first-read head fetch is off (``head_size=0``): these tests count whole-chunk fetches;
    test_vfs_head.py turns it on.
    """
    readers: list[ContentReader] = []
    defaults = dict(cache_dir=tmp_path / "cache", chunk_size=64 * KiB, memory_cache=4 * MiB,
                    cache_size=16 * MiB, read_ahead=1 * MiB, initial_window=64 * KiB,
                    read_ahead_budget=2 * MiB, request_size=256 * KiB, streams=4, timeout=10.0,
                    head_size=0)

    def factory(fetch: Callable[[str, int, int, str], bytes | bytearray], **overrides: object) -> ContentReader:
        reader = ContentReader(fetch, ReaderOptions(**{**defaults, **overrides}))  # type: ignore[arg-type]
        reader.start()
        readers.append(reader)
        return reader

    yield factory
    for reader in readers:
        reader.close()


@pytest.fixture
def write_opts() -> WriteOptions:
    """Short delays so the tests do not wait; override in a module for other settings."""
    return WriteOptions(upload_delay=0.2, retry_first=0.1, retry_cap=0.5, workers=2)


@pytest.fixture
def wstack(client, drive_server, tmp_path: Path, write_opts: WriteOptions) -> Iterator[WriteStack]:  # type: ignore[no-untyped-def]
    """The real stack below FUSE over tmp_path/cache, opened; closed at teardown."""
    stack = WriteStack(client, drive_server, tmp_path / "cache", write_opts)
    stack.open()
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def make_client(cdir: Path) -> Iterator[Callable[..., Any]]:
    """More clients on the server's config dir (e.g. with a short retry deadline); closed at the end."""
    from acdfuse.api.client import ACDClient

    made: list[ACDClient] = []

    def make(**kwargs: Any) -> ACDClient:
        c = ACDClient(str(cdir), **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
