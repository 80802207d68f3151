"""Content blobs: one file per stored content version under ``<data>/blobs/xx/<blob id>``.

A new content is streamed into ``<data>/tmp``, hashed (md5) while it is written, fsynced and renamed
into place before the metadata transaction commits and before the client gets its 201/200, so a
completed upload survives ``kill -9``. Blobs are never shared between nodes or rewritten in place:
an overwrite writes a new blob and unlinks the old one after the commit, so a download that already
opened the old file keeps reading a consistent version.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


class BlobWriter:
    """Receives the bytes of one content part; ``commit()`` makes it durable and returns the blob id."""

    def __init__(self, store: BlobStore, limit: int) -> None:
        self._store = store
        self.blob_id = secrets.token_hex(16)
        self.tmp_path = store.tmp_dir / self.blob_id
        self._f = open(self.tmp_path, "wb")
        self._md5 = hashlib.md5()
        self._limit = limit
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self.size > self._limit:
            raise OverflowError(self.size)
        self._md5.update(data)
        self._f.write(data)

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    def commit(self) -> str:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        final = self._store.path(self.blob_id)
        final.parent.mkdir(exist_ok=True)
        os.rename(self.tmp_path, final)
        _fsync_dir(final.parent)
        return self.blob_id

    def discard(self) -> None:
        if not self._f.closed:
            self._f.close()
        try:
            self.tmp_path.unlink()
        except FileNotFoundError:
            pass


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "blobs"
        self.tmp_dir = root / "tmp"

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # leftovers of uploads that never completed (server killed mid-upload) are garbage
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)
        self.tmp_dir.mkdir(parents=True)

    def path(self, blob_id: str) -> Path:
        return self.root / blob_id[:2] / blob_id

    def writer(self, limit: int) -> BlobWriter:
        return BlobWriter(self, limit)

    def write_bytes(self, data: bytes) -> tuple[str, str]:
        """Store a small content at once (bulk generator, tests); returns (blob id, md5)."""
        w = self.writer(len(data))
        try:
            w.write(data)
            return w.commit(), w.md5
        except BaseException:
            w.discard()
            raise

    def delete(self, blob_id: str | None) -> None:
        if not blob_id:
            return
        try:
            self.path(blob_id).unlink()
        except FileNotFoundError:
            log.warning("blob %s was already gone", blob_id)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
