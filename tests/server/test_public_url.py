"""Addresses a server hands out: ``public_url``, and the Host header when bound to all interfaces.

A client on another machine follows discovery (``account/endpoint``) and tempLinks; neither may send
it to its own loopback. Bound to loopback, answers never depend on the Host header.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from acdfuse.server import DriveServer, ServerConfig
from acdfuse.server.server import is_loopback


@pytest.fixture
def wildcard_server(tmp_path: Path) -> Iterator[DriveServer]:
    srv = DriveServer(ServerConfig(data_dir=tmp_path / "data", host="0.0.0.0", port=0))
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


def _endpoint(srv: DriveServer, host: str | None = None) -> dict[str, str]:
    headers = {"Authorization": "Bearer " + srv.access_token()}
    if host is not None:
        headers["Host"] = host
    r = requests.get(f"http://127.0.0.1:{srv.port}/drive/v1/account/endpoint", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    data: dict[str, str] = r.json()
    return data


def test_wildcard_bind_answers_discovery_with_the_host_header(wildcard_server: DriveServer) -> None:
    port = wildcard_server.port
    assert wildcard_server.exposed
    ep = _endpoint(wildcard_server, f"myserver.lan:{port}")
    assert ep["metadataUrl"] == f"http://myserver.lan:{port}/drive/v1/"
    assert ep["contentUrl"] == f"http://myserver.lan:{port}/cdproxy/"
    assert (
        _endpoint(wildcard_server, f"[fe80::1]:{port}")["metadataUrl"] == f"http://[fe80::1]:{port}/drive/v1/"
    )


@pytest.mark.parametrize("bad", ["evil.example/x?", "a b", "host:port", "", "[zz]:1"])
def test_malformed_host_header_falls_back_to_base_url(wildcard_server: DriveServer, bad: str) -> None:
    assert _endpoint(wildcard_server, bad)["metadataUrl"] == wildcard_server.base_url + "/drive/v1/"


def test_wildcard_credentials_use_loopback(wildcard_server: DriveServer, tmp_path: Path) -> None:
    wildcard_server.write_credentials(tmp_path / "c")
    base = json.loads((tmp_path / "c" / "acdfuse_server").read_text())["base_url"]
    assert base == f"http://127.0.0.1:{wildcard_server.port}"


def test_templink_follows_the_host_header(wildcard_server: DriveServer) -> None:
    port = wildcard_server.port
    s = requests.Session()
    s.headers["Authorization"] = "Bearer " + wildcard_server.access_token()
    local = f"http://127.0.0.1:{port}"
    files = {"metadata": (None, json.dumps({"name": "t.bin", "kind": "FILE"})), "content": ("x", b"abc")}
    node = s.post(local + "/cdproxy/nodes", files=files, timeout=30).json()
    r = s.get(
        local + f"/drive/v1/nodes/{node['id']}",
        params={"tempLink": "true"},
        headers={"Host": f"drive.example:{port}"},
        timeout=30,
    )
    assert r.json()["tempLink"].startswith(f"http://drive.example:{port}/cdproxy/templink/")


def test_public_url_is_used_for_discovery_and_credentials(tmp_path: Path) -> None:
    cfg = ServerConfig(
        data_dir=tmp_path / "data", host="0.0.0.0", port=0, public_url="https://drive.example/"
    )
    with DriveServer(cfg) as srv:
        assert srv.base_url == "https://drive.example"
        ep = _endpoint(srv, f"other.name:{srv.port}")  # the Host header no longer matters
        assert ep["metadataUrl"] == "https://drive.example/drive/v1/"
        assert ep["contentUrl"] == "https://drive.example/cdproxy/"
        srv.write_credentials(tmp_path / "c")
        written = json.loads((tmp_path / "c" / "endpoint_data").read_text())
        assert written["metadataUrl"] == "https://drive.example/drive/v1/"
        assert json.loads((tmp_path / "c" / "acdfuse_server").read_text()) == {
            "base_url": "https://drive.example"
        }


def test_loopback_bind_ignores_the_host_header(drive_server: DriveServer) -> None:
    assert not drive_server.exposed
    ep = _endpoint(drive_server, f"myserver.lan:{drive_server.port}")
    assert ep["metadataUrl"] == drive_server.base_url + "/drive/v1/"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.5", False),
        ("myhost.lan", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
