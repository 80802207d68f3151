"""Content blobs: one file per stored content version under ``<data>/blobs/xx/<blob id>``.

A new content is streamed into ``<data>/tmp``, hashed (md5) while it is written, fsynced and renamed
into place before the metadata transaction commits and before the client gets its 201/200, so a
completed upload survives ``kill -9``. Blobs are never shared between nodes or rewritten in place:
an overwrite writes a new blob and unlinks the old one after the commit, so a download that already
opened the old file keeps reading a consistent version.

A kill between the rename and the commit (or between an overwrite's commit and the unlink of the old
blob) leaves a file no node references. ``orphans()`` finds those after a restart: only files older than
this start (their mtime is before that of the fresh ``tmp`` dir, on the same filesystem clock), so an
upload of the running server that is between its rename and its commit is never taken for one.
Directories and files are private to the server's user (0700/0600): they hold the drive's contents.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_BLOB_ID = re.compile(r"[0-9a-f]{32}")


class BlobWriter:
    """Receives the bytes of one content part; ``commit()`` makes it durable and returns the blob id."""

    def __init__(self, store: BlobStore, limit: int) -> None:
        self._store = store
        self.blob_id = secrets.token_hex(16)
        self.tmp_path = store.tmp_dir / self.blob_id
        self._f = os.fdopen(os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        self._md5 = hashlib.md5(usedforsecurity=False)  # contentProperties.md5, not security
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
        final.parent.mkdir(mode=0o700, exist_ok=True)
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
        self.started_ns = 0  # mtime of the tmp dir made at open(): files older than it predate this start

    def open(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # leftovers of uploads that never completed (server killed mid-upload) are garbage
        if self.tmp_dir.exists():
            shutil.rmtree(self.tmp_dir)
        self.tmp_dir.mkdir(mode=0o700, parents=True)
        self.started_ns = os.stat(self.tmp_dir).st_mtime_ns

    def orphans(self, referenced: Callable[[str], set[str]]) -> Iterator[str]:
        """Blob ids on disk that predate this start and that ``referenced(prefix)`` does not name.

        ``referenced`` returns the blob ids of committed nodes starting with a two-hex-digit prefix, so
        memory stays at one directory's worth even for millions of blobs.
        """
        for sub in sorted(self.root.iterdir()):
            if not (sub.is_dir() and len(sub.name) == 2):
                continue
            # only names this store makes; anything else there is not ours to delete
            names = [e.name for e in os.scandir(sub)
                     if e.is_file(follow_symlinks=False) and _BLOB_ID.fullmatch(e.name)]
            if not names:
                continue
            known = referenced(sub.name)
            for name in names:
                if name in known:
                    continue
                try:
                    mtime = os.stat(sub / name).st_mtime_ns
                except FileNotFoundError:
                    continue  # purged meanwhile
                if mtime < self.started_ns:
                    yield name

    def path(self, blob_id: str) -> Path:
        # blob ids are made here (secrets.token_hex) and read back from the database, never taken
        # from a request; the check keeps it so even if a caller got that wrong
        if not _BLOB_ID.fullmatch(blob_id):
            raise ValueError(f"not a blob id: {blob_id[:40]!r}")
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
