"""Listing: filters, paging (limit, nextToken, count), sort, children, trash visibility."""

from __future__ import annotations

from acdfuse.server import DriveServer

from .conftest import RawDrive


def _names(nodes: list[dict]) -> set[str]:
    return {n.get("name", "<root>") for n in nodes}


def test_filters(api: RawDrive) -> None:
    d = api.mkdir("Photos")
    e = api.mkdir("empty")
    api.upload("sample1.jpg", b"1", d["id"])
    api.upload("Sample2.jpg", b"22", d["id"])
    api.upload("other.txt", b"333", d["id"])
    api.upload("top.txt", b"4444")
    assert _names(api.list_all("nodes", filters="kind:FOLDER")) >= {"Photos", "empty"}
    assert all(n["kind"] == "FOLDER" for n in api.list_all("nodes", filters="kind:FOLDER"))
    assert _names(api.list_all("nodes", filters="kind:FILE")) == {
        "sample1.jpg",
        "Sample2.jpg",
        "other.txt",
        "top.txt",
    }
    assert _names(api.list_all("nodes", filters="name:sample*")) == {"sample1.jpg", "Sample2.jpg"}
    assert _names(api.list_all("nodes", filters="name:other.txt")) == {"other.txt"}
    assert _names(api.list_all("nodes", filters="name:OTHER.TXT")) == {"other.txt"}  # case-insensitive
    q = f"parents:{d['id']} AND kind:FILE"
    assert _names(api.list_all("nodes", filters=q)) == {"sample1.jpg", "Sample2.jpg", "other.txt"}
    q = f"parents:{d['id']} AND name:other.txt"
    assert _names(api.list_all("nodes", filters=q)) == {"other.txt"}
    assert api.list_all("nodes", filters=f"parents:{e['id']}") == []
    assert _names(api.list_all("nodes", filters="status:AVAILABLE AND kind:FILE AND name:top.txt")) == {
        "top.txt"
    }
    # lower-case and, OR with parentheses, NOT
    assert _names(api.list_all("nodes", filters="kind:FILE and name:top.txt")) == {"top.txt"}
    assert _names(api.list_all("nodes", filters="kind:FILE AND (name:top.txt OR name:other.txt)")) == {
        "top.txt",
        "other.txt",
    }
    assert _names(api.list_all("nodes", filters="name:(top.txt OR other.txt)")) == {"top.txt", "other.txt"}
    assert "top.txt" not in _names(api.list_all("nodes", filters="kind:FILE AND NOT name:top.txt"))
    # ranges on size and dates, quoted values, escapes
    assert _names(api.list_all("nodes", filters="contentProperties.size:[2 TO 3]")) == {
        "Sample2.jpg",
        "other.txt",
    }
    assert _names(api.list_all("nodes", filters="contentProperties.size:{2 TO *]")) == {
        "other.txt",
        "top.txt",
    }
    assert _names(api.list_all("nodes", filters="contentProperties.size:{* TO 2}")) == {"sample1.jpg"}
    dated = api.list_all("nodes", filters='modifiedDate:{"2000-01-01T00:00:00.000Z" TO *] AND kind:FILE')
    assert len(dated) == 4
    assert api.list_all("nodes", filters='createdDate:[* TO "2000-01-01T00:00:00.000Z"]') == []
    assert _names(api.list_all("nodes", filters="contentProperties.extension:jpg")) == {
        "sample1.jpg",
        "Sample2.jpg",
    }
    assert _names(api.list_all("nodes", filters="contentProperties.contentType:image*")) == {
        "sample1.jpg",
        "Sample2.jpg",
    }
    api.upload("a b+c(1).txt", b"55555")
    assert _names(api.list_all("nodes", filters=r"name:a\ b\+c\(1\).txt")) == {"a b+c(1).txt"}
    assert _names(api.list_all("nodes", filters='name:"a b+c(1).txt"')) == {"a b+c(1).txt"}
    md5 = api.list_all("nodes", filters="name:top.txt")[0]["contentProperties"]["md5"]
    assert _names(api.list_all("nodes", filters=f"contentProperties.md5:{md5}")) == {"top.txt"}


def test_labels_and_description_filters(api: RawDrive) -> None:
    a = api.mkdir("a")
    api.patch(f"nodes/{a['id']}", {"labels": ["red", "big"], "description": "hello"})
    b = api.mkdir("b")
    api.patch(f"nodes/{b['id']}", {"labels": ["red"]})
    assert _names(api.list_all("nodes", filters="labels:red")) == {"a", "b"}
    assert _names(api.list_all("nodes", filters="labels:(red AND big)")) == {"a"}
    assert _names(api.list_all("nodes", filters="description:hello")) == {"a"}


