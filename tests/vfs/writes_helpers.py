"""Helpers of the write-side tests: the real stack below FUSE (client, store, reader, WriteSide).

Everything talks to the real server on a loopback port; a "remount" closes the WriteSide, the reader
and the store and opens new ones on the same cache dir, as a new mount process would.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from acdfuse.fs.remote import read_hooks, remote_for
from acdfuse.server import DriveServer
from acdfuse.store import Node, NodeStore
from acdfuse.vfs import ContentReader, ReaderOptions
from acdfuse.vfs.fetch import PinnedFetch
from acdfuse.vfs.options import WriteOptions
from acdfuse.vfs.upload import Remote
from acdfuse.vfs.writes import WriteHandle, WriteSide

KiB = 1024
MiB = 1024 * KiB


class WriteStack:
    """client + NodeStore + ContentReader + WriteSide over one cache dir."""

    def __init__(self, client: Any, server: DriveServer, cache: Path, opts: WriteOptions,
                 remote: Remote | None = None) -> None:
        self.client = client
        self.server = server
        self.cache = cache
        self.opts = opts
        self.remote = remote
        self.store: NodeStore | None = None
        self.reader: ContentReader | None = None
        self.ws: WriteSide | None = None

    def open(self, opts: WriteOptions | None = None, remote: Remote | None = None,
             sync: bool = True) -> WriteStack:
        """``sync=False``: serve the mirror as it is (an offline mount)."""
        self.cache.mkdir(parents=True, exist_ok=True)
        self.store = NodeStore(self.cache / "nodes.db")
        self.store.open()
        if sync:
            self.store.sync(self.client.get_changes)
        fetch = PinnedFetch(self.client.download_chunk, 10.0)
        self.reader = ContentReader(fetch, ReaderOptions(
            cache_dir=self.cache / "chunks", chunk_size=64 * KiB, memory_cache=4 * MiB, cache_size=64 * MiB,
            read_ahead=1 * MiB, initial_window=64 * KiB, read_ahead_budget=2 * MiB, request_size=256 * KiB,
            timeout=10.0))
        self.reader.start()
        self.ws = WriteSide(self.cache / "journal.db", self.cache / "spool", store=self.store,
                            remote=remote or self.remote or remote_for(self.client),
                            hooks=read_hooks(self.reader), opts=opts or self.opts,
                            max_file_size=lambda: int(self.client.max_file_size))
        self.ws.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        if self.ws is not None:
            self.ws.close(timeout)
        if self.reader is not None:
            self.reader.close()
        if self.store is not None:
            self.store.close()
        self.ws = self.reader = self.store = None

    def remount(self, opts: WriteOptions | None = None, remote: Remote | None = None,
                sync: bool = True) -> WriteStack:
        self.close()
        return self.open(opts, remote, sync)

    # ---- shortcuts -----------------------------------------------------------------------------
    @property
    def w(self) -> WriteSide:
        assert self.ws is not None
        return self.ws

    @property
    def s(self) -> NodeStore:
        assert self.store is not None
        return self.store

    @property
    def root(self) -> Node:
        node = self.s.root()
        assert node is not None
        return node

    def upload(self, name: str, data: bytes, parent: str | None = None) -> Node:
        """A file put on the drive by "another client", then synced into the store."""
        answer = self.client.upload_stream(io.BytesIO(data), name, parent or self.root.id)
        return self.s.apply_local(answer)

    def node(self, path: str) -> Node:
        node = self.s.resolve(path)
        assert node is not None, path
        return node

    def write_file(self, name: str, data: bytes, parent: str | None = None) -> Node:
        """Create a pending new file with ``data`` and close it; returns its pending Node."""
        h = self.w.create(parent or self.root.id, name)
        self.w.write(h, 0, data)
        self.w.release(h)
        found = self.w.lookup_pending(parent or self.root.id, name)
        assert found is not None
        return found

    def server_bytes(self, node_id: str) -> bytes:
        return bytes(self.client.download_chunk(node_id, 0, 1 << 40)) if self.server_size(node_id) else b""

    def server_size(self, node_id: str) -> int:
        meta = self.client.get_metadata(node_id, temp_link=False)
        return int(meta["contentProperties"]["size"])

    def stats(self) -> dict[str, int]:
        return self.server.stats.snapshot()

    def read_all(self, h: WriteHandle) -> bytes:
        out = bytearray()
        while True:
            piece = self.w.read(h, len(out), 1 * MiB)
            if not piece:
                return bytes(out)
            out += piece


def wait_until(check: Any, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``check()`` until it is true (tests only: the code under test has its own waits)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


def leftover_spools(cache: Path) -> list[Path]:
    """Spool files that hold bytes: none once everything is uploaded or discarded (empty ones are
    made ahead for the next new files, see SpoolPool)."""
    return [p for p in (cache / "spool").iterdir() if p.stat().st_size > 0]
