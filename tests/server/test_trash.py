"""Trash, list trash, restore; the documented choices for folders and clashes."""

from __future__ import annotations

from .conftest import RawDrive


def test_trash_list_restore(api: RawDrive) -> None:
    f = api.upload("f.txt", b"x")
    r = api.put(f"trash/{f['id']}")
    assert r.status_code == 200
    t = r.json()
    assert t["status"] == "TRASH" and t["version"] == f["version"] + 1 and t["parents"] == [api.root]
    assert [n["id"] for n in api.list_all("trash")] == [f["id"]]
    assert api.get(f"nodes/{f['id']}").json()["status"] == "TRASH"
    # trashing twice is harmless
    assert api.put(f"trash/{f['id']}").json()["status"] == "TRASH"
    r = api.post(f"trash/{f['id']}/restore")
    assert r.status_code == 200 and r.json()["status"] == "AVAILABLE" and r.json()["parents"] == [api.root]
    assert api.list_all("trash") == []
    assert [n["id"] for n in api.list_all(f"nodes/{api.root}/children")] == [f["id"]]
    assert api.put("trash/AAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert api.put(f"trash/{api.root}").status_code == 400


def test_trashed_names_do_not_conflict_but_restore_does(api: RawDrive) -> None:
    old = api.upload("same.txt", b"1")
    api.put(f"trash/{old['id']}")
    new = api.upload("SAME.txt", b"2")  # the trashed one does not block the name
    r = api.post(f"trash/{old['id']}/restore")
    assert r.status_code == 409
    assert r.json()["code"] == "NAME_ALREADY_EXISTS" and r.json()["info"]["nodeId"] == new["id"]
    assert api.get(f"nodes/{old['id']}").json()["status"] == "TRASH"
    # the trash may hold several nodes with one name
    api.put(f"trash/{new['id']}")
    assert len(api.list_all("trash")) == 2
    # rename while trashed, then restore works
    assert api.patch(f"nodes/{old['id']}", {"name": "renamed.txt"}).status_code == 200
    assert api.post(f"trash/{old['id']}/restore").status_code == 200


def test_trashed_folder_keeps_its_subtree(api: RawDrive) -> None:
    """Documented choice: only the folder is marked TRASH; its subtree is unreachable, then restored whole."""
    d = api.mkdir("d")
    sub = api.mkdir("sub", d["id"])
    f = api.upload("f.txt", b"x", sub["id"])
    api.put(f"trash/{d['id']}")
    assert [n["id"] for n in api.list_all("trash")] == [d["id"]]
    assert api.get(f"nodes/{f['id']}").json()["status"] == "AVAILABLE"
    assert api.list_all(f"nodes/{api.root}/children") == []
    api.post(f"trash/{d['id']}/restore")
    assert [n["id"] for n in api.list_all(f"nodes/{sub['id']}/children")] == [f["id"]]


def test_trashed_node_cannot_be_moved_or_overwritten(api: RawDrive) -> None:
    a = api.mkdir("a")
    f = api.upload("f.txt", b"x")
    api.put(f"trash/{f['id']}")
    r = api.post(f"nodes/{a['id']}/children", {"fromParent": api.root, "childId": f["id"]})
    assert r.status_code == 400
    assert api.overwrite(f["id"], b"y").status_code == 409
    assert api.download(f["id"]).content == b"x"  # trashed content is still readable
