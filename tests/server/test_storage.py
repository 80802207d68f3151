"""Storage: schema migration, refusing a newer schema, restart keeps everything, bulk generator."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from acdfuse.server import DriveServer, ServerConfig
from acdfuse.server.db import SchemaError
from acdfuse.server.server import DataDirBusy

from .conftest import RawDrive


def test_restart_keeps_tree_and_migrates_schema_1(tmp_path: Path) -> None:
    cfg = ServerConfig(data_dir=tmp_path / "d", port=0)
    with DriveServer(cfg) as srv:
        api = RawDrive(srv, srv.access_token())
        a = api.mkdir("a")
        f = api.upload("f.txt", b"content", a["id"])
        api.put(f"nodes/{api.root}/children/{f['id']}")
        before = api.get(f"nodes/{f['id']}").json()
        api.close()
    # turn the file into a schema-1 database (no parents_json column)
    conn = sqlite3.connect(tmp_path / "d" / "drive.sqlite3")
    conn.execute("ALTER TABLE nodes DROP COLUMN parents_json")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema'")
    conn.commit()
    conn.close()
    with DriveServer(cfg) as srv:
        api = RawDrive(srv, srv.access_token())
        after = api.get(f"nodes/{f['id']}").json()
        assert sorted(after.pop("parents")) == sorted(before.pop("parents"))
        assert after == before
        assert api.download(f["id"]).content == b"content"
        api.close()


def test_one_server_per_data_dir(tmp_path: Path) -> None:
    cfg = ServerConfig(data_dir=tmp_path / "d", port=0)
    with DriveServer(cfg):
        second = DriveServer(cfg)
        with pytest.raises(DataDirBusy):
            second.start()
        second.close()
    with DriveServer(cfg) as again:  # free again after close
        assert again.port > 0


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    cfg = ServerConfig(data_dir=tmp_path / "d", port=0)
    with DriveServer(cfg):
        pass
    conn = sqlite3.connect(tmp_path / "d" / "drive.sqlite3")
    conn.execute("UPDATE meta SET value='99' WHERE key='schema'")
    conn.commit()
    conn.close()
    srv = DriveServer(cfg)
    with pytest.raises(SchemaError):
        srv.start()
    srv.close()


def test_generate_tree(api: RawDrive, drive_server: DriveServer) -> None:
    tree = drive_server.generate_tree(n_nodes=500, fanout=10, folders_per_folder=2, prefix="g")
    assert tree.nodes == 500 and tree.folders + tree.files == 500 and tree.root == api.root
    # the tree is visible through every API: listing, path walk, changes
    node = api.root
    for name in tree.deepest_path.split("/"):
        page = api.get("nodes", params={"filters": f"parents:{node} AND name:{name}"}).json()
        assert page["count"] == 1
        node = page["data"][0]["id"]
    assert node == tree.deepest_id
    ids = {n["id"] for o in api.changes() if "nodes" in o for n in o["nodes"]}
    assert len(ids) == 501
    # names directly under the target may not clash with existing ones
    with pytest.raises(Exception, match="already exists"):
        drive_server.generate_tree(n_nodes=5, fanout=5, folders_per_folder=1, prefix="g")
    # with content
    small = drive_server.generate_tree(
        n_nodes=4,
        fanout=4,
        folders_per_folder=1,
        file_size=1000,
        prefix="c",
        parent=api.mkdir("content")["id"],
    )
    files = [n for n in api.list_all("nodes", filters="kind:FILE AND name:c*")]
    assert len(files) == small.files == 3
    assert all(len(api.download(n["id"]).content) == 1000 for n in files)


def test_expired_trash_is_swept_at_start(tmp_path: Path) -> None:

    with DriveServer(ServerConfig(data_dir=tmp_path / "d", port=0)) as srv:
        api = RawDrive(srv, srv.access_token())
        f = api.upload("old.txt", b"x")
        api.put(f"trash/{f['id']}")
        api.close()
    # restarted with a retention the trashed file has already outlived
    with DriveServer(ServerConfig(data_dir=tmp_path / "d", port=0, trash_retention=0.0)) as srv:
        api = RawDrive(srv, srv.access_token())
        deadline = time.monotonic() + 10  # the sweeper thread runs right after start
        while api.get(f"nodes/{f['id']}").status_code != 404 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert api.get(f"nodes/{f['id']}").status_code == 404
        purged = [
            n for o in api.changes({"includePurged": "true", "checkpoint": "x"})[:-1] for n in o["nodes"]
        ]
        assert f["id"] not in {n["id"] for n in purged}  # a reset dump carries no tombstones
        api.close()


def test_short_retention_is_swept_while_running(tmp_path: Path) -> None:
    """A retention shorter than the hourly sweep is honoured without a restart (QA F17)."""
    assert DriveServer(ServerConfig(data_dir=tmp_path / "x", port=0)).sweep_interval == 3600
    with DriveServer(ServerConfig(data_dir=tmp_path / "d", port=0, trash_retention=0.3)) as srv:
        assert srv.sweep_interval == 0.3
        api = RawDrive(srv, srv.access_token())
        f = api.upload("soon-gone.txt", b"x")
        assert api.put(f"trash/{f['id']}").status_code == 200
        deadline = time.monotonic() + 30  # generous: only "long before an hour" matters
        while api.get(f"nodes/{f['id']}").status_code != 404 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert api.get(f"nodes/{f['id']}").status_code == 404
        api.close()
