"""acdfuse's extension of the overwrite: If-Match names the content version (contentProperties.version);
a mismatch is 412 with a JSON error body and changes nothing; metadata changes do not move that version.
Also the advertisement in the discovery answer, and a server with the extensions switched off."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from acdfuse.server import DriveServer, ServerConfig

from .conftest import RawDrive


def overwrite(api: RawDrive, node_id: str, data: bytes, if_match: str | None) -> requests.Response:
    files = {"content": ("ignored", data, "application/octet-stream")}
    headers = {} if if_match is None else {"If-Match": if_match}
    return api.s.put(api.content + f"nodes/{node_id}/content", files=files, headers=headers, timeout=60)


def content_version(node: dict[str, Any]) -> int:
    return int(node["contentProperties"]["version"])


def test_a_matching_version_overwrites(api: RawDrive) -> None:
    n = api.upload("doc.txt", b"one")
    assert content_version(n) == 1
    r = overwrite(api, n["id"], b"two", '"1"')
    assert r.status_code == 200, r.text
    assert content_version(r.json()) == 2 and api.download(n["id"]).content == b"two"
    # unquoted, in a list, and "*" (any content) match as well
    assert overwrite(api, n["id"], b"three", "2").status_code == 200
    assert overwrite(api, n["id"], b"four", '"7", "3"').status_code == 200
    r = overwrite(api, n["id"], b"five", "*")
    assert r.status_code == 200 and content_version(r.json()) == 5


@pytest.mark.parametrize("tag", ['"1"', "1", 'W/"2"', '"d41d8cd98f00b204e9800998ecf8427e"', '""', "x"])
def test_a_mismatch_is_412_and_changes_nothing(api: RawDrive, tag: str) -> None:
    n = api.upload("doc.txt", b"one")
    api.overwrite(n["id"], b"two")                              # someone else wrote version 2
    before = api.get(f"nodes/{n['id']}").json()
    r = overwrite(api, n["id"], b"mine", tag)
    assert r.status_code == 412, r.text
    body = r.json()
    assert body["code"] == "PRECONDITION_FAILED" and body["info"] == {"contentVersion": 2}
    assert "content version 2" in body["message"] and r.headers["Content-Type"].startswith("application/json")
    assert api.get(f"nodes/{n['id']}").json() == before        # not even the node's version moved
    assert api.download(n["id"]).content == b"two"
    # the connection is still usable after the rejected body
    assert api.get("account/info").status_code == 200


def test_metadata_changes_do_not_make_it_fail(api: RawDrive) -> None:
    n = api.upload("doc.txt", b"one")
    folder = api.mkdir("elsewhere")
    assert api.patch(f"nodes/{n['id']}", {"name": "renamed.txt"}).status_code == 200
    assert api.patch(f"nodes/{n['id']}", {"labels": ["x"], "description": "d"}).status_code == 200
    assert api.post(f"nodes/{folder['id']}/children",
                    {"fromParent": api.root, "childId": n["id"]}).status_code == 200
    props = f"nodes/{n['id']}/properties/app/k"
    assert api.put(props, {"value": "v"}).status_code == 201
    assert api.put(f"trash/{n['id']}").status_code == 200
    assert api.post(f"trash/{n['id']}/restore").status_code == 200
    now = api.get(f"nodes/{n['id']}").json()
    assert now["version"] > n["version"] and content_version(now) == 1
    r = overwrite(api, n["id"], b"two", '"1"')
    assert r.status_code == 200, r.text
    assert content_version(r.json()) == 2 and r.json()["name"] == "renamed.txt"


def test_without_the_header_an_overwrite_is_unconditional(api: RawDrive) -> None:
    n = api.upload("doc.txt", b"one")
    api.overwrite(n["id"], b"two")
    r = overwrite(api, n["id"], b"three", None)
    assert r.status_code == 200 and content_version(r.json()) == 3


def test_other_failures_come_first(api: RawDrive) -> None:
    assert overwrite(api, "AAAAAAAAAAAAAAAAAAAAAA", b"x", '"1"').status_code == 404
    d = api.mkdir("d")
    assert overwrite(api, d["id"], b"x", '"1"').status_code == 400


def test_two_conditional_overwrites_of_one_version_cannot_both_win(api: RawDrive) -> None:
    n = api.upload("race.bin", b"base")
    results: list[int] = []
    start = threading.Barrier(2)

    def write(data: bytes) -> None:
        s = requests.Session()
        s.headers.update(api.s.headers)
        start.wait()
        files = {"content": ("ignored", data, "application/octet-stream")}
        r = s.put(api.content + f"nodes/{n['id']}/content", files=files, headers={"If-Match": '"1"'}, timeout=60)
        results.append(r.status_code)
        s.close()

    threads = [threading.Thread(target=write, args=(b"x" * 3_000_000 + bytes([i]),)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 412]
    assert content_version(api.get(f"nodes/{n['id']}").json()) == 2


def test_discovery_advertises_the_extensions(api: RawDrive, drive_server: DriveServer) -> None:
    ep = api.get("account/endpoint").json()
    assert ep["acdfuse"] == {"ifMatch": "contentProperties.version",
                             "maxFileSize": drive_server.config.max_file_size,
                             "propertiesWithContent": ["upload", "overwrite"]}


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[DriveServer]:
    srv = DriveServer(ServerConfig(data_dir=tmp_path / "plain", port=0, extensions=False))
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


def test_with_the_extensions_off_the_server_acts_like_amazon(plain_server: DriveServer) -> None:
    api = RawDrive(plain_server, plain_server.access_token())
    try:
        assert "acdfuse" not in api.get("account/endpoint").json()
        n = api.upload("doc.txt", b"one")
        api.overwrite(n["id"], b"two")
        r = overwrite(api, n["id"], b"three", '"1"')        # If-Match is ignored, as Amazon did
        assert r.status_code == 200 and content_version(r.json()) == 3
    finally:
        api.close()
