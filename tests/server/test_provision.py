"""``acdfuse serve --credentials-only``: a client config for a data dir, also while a server runs on it.

The provisioning process writes through the shared database and starts no listener; the running
server must accept its tokens, and a new account's tree and ``changes`` must behave as if the server
had made the account itself.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import requests

from acdfuse.server import DriveServer, ServerConfig

from .conftest import RawDrive


def _provision(data: Path, cdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "acdfuse",
            "serve",
            "--data",
            str(data),
            "--credentials-only",
            "--credentials-out",
            str(cdir),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _client(srv: DriveServer, cdir: Path) -> RawDrive:
    token = json.loads((cdir / "oauth_data").read_text())["access_token"]
    return RawDrive(srv, token)


def test_new_account_while_the_server_runs(drive_server: DriveServer, tmp_path: Path) -> None:
    data = Path(drive_server.config.data_dir)
    alice = RawDrive(drive_server, drive_server.access_token())  # the default account exists and is busy
    alice.mkdir("alice-dir")
    cdir = tmp_path / "bob"
    r = _provision(data, cdir, "--account", "bob", "--token-lifetime", "7200")
    assert r.returncode == 0, r.stderr
    assert "bob" in r.stdout and str(cdir) in r.stdout
    assert drive_server.open_connections <= 1  # no second listener: only alice's keep-alive, if any
    files = {p.name: p for p in cdir.iterdir()}
    assert set(files) == {"endpoint_data", "oauth_data", "client_data", "acdfuse_server"}
    for p in files.values():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert json.loads(files["acdfuse_server"].read_text()) == {"base_url": drive_server.base_url}
    assert (
        json.loads(files["endpoint_data"].read_text())["metadataUrl"] == drive_server.base_url + "/drive/v1/"
    )
    assert json.loads(files["oauth_data"].read_text())["expires_in"] == 7200
    client = json.loads(files["client_data"].read_text())
    assert client == {
        "CLIENT_ID": drive_server.auth.client_id,
        "CLIENT_SECRET": drive_server.auth.client_secret,
    }

    bob = _client(drive_server, cdir)
    # the first dump of the new account holds its root (its change number is not beyond the server's)
    first = bob.changes()
    assert [n["id"] for o in first[:-1] for n in o["nodes"]] == [bob.root]
    assert first[-1] == {"end": True}
    checkpoint = first[-2]["checkpoint"]
    # the accounts are isolated, and bob's tree works as any other
    assert bob.get(f"nodes/{alice.root}").status_code == 404
    assert [n["name"] for n in bob.list_all(f"nodes/{bob.root}/children")] == []
    folder = bob.mkdir("bob-dir")
    alice.mkdir("alice-dir-2")
    later = bob.changes({"checkpoint": checkpoint})
    assert [n["id"] for o in later[:-1] for n in o["nodes"]] == [folder["id"]]
    again = bob.changes()
    assert sorted(n["id"] for o in again[:-1] for n in o["nodes"]) == sorted([bob.root, folder["id"]])
    bob.close()
    alice.close()


def test_existing_account_keeps_its_old_tokens(drive_server: DriveServer, tmp_path: Path) -> None:
    drive_server.write_credentials(tmp_path / "c1")
    r = _provision(Path(drive_server.config.data_dir), tmp_path / "c2")
    assert r.returncode == 0, r.stderr
    one, two = _client(drive_server, tmp_path / "c1"), _client(drive_server, tmp_path / "c2")
    assert one.root == two.root
    made = two.mkdir("shared")
    assert one.get(f"nodes/{made['id']}").json()["name"] == "shared"
    one.close()
    two.close()


def test_new_account_in_an_empty_running_drive(tmp_path: Path) -> None:
    """No account at all yet: the root must still be part of the account's first dump."""
    with DriveServer(ServerConfig(data_dir=tmp_path / "data", port=0)) as srv:
        assert _provision(tmp_path / "data", tmp_path / "c", "--account", "first").returncode == 0
        c = _client(srv, tmp_path / "c")
        dump = c.changes()
        assert [n["id"] for o in dump[:-1] for n in o["nodes"]] == [c.root]
        folder = c.mkdir("x")
        after = c.changes({"checkpoint": dump[-2]["checkpoint"]})
        assert [n["id"] for o in after[:-1] for n in o["nodes"]] == [folder["id"]]
        c.close()


def test_without_a_running_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = _provision(data, tmp_path / "c", "--port", "0")
    assert r.returncode == 2 and "--port" in r.stderr and not (tmp_path / "c").exists()
    r = _provision(data, tmp_path / "c", "--port", "18765", "--account", "carol")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "c" / "acdfuse_server").read_text()) == {
        "base_url": "http://127.0.0.1:18765"
    }
    # the server started later on that data dir accepts the token
    with DriveServer(ServerConfig(data_dir=data, port=0)) as srv:
        c = _client(srv, tmp_path / "c")
        assert c.mkdir("hello")["name"] == "hello"
        assert srv.account("carol").root == c.root
        c.close()


def test_public_url_overrides_the_running_servers_url(drive_server: DriveServer, tmp_path: Path) -> None:
    r = _provision(Path(drive_server.config.data_dir), tmp_path / "c", "--public-url", "http://nas.lan:9000")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "c" / "acdfuse_server").read_text()) == {"base_url": "http://nas.lan:9000"}
    h = {"Authorization": "Bearer " + json.loads((tmp_path / "c" / "oauth_data").read_text())["access_token"]}
    assert (
        requests.get(drive_server.base_url + "/drive/v1/account/info", headers=h, timeout=30).status_code
        == 200
    )


def test_busy_data_dir_hints_at_credentials_only(drive_server: DriveServer, tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "acdfuse",
            "serve",
            "--data",
            str(drive_server.config.data_dir),
            "--port",
            "0",
            "--credentials-out",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 1
    assert "in use by another acdfuse server" in r.stderr and drive_server.base_url in r.stderr
    assert "--credentials-only" in r.stderr


def test_credentials_only_needs_credentials_out(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "acdfuse", "serve", "--data", str(tmp_path), "--credentials-only"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2 and "--credentials-out" in r.stderr
