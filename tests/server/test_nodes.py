"""Account endpoints, folders, node JSON format, get/patch, names and conflicts, children operations."""

from __future__ import annotations

import re
from datetime import datetime

from acdfuse.server import DriveServer
from acdfuse.server.util import new_id

from .conftest import RawDrive

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")


def test_discovery_and_account(api: RawDrive, drive_server: DriveServer) -> None:
    ep = api.get("account/endpoint").json()
    assert ep == {
        "customerExists": True,
        "metadataUrl": drive_server.base_url + "/drive/v1/",
        "contentUrl": drive_server.base_url + "/cdproxy/",
        # acdfuse's extensions (routes.py); Amazon's answer had no such key
        "acdfuse": {"ifMatch": "contentProperties.version",
                    "maxFileSize": drive_server.config.max_file_size,
                    "propertiesWithContent": ["upload", "overwrite"]},
    }
    assert api.get("account/info").json() == {"termsOfUse": "1.0.0", "status": "ACTIVE"}
    before = api.get("account/quota").json()
    assert before["quota"] >= before["available"] > 0 and DATE_RE.match(before["lastCalculated"])
    api.upload("pic.jpg", b"x" * 1000)
    api.upload("notes.txt", b"y" * 10)
    after = api.get("account/quota").json()
    assert before["available"] - after["available"] == 1010
    usage = api.get("account/usage").json()
    assert DATE_RE.match(usage["lastCalculated"])
    assert usage["photo"]["total"] == {"bytes": 1000, "count": 1}
    assert usage["doc"]["total"] == {"bytes": 10, "count": 1}
    assert set(usage) == {"lastCalculated", "doc", "other", "photo", "video"}
    assert usage["video"]["billable"] == {"bytes": 0, "count": 0}


def test_root_node_format(api: RawDrive) -> None:
    r = api.get("nodes", params={"filters": "isRoot:true"}).json()
    assert r["count"] == 1
    root = r["data"][0]
    assert root["isRoot"] is True and root["kind"] == "FOLDER" and root["parents"] == []
    assert "name" not in root  # Amazon's root had no name
    assert api.get(f"nodes/{root['id']}").json()["id"] == root["id"]
    assert (
        api.get("nodes", params={"filters": "kind:FOLDER AND isRoot:true"}).json()["data"][0]["id"]
        == root["id"]
    )


