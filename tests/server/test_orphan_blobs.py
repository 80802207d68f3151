"""Start-up sweep of orphan blob files (left by a kill between a blob's rename and the DB commit).

Only files that predate the start and that no node references go; the content of every committed
node stays downloadable.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from acdfuse.server import DriveServer, ServerConfig

from .conftest import RawDrive


def _age(path: Path, seconds: float = 3600) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_orphans_older_than_the_start_are_removed_referenced_blobs_stay(tmp_path: Path) -> None:
    cfg = ServerConfig(data_dir=tmp_path / "data", port=0)
    with DriveServer(cfg) as srv:
        assert srv.blob_sweep_done.wait(60)
        api = RawDrive(srv, srv.access_token())
        kept = api.upload("kept.bin", b"keep me" * 1000)
        replaced = api.upload("replaced.bin", b"old content")
        assert api.overwrite(replaced["id"], b"new content").status_code == 200
        api.close()
        # what a kill between the rename and the commit leaves: a durable blob no node names
        orphan, _ = srv.blobs.write_bytes(b"never committed")
        blob_files = {p.name: p for p in (tmp_path / "data" / "blobs").glob("*/*")}
    assert orphan in blob_files and len(blob_files) == 3  # kept, replaced's new content, the orphan
    for p in blob_files.values():
        _age(p)  # every file is old now: only the references tell the orphan apart
    with DriveServer(cfg) as srv:
        assert srv.blob_sweep_done.wait(60)
        left = {p.name for p in (tmp_path / "data" / "blobs").glob("*/*")}
        assert left == set(blob_files) - {orphan}
        api = RawDrive(srv, srv.access_token())
        assert api.download(kept["id"]).content == b"keep me" * 1000
        assert api.download(replaced["id"]).content == b"new content"
        api.close()


def test_unreferenced_blob_newer_than_the_start_is_kept(tmp_path: Path) -> None:
    """A blob written after the start may belong to an upload between its rename and its commit."""
    cfg = ServerConfig(data_dir=tmp_path / "data", port=0)
    with DriveServer(cfg) as srv:
        assert srv.blob_sweep_done.wait(60)
        fresh, _ = srv.blobs.write_bytes(b"upload in flight")
        assert srv.sweep_orphan_blobs() == 0
        assert srv.blobs.path(fresh).exists()
        _age(srv.blobs.path(fresh))
        assert srv.sweep_orphan_blobs() == 1
        assert not srv.blobs.path(fresh).exists()


def test_blob_files_and_dirs_are_private(drive_server: DriveServer, api: RawDrive) -> None:
    node = api.upload("private.bin", b"secret")
    data = Path(drive_server.config.data_dir)
    blob = next((data / "blobs").glob("*/*"))
    assert api.download(node["id"]).content == b"secret"
    for d in (data, data / "blobs", blob.parent, data / "tmp"):
        assert d.stat().st_mode & 0o077 == 0, d
    for f in (blob, data / "drive.sqlite3", data / "server.lock"):
        assert f.stat().st_mode & 0o077 == 0, f
