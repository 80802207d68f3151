"""acd_cli 0.3.2, unchanged, against ``acdfuse serve``: sync, ls, upload, download, overwrite, trash, restore.

Contents are checked on both sides: what acd_cli uploads is read back through the server, and what
acd_cli downloads is compared with the local originals.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from acdfuse.server import DriveServer

from .conftest import AcdCli

pytestmark = pytest.mark.peer


def _server_node(srv: DriveServer, path: str) -> dict:
    """Resolve an absolute path through the server's own API (names are exact here)."""
    acc = srv.account()
    node_id = acc.root
    for name in [p for p in path.split("/") if p]:
        page = srv.drive.list_nodes(acc, {"filters": f'name:"{name}"'}, parent=node_id).to_dict()
        matches = [n for n in page["data"] if n["name"] == name]
        assert matches, f"{path}: {name} not found on the server"
        node_id = matches[0]["id"]
    return srv.drive.node(acc, node_id)


def _resolve(acd_cli: AcdCli, path: str) -> str:
    out = acd_cli.run("resolve", path).stdout.strip()  # acd_cli prints Node('<id>', '<name>')
    m = re.search(r"[A-Za-z0-9_-]{22}", out)
    assert m, out
    return m.group(0)


def _server_content(srv: DriveServer, node: dict) -> bytes:
    row = srv.drive.row(srv.account(), node["id"])
    return srv.blobs.path(row["blob"]).read_bytes() if row["blob"] else b""


def test_acd_cli_round_trip(acd_cli: AcdCli, drive_server: DriveServer, tmp_path: Path) -> None:
    local = tmp_path / "local"
    (local / "tree" / "sub").mkdir(parents=True)
    small = b"hello from acd_cli\n"
    (local / "hello.txt").write_bytes(small)
    big = os.urandom(3 * 1024 * 1024 + 17)
    (local / "big.bin").write_bytes(big)
    (local / "tree" / "one.txt").write_bytes(b"one")
    (local / "tree" / "sub" / "two.txt").write_bytes(b"two two")

    acd_cli.run("sync")
    acd_cli.run("mkdir", "/peer")
    acd_cli.run("upload", str(local / "hello.txt"), str(local / "big.bin"), str(local / "tree"), "/peer")

    # the server holds exactly what acd_cli sent
    hello = _server_node(drive_server, "/peer/hello.txt")
    assert hello["contentProperties"]["md5"] == hashlib.md5(small).hexdigest()
    assert _server_content(drive_server, hello) == small
    assert _server_content(drive_server, _server_node(drive_server, "/peer/big.bin")) == big
    assert _server_content(drive_server, _server_node(drive_server, "/peer/tree/sub/two.txt")) == b"two two"

    acd_cli.run("sync")
    listing = acd_cli.run("ls", "/peer").stdout
    for name in ("hello.txt", "big.bin", "tree"):
        assert name in listing, listing
    assert "two.txt" in acd_cli.run("ls", "/peer/tree/sub").stdout

    # download a file and a folder and compare with the originals
    out = tmp_path / "out"
    out.mkdir()
    acd_cli.run("download", "/peer/big.bin", str(out))
    acd_cli.run("download", "/peer/tree", str(out))
    assert (out / "big.bin").read_bytes() == big
    assert (out / "tree" / "one.txt").read_bytes() == b"one"
    assert (out / "tree" / "sub" / "two.txt").read_bytes() == b"two two"

    # overwrite takes a node id
    node_id = _resolve(acd_cli, "/peer/hello.txt")
    assert node_id == hello["id"]
    new = b"overwritten content, longer than before\n"
    (local / "new.txt").write_bytes(new)
    acd_cli.run("overwrite", node_id, str(local / "new.txt"))
    after = _server_node(drive_server, "/peer/hello.txt")
    assert after["contentProperties"]["version"] == 2 and after["version"] > hello["version"]
    assert _server_content(drive_server, after) == new
    acd_cli.run("sync")
    (out / "hello.txt").unlink(missing_ok=True)
    acd_cli.run("download", "/peer/hello.txt", str(out))
    assert (out / "hello.txt").read_bytes() == new

    # trash, then restore
    acd_cli.run("trash", "/peer/hello.txt")
    assert drive_server.drive.node(drive_server.account(), node_id)["status"] == "TRASH"
    acd_cli.run("sync")
    assert "hello.txt" not in acd_cli.run("ls", "/peer").stdout
    acd_cli.run("restore", node_id)
    assert drive_server.drive.node(drive_server.account(), node_id)["status"] == "AVAILABLE"
    acd_cli.run("sync")
    assert "hello.txt" in acd_cli.run("ls", "/peer").stdout

    # list-trash (offline, from acd_cli's synced cache) shows trashed top-level nodes
    acd_cli.run("upload", str(local / "tree" / "one.txt"), "/")
    acd_cli.run("trash", "/one.txt")
    acd_cli.run("sync")
    assert "one.txt" in acd_cli.run("list-trash").stdout
    assert "one.txt" not in acd_cli.run("ls", "/").stdout


def test_acd_cli_sees_server_side_changes(acd_cli: AcdCli, drive_server: DriveServer) -> None:
    """Changes made by another client arrive through acd_cli's incremental sync."""
    acd_cli.run("sync")
    tree = drive_server.generate_tree(n_nodes=300, fanout=30, folders_per_folder=3, prefix="gen")
    acd_cli.run("sync")
    top = acd_cli.run("ls", "/").stdout
    assert "gend1" in top and "gend3" in top
    deep = "/" + tree.deepest_path
    assert _resolve(acd_cli, deep) == tree.deepest_id


def test_acd_cli_empty_file_rename_move(acd_cli: AcdCli, drive_server: DriveServer, tmp_path: Path) -> None:
    """Zero-byte uploads (acd_cli sends them through a different call), rename and move."""
    (tmp_path / "empty.txt").write_bytes(b"")
    acd_cli.run("sync")
    acd_cli.run("mkdir", "/a")
    acd_cli.run("mkdir", "/b")
    acd_cli.run("upload", str(tmp_path / "empty.txt"), "/a")
    node = _server_node(drive_server, "/a/empty.txt")
    assert node["contentProperties"]["size"] == 0
    assert node["contentProperties"]["md5"] == "d41d8cd98f00b204e9800998ecf8427e"
    acd_cli.run("sync")
    node_id = _resolve(acd_cli, "/a/empty.txt")
    acd_cli.run("rename", node_id, "renamed.txt")
    acd_cli.run("move", node_id, _resolve(acd_cli, "/b"))
    assert _server_node(drive_server, "/b/renamed.txt")["id"] == node_id
    acd_cli.run("sync")
    assert "renamed.txt" in acd_cli.run("ls", "/b").stdout
    assert "renamed.txt" not in acd_cli.run("ls", "/a").stdout
    out = tmp_path / "out"
    out.mkdir()
    acd_cli.run("download", "/b/renamed.txt", str(out))
    assert (out / "renamed.txt").read_bytes() == b""