def test_create_folder_and_node_json(api: RawDrive) -> None:
    r = api.post("nodes", {"name": "Photos", "kind": "FOLDER", "parents": [api.root], "labels": ["a"]})
    assert r.status_code == 201
    n = r.json()
    assert ID_RE.match(n["id"])

    assert all(new_id()[0] != "-" for _ in range(2000))  # ids stay usable as command-line arguments
    assert n["name"] == "Photos" and n["kind"] == "FOLDER" and n["parents"] == [api.root]
    assert n["status"] == "AVAILABLE" and n["version"] == 1 and n["labels"] == ["a"]
    assert n["restricted"] is False and n["isShared"] is False and "isRoot" not in n
    assert n["createdBy"] and n["eTagResponse"] and "contentProperties" not in n
    assert DATE_RE.match(n["createdDate"]) and DATE_RE.match(n["modifiedDate"])
    created = datetime.strptime(n["createdDate"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs((datetime.utcnow() - created).total_seconds()) < 600
    # no parents: the root
    r = api.post("nodes", {"name": "top", "kind": "FOLDER"})
    assert r.status_code == 201 and r.json()["parents"] == [api.root]
    # the body may come without a JSON content type (acd_cli sends none)
    r = api.s.post(api.meta + "nodes", data='{"name": "plain", "kind": "FOLDER"}', timeout=10)
    assert r.status_code == 201


def test_case_insensitive_conflicts(api: RawDrive) -> None:
    first = api.mkdir("Hello.DOC")
    for name in ("hello.doc", "HELLO.DOC", "Hello.DOC"):
        r = api.post("nodes", {"name": name, "kind": "FOLDER"})
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["code"] == "NAME_ALREADY_EXISTS"
        assert body["info"] == {"nodeId": first["id"]}
        assert "hello.doc" in body["message"] and "Hello" not in body["message"]
        assert body["logref"]
    # files and folders share one name space
    r = api.upload_raw("hello.DOC", b"x")
    assert r.status_code == 409 and r.json()["info"]["nodeId"] == first["id"]
    # the same name in another folder is fine, and case is preserved
    other = api.mkdir("other")
    assert api.mkdir("HELLO.doc", other["id"])["name"] == "HELLO.doc"


def test_name_validation(api: RawDrive) -> None:
    for bad in ("", "a/b", "nul\x00byte", "x" * 281, None, 5):
        r = api.post("nodes", {"name": bad, "kind": "FOLDER"})
        assert r.status_code == 400, (bad, r.text)
    assert api.mkdir("x" * 280)["name"] == "x" * 280
    long = api.post("nodes", {"name": "y" * 281, "kind": "FOLDER"}).json()
    assert "280" in long["message"]
    assert api.upload_raw("a/b.txt", b"x").status_code == 400
    # nothing was created by the failed attempts
    names = {n["name"] for n in api.list_all(f"nodes/{api.root}/children")}
    assert names == {"x" * 280}


def test_bad_input_is_rejected(api: RawDrive) -> None:
    assert api.post("nodes", data="{not json").status_code == 400
    assert api.post("nodes", data="[1, 2]").status_code == 400
    assert api.post("nodes", data="").status_code == 400
    assert (
        api.post("nodes", {"name": "x", "kind": "FOLDER", "parents": ["AAAAAAAAAAAAAAAAAAAAAA"]}).status_code
        == 400
    )
    r = api.post("nodes", {"name": "x", "kind": "FOLDER", "parents": ["../../etc"]})
    assert r.status_code == 400 and "parentId" in r.json()["message"]
    assert api.post("nodes", {"name": "x", "kind": "FOLDER", "parents": "notalist"}).status_code == 400
    assert api.post("nodes", {"name": "x", "kind": "FILE"}).status_code == 400
    big = '{"name": "' + "a" * (2 * 1024 * 1024) + '", "kind": "FOLDER"}'
    assert api.post("nodes", data=big).status_code == 413
    assert api.get("nodes/AAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    for trick in ("..%2F..%2Fetc%2Fpasswd", "..", "a" * 21, "a" * 23, "%2e%2e", "x;rm"):
        r = api.get("nodes/" + trick)
        assert r.status_code == 404, (trick, r.status_code)
        assert api.download(trick).status_code == 404
    assert api.get("no/such/endpoint").status_code == 404
    # the server still works and holds nothing but the root
    assert api.list_all(f"nodes/{api.root}/children") == []


def test_get_and_patch(api: RawDrive) -> None:
    d = api.mkdir("docs")
    r = api.patch(f"nodes/{d['id']}", {"name": "Docs2", "description": "my docs", "labels": ["x", "y"]})
    assert r.status_code == 200, r.text
    n = r.json()
    assert n["name"] == "Docs2" and n["description"] == "my docs" and n["labels"] == ["x", "y"]
    assert n["version"] == 2 and n["eTagResponse"] != d["eTagResponse"]
    assert n["modifiedDate"] >= d["modifiedDate"] and n["createdDate"] == d["createdDate"]
    got = api.get(f"nodes/{d['id']}").json()
    assert got == n
    # case-only rename of itself is not a conflict
    assert api.patch(f"nodes/{d['id']}", {"name": "DOCS2"}).json()["version"] == 3
    other = api.mkdir("other")
    r = api.patch(f"nodes/{other['id']}", {"name": "docs2"})
    assert r.status_code == 409 and r.json()["info"]["nodeId"] == d["id"]
    assert api.patch(f"nodes/{d['id']}", {"kind": "FILE"}).status_code == 400
    assert api.patch(f"nodes/{d['id']}", {"name": ""}).status_code == 400
    assert api.patch(f"nodes/{d['id']}", {"labels": "x"}).status_code == 400
    assert api.get(f"nodes/{d['id']}").json()["version"] == 3  # failed patches changed nothing
    # moving with PATCH parents (acd_cli's move)
    r = api.patch(f"nodes/{d['id']}", {"parents": [other["id"]]})
    assert r.status_code == 200 and r.json()["parents"] == [other["id"]]
    # a folder cannot go below itself
    assert api.patch(f"nodes/{other['id']}", {"parents": [d["id"]]}).status_code == 400


def test_children_add_remove_move(api: RawDrive) -> None:
    a = api.mkdir("a")
    b = api.mkdir("b")
    f = api.upload("f.txt", b"data", a["id"])
    # add a second parent
    r = api.put(f"nodes/{b['id']}/children/{f['id']}")
    assert r.status_code == 200 and sorted(r.json()["parents"]) == sorted([a["id"], b["id"]])
    assert r.json()["version"] == 2
    assert [n["id"] for n in api.list_all(f"nodes/{b['id']}/children")] == [f["id"]]
    # remove one parent -> 200 with the node
    r = api.delete(f"nodes/{a['id']}/children/{f['id']}")
    assert r.status_code == 200 and r.json()["parents"] == [b["id"]]
    assert api.list_all(f"nodes/{a['id']}/children") == []
    # removing the last parent is refused (documented choice)
    r = api.delete(f"nodes/{b['id']}/children/{f['id']}")
    assert r.status_code == 400
    assert api.delete(f"nodes/{a['id']}/children/{f['id']}").status_code == 404
    # move b -> a
    r = api.post(f"nodes/{a['id']}/children", {"fromParent": b["id"], "childId": f["id"]})
    assert r.status_code == 200 and r.json()["parents"] == [a["id"]]
    # conflicts on add and move
    api.upload("F.TXT", b"other", b["id"])
    r = api.put(f"nodes/{b['id']}/children/{f['id']}")
    assert r.status_code == 409
    r = api.post(f"nodes/{b['id']}/children", {"fromParent": a["id"], "childId": f["id"]})
    assert r.status_code == 409 and r.json()["code"] == "NAME_ALREADY_EXISTS"
    assert api.get(f"nodes/{f['id']}").json()["parents"] == [a["id"]]
    # bad move bodies
    assert api.post(f"nodes/{b['id']}/children", {"childId": f["id"]}).status_code == 400
    assert api.post(f"nodes/{b['id']}/children", data="{").status_code == 400
    # a folder cannot be moved into its own subtree
    sub = api.mkdir("sub", a["id"])
    r = api.post(f"nodes/{sub['id']}/children", {"fromParent": api.root, "childId": a["id"]})
    assert r.status_code == 400
    # a file is not a folder
    assert api.put(f"nodes/{f['id']}/children/{sub['id']}").status_code == 400
    # no cycles: a folder cannot be its own parent nor a child of its descendant (documented)
    assert api.put(f"nodes/{a['id']}/children/{a['id']}").status_code == 400
    assert api.put(f"nodes/{sub['id']}/children/{a['id']}").status_code == 400


def test_cycles_only_when_allowed(api: RawDrive, drive_server: DriveServer) -> None:
    a = api.mkdir("a")
    b = api.mkdir("b", a["id"])
    c = api.mkdir("c", b["id"])
    for parent in (b, c):  # default: the tree stays a DAG
        r = api.put(f"nodes/{parent['id']}/children/{a['id']}")
        assert r.status_code == 400, r.text
    assert api.get(f"nodes/{a['id']}").json()["parents"] == [api.root]
    other = api.mkdir("other")
    assert api.put(f"nodes/{other['id']}/children/{b['id']}").status_code == 200  # no cycle: fine
    drive_server.drive.allow_cycles = True  # what ServerConfig(allow_cycles=True) sets
    r = api.put(f"nodes/{c['id']}/children/{a['id']}")
    assert r.status_code == 200 and c["id"] in r.json()["parents"]
    assert api.put(f"nodes/{a['id']}/children/{a['id']}").status_code == 400  # never its own parent


def test_multi_parent_folder_rename_affects_all(api: RawDrive) -> None:
    a = api.mkdir("a")
    b = api.mkdir("b")
    shared = api.mkdir("shared", a["id"])
    api.put(f"nodes/{b['id']}/children/{shared['id']}")
    api.patch(f"nodes/{shared['id']}", {"name": "renamed"})
    for p in (a, b):
        names = [n["name"] for n in api.list_all(f"nodes/{p['id']}/children")]
        assert names == ["renamed"]
    # renaming checks the name in every parent
    api.mkdir("taken", b["id"])
    assert api.patch(f"nodes/{shared['id']}", {"name": "Taken"}).status_code == 409


def test_purge_is_refused(api: RawDrive) -> None:
    f = api.upload("f.txt", b"x")
    r = api.delete(f"nodes/{f['id']}")
    assert r.status_code == 403
    assert r.json() == {"message": "Insufficient permissions granted for operation: purgeNode"}
    assert api.get(f"nodes/{f['id']}").status_code == 200
    assert api.delete("nodes/AAAAAAAAAAAAAAAAAAAAAA").status_code == 404


def test_head_is_refused_without_a_body(api: RawDrive) -> None:
    r = api.s.head(api.meta + "account/info", timeout=10)
    assert r.status_code == 405 and r.content == b""
    assert api.get("account/info").status_code == 200
