"""App-scoped properties: put/get/list/delete, limits, the XML 404 for an empty owner."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from acdfuse.server import DriveServer, ServerConfig

from .conftest import RawDrive


def test_property_round_trip(api: RawDrive) -> None:
    f = api.upload("f.txt", b"x")
    owner = f["createdBy"]
    base = f"nodes/{f['id']}/properties/{owner}"
    r = api.put(f"{base}/color", {"value": "blue"})
    assert r.status_code == 201
    body = r.json()
    assert body["key"] == "color" and body["value"] == "blue"
    assert body["location"].endswith(f"/drive/v1/nodes/{f['id']}/properties/{owner}/color")
    assert api.get(base).json() == {"data": {"color": "blue"}}
    assert api.get(f"{base}/color").json() == {"key": "color", "value": "blue"}
    api.put(f"{base}/color", {"value": "red"})  # replace
    api.put(f"{base}/size", {"value": "L"})
    assert api.get(base).json() == {"data": {"color": "red", "size": "L"}}
    # other owners see an empty map
    assert api.get(f"nodes/{f['id']}/properties/someone-else").json() == {"data": {}}
    r = api.delete(f"{base}/color")
    assert r.status_code == 204 and r.content == b""
    assert api.get(base).json() == {"data": {"size": "L"}}
    assert api.delete(f"{base}/color").status_code == 404
    assert api.get(f"{base}/color").status_code == 404
    # properties changes bump the node version
    assert api.get(f"nodes/{f['id']}").json()["version"] > f["version"]


def test_property_limits(api: RawDrive) -> None:
    f = api.upload("f.txt", b"x")
    base = f"nodes/{f['id']}/properties/app"
    for i in range(10):
        assert api.put(f"{base}/k{i}", {"value": str(i)}).status_code == 201
    r = api.put(f"{base}/k10", {"value": "too many"})
    assert r.status_code == 400
    assert api.put(f"{base}/k3", {"value": "replacing is fine"}).status_code == 201
    assert api.put(f"nodes/{f['id']}/properties/other/k", {"value": "x" * 500}).status_code == 201
    assert api.put(f"nodes/{f['id']}/properties/other/k2", {"value": "x" * 501}).status_code == 400
    assert api.put(f"{base}/k3", {"value": 5}).status_code == 400
    assert api.put(f"{base}/k3", {"nope": "x"}).status_code == 400
    assert api.put(f"{base}/k3", data="{bad").status_code == 400
    assert len(api.get(base).json()["data"]) == 10


def test_empty_owner_is_xml_404(api: RawDrive) -> None:
    f = api.upload("f.txt", b"x")
    for method, path in (
        ("GET", f"nodes/{f['id']}/properties/"),
        ("GET", f"nodes/{f['id']}/properties//k"),
        ("PUT", f"nodes/{f['id']}/properties//k"),
    ):
        r = api.s.request(method, api.meta + path, data='{"value": "v"}', timeout=10)
        assert r.status_code == 404, path
        assert r.text == "<UnknownOperationException/>"
        assert r.headers["Content-Type"].startswith("application/xml")


def test_properties_of_unknown_node(api: RawDrive) -> None:
    assert api.get("nodes/AAAAAAAAAAAAAAAAAAAAAA/properties/app").status_code == 404
    assert api.put("nodes/AAAAAAAAAAAAAAAAAAAAAA/properties/app/k", {"value": "v"}).status_code == 404


def test_properties_in_upload_metadata(api: RawDrive) -> None:

    meta = {"name": "p.txt", "kind": "FILE", "properties": {"app": {"a": "1"}}}
    files = {"metadata": (None, json.dumps(meta)), "content": ("x", b"data")}
    r = api.s.post(api.content + "nodes", params={"suppress": "deduplication"}, files=files, timeout=10)
    assert r.status_code == 201
    assert api.get(f"nodes/{r.json()['id']}/properties/app").json() == {"data": {"a": "1"}}


def test_node_json_shows_the_apps_own_properties(api: RawDrive, other_api: RawDrive) -> None:
    """Properties ride along in the node JSON (get, list, changes, answers), so a client's mirror of the
    tree knows them after a sync; only the app's own owner is shown, never another's."""
    f = api.upload("f.txt", b"x")
    owner = f["createdBy"]
    assert "properties" not in f
    api.put(f"nodes/{f['id']}/properties/{owner}/posix", {"value": "a1;m100755"})
    api.put(f"nodes/{f['id']}/properties/someone-else/k", {"value": "hidden"})
    shown = {owner: {"posix": "a1;m100755"}}
    assert api.get(f"nodes/{f['id']}").json()["properties"] == shown
    listed = [n for n in api.list_all(f"nodes/{api.root}/children") if n["id"] == f["id"]]
    assert listed[0]["properties"] == shown
    changed = [n for cs in api.changes() for n in cs.get("nodes", []) if n["id"] == f["id"]]
    assert changed[-1]["properties"] == shown
    renamed = api.patch(f"nodes/{f['id']}", {"name": "g.txt"}).json()
    assert renamed["properties"] == shown
    # another account's app sees none of them, and the last one deleted leaves no empty map
    assert other_api.get(f"nodes/{f['id']}").status_code == 404
    api.delete(f"nodes/{f['id']}/properties/{owner}/posix")
    assert "properties" not in api.get(f"nodes/{f['id']}").json()


def test_upload_answer_carries_the_properties_sent_with_it(api: RawDrive) -> None:
    owner = api.upload("probe.txt", b"")["createdBy"]
    meta = {"name": "link", "kind": "FILE", "properties": {owner: {"posix": "a1;m120777"}}}
    files = {"metadata": (None, json.dumps(meta)), "content": ("link", b"target")}
    r = api.s.post(api.content + "nodes", params={"suppress": "deduplication"}, files=files, timeout=10)
    assert r.status_code == 201
    assert r.json()["properties"] == {owner: {"posix": "a1;m120777"}}


def _overwrite_with(api: RawDrive, node_id: str, data: bytes, meta: object) -> requests.Response:
    files = {"metadata": (None, json.dumps(meta)), "content": ("x", data)}
    return api.s.put(api.content + f"nodes/{node_id}/content", files=files, timeout=10)


def test_an_overwrite_changes_properties_with_the_content(api: RawDrive) -> None:
    """The extension "propertiesWithContent": values set keys, null deletes them (absent ones too),
    in the same transaction as the content; the answer shows the result."""
    f = api.upload("f.txt", b"old")
    owner = f["createdBy"]
    api.put(f"nodes/{f['id']}/properties/{owner}/x0", {"value": "a=t1"})
    meta = {"properties": {owner: {"posix": "a1;m100600;t5;c2", "x0": None, "x1": None}}}
    r = _overwrite_with(api, f["id"], b"new", meta)
    assert r.status_code == 200, r.text
    assert r.json()["properties"] == {owner: {"posix": "a1;m100600;t5;c2"}}
    assert r.json()["contentProperties"]["version"] == 2
    assert api.get(f"nodes/{f['id']}/properties/{owner}").json() == {"data": {"posix": "a1;m100600;t5;c2"}}


def test_an_overwrite_whose_properties_break_the_limits_changes_nothing(api: RawDrive) -> None:
    f = api.upload("f.txt", b"old")
    owner = f["createdBy"]
    too_many = {owner: {f"k{i}": "v" for i in range(11)}}
    too_long = {owner: {"posix": "x" * 501}}
    for bad in (too_many, too_long, {"": {"k": "v"}}, {owner: {"k": 5}}, {owner: "v"}, ["k"]):
        r = _overwrite_with(api, f["id"], b"new", {"properties": bad})
        assert r.status_code == 400, (bad, r.text)
    node = api.get(f"nodes/{f['id']}").json()
    assert node["contentProperties"]["version"] == 1 and "properties" not in node
    assert api.download(f["id"]).content == b"old"


def test_without_the_extensions_an_overwrite_ignores_its_metadata(tmp_path: Path) -> None:
    srv = DriveServer(ServerConfig(data_dir=tmp_path / "plain", port=0, extensions=False))
    srv.start()
    api = RawDrive(srv, srv.access_token())
    try:
        f = api.upload("f.txt", b"old")
        r = _overwrite_with(api, f["id"], b"new", {"properties": {f["createdBy"]: {"k": "v"}}})
        assert r.status_code == 200 and "properties" not in r.json()
        assert api.download(f["id"]).content == b"new"
    finally:
        api.close()
        srv.close()