def test_bad_filters(api: RawDrive) -> None:
    for bad in (
        "nosuchfield:x",
        "name:",
        "kind:FILE AND",
        "(kind:FILE",
        "name:a*b",
        "isRoot:yes",
        "contentProperties.size:[a TO 3]",
        "modifiedDate:[yesterday TO *]",
        "kind",
        " AND ".join(f"name:n{i}" for i in range(9)),
    ):
        r = api.get("nodes", params={"filters": bad})
        assert r.status_code == 400, (bad, r.text)
    # eight terms are fine
    r = api.get("nodes", params={"filters": " OR ".join(f"name:n{i}" for i in range(8))})
    assert r.status_code == 200


def test_paging(api: RawDrive) -> None:
    d = api.mkdir("many")
    for i in range(25):
        api.mkdir(f"f{i:02d}", d["id"])
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"limit": "10"}
        if token:
            params["startToken"] = token
        r = api.get(f"nodes/{d['id']}/children", params=params)
        assert r.status_code == 200
        page = r.json()
        assert page["count"] == 25
        seen += [n["name"] for n in page["data"]]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 3 and sorted(seen) == [f"f{i:02d}" for i in range(25)] and len(set(seen)) == 25
    # exactly one full page: no nextToken on it
    r = api.get(f"nodes/{d['id']}/children", params={"limit": "25"}).json()
    assert len(r["data"]) == 25 and "nextToken" not in r
    for bad in ("0", "201", "x"):
        assert api.get("nodes", params={"limit": bad}).status_code == 400
    assert api.get("nodes", params={"limit": "200"}).status_code == 200
    assert api.get("nodes", params={"startToken": "garbage"}).status_code == 400
    # a token of one query does not work for another
    tok = api.get(f"nodes/{d['id']}/children", params={"limit": "5"}).json()["nextToken"]
    assert api.get("nodes", params={"limit": "5", "startToken": tok}).status_code == 400


def test_next_token_expires(api: RawDrive, drive_server: DriveServer) -> None:
    for i in range(3):
        api.mkdir(f"x{i}")
    drive_server.drive.next_token_lifetime = -1  # every token is born expired
    token = api.get("nodes", params={"limit": "1"}).json()["nextToken"]
    r = api.get("nodes", params={"limit": "1", "startToken": token})
    assert r.status_code == 400 and r.json()["message"] == "Next token is expired"


def test_sort(api: RawDrive) -> None:
    for name in ("b", "C", "a"):
        api.mkdir(name)
    r = api.get(f"nodes/{api.root}/children", params={"sort": '["name ASC"]'}).json()
    assert [n["name"] for n in r["data"]] == ["a", "b", "C"]
    r = api.get(f"nodes/{api.root}/children", params={"sort": "['name DESC']"}).json()
    assert [n["name"] for n in r["data"]] == ["C", "b", "a"]
    names = [n["name"] for n in api.list_all(f"nodes/{api.root}/children", sort='["name DESC"]', limit="2")]
    assert names == ["C", "b", "a"]
    assert api.get("nodes", params={"sort": '["labels ASC"]'}).status_code == 400
    assert api.get("nodes", params={"sort": '["name UP"]'}).status_code == 400


def test_trashed_nodes_are_hidden_from_lists(api: RawDrive) -> None:
    d = api.mkdir("d")
    f = api.upload("f.txt", b"x", d["id"])
    api.put(f"trash/{f['id']}")
    assert api.list_all(f"nodes/{d['id']}/children") == []
    assert api.list_all("nodes", filters=f"parents:{d['id']} AND name:f.txt") == []
    assert [n["id"] for n in api.list_all("nodes", filters="status:TRASH")] == [f["id"]]
    assert [n["id"] for n in api.list_all(f"nodes/{d['id']}/children", filters="status:TRASH")] == [f["id"]]


def test_large_listing_is_keyset_paged(api: RawDrive, drive_server: DriveServer) -> None:
    tree = drive_server.generate_tree(n_nodes=1000, fanout=500, folders_per_folder=1)
    assert tree.nodes == 1000
    everything = api.list_all("nodes", limit="200")
    assert len(everything) == 1001  # + root
    assert len({n["id"] for n in everything}) == 1001
    top = api.list_all(f"nodes/{api.root}/children")
    assert len(top) == 500
