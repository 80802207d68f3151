"""MetadataMixin, TrashMixin and AccountMixin against the real server."""

from __future__ import annotations

import io

import pytest
import requests
from api_helpers import MakeClient, put_file

from acdfuse.api.client import ACDClient
from acdfuse.api.common import Conflict, Forbidden, NotFound, RequestError
from acdfuse.api.metadata import ChangeSet
from acdfuse.server import DriveServer

# --- lookup and listing ------------------------------------------------------------------------


def test_root_node_and_id(client: ACDClient) -> None:
    root = client.get_root_node()
    assert root["kind"] == "FOLDER" and root.get("isRoot") is True
    assert client.get_root_id() == root["id"]


def test_get_metadata(client: ACDClient) -> None:
    node = put_file(client, "m.txt", b"meta")
    got = client.get_metadata(node["id"])
    assert got["id"] == node["id"] and got["name"] == "m.txt"
    assert got["contentProperties"]["size"] == 4
    assert "tempLink" not in client.get_metadata(node["id"], temp_link=False)


def test_get_metadata_temp_link(client: ACDClient) -> None:
    node = put_file(client, "tl.txt", b"temp link")
    link = client.get_metadata(node["id"])["tempLink"]  # temp_link=True is the default
    assert requests.get(link, timeout=10).content == b"temp link"  # no Authorization needed
    ranged = requests.get(link, headers={"Range": "bytes=5-8"}, timeout=10)
    assert (ranged.status_code, ranged.content) == (206, b"link")


def test_get_metadata_missing(client: ACDClient) -> None:
    with pytest.raises(NotFound) as info:
        client.get_metadata("AAAAAAAAAAAAAAAAAAAAAA")
    assert info.value.status_code == 404
    assert "get metadata (node AAAAAAAAAAAAAAAAAAAAAA)" in info.value.msg


def test_node_lists_and_filters(client: ACDClient) -> None:
    folder = client.create_folder("F")
    put_file(client, "a.txt", b"a", folder["id"])
    put_file(client, "b.txt", b"b")
    files = {n["name"] for n in client.get_file_list()}
    folders = {n.get("name") for n in client.get_folder_list()}
    assert files == {"a.txt", "b.txt"}
    assert "F" in folders and "a.txt" not in folders
    assert client.get_asset_list() == []
    named = client.get_node_list(filters="name:a.txt")
    assert [n["name"] for n in named] == ["a.txt"]


def test_list_children_pages(client: ACDClient, drive_server: DriveServer) -> None:
    folder = client.create_folder("many")
    # 450 nodes (1 folder, 449 files) written straight into the server's DB: three pages of at most 200
    drive_server.generate_tree(n_nodes=450, fanout=450, folders_per_folder=1, parent=folder["id"])
    children = client.list_children(folder["id"])
    assert len(children) == 450
    assert len({c["id"] for c in children}) == 450
    assert all(c["parents"] == [folder["id"]] for c in children)
    assert len(client.get_file_list()) == 449


def test_trashed_lists(client: ACDClient) -> None:
    folder = client.create_folder("gone")
    f = put_file(client, "gone.txt", b"x")
    client.move_to_trash(folder["id"])
    client.move_to_trash(f["id"])
    assert [n["id"] for n in client.get_trashed_folders()] == [folder["id"]]
    assert [n["id"] for n in client.get_trashed_files()] == [f["id"]]


# --- updates and parents -----------------------------------------------------------------------


def test_update_metadata_and_rename(client: ACDClient) -> None:
    node = put_file(client, "old.txt", b"x")
    n2 = client.update_metadata(node["id"], {"description": "hello", "labels": ["l1"]})
    assert n2["description"] == "hello" and n2["labels"] == ["l1"]
    assert n2["version"] == node["version"] + 1
    n3 = client.rename_node(node["id"], "new.txt")
    assert n3["name"] == "new.txt"
    put_file(client, "taken.txt", b"y")
    with pytest.raises(Conflict) as info:
        client.rename_node(node["id"], "Taken.txt")
    assert node["id"] in info.value.msg


def test_move_node_and_move_node_from(client: ACDClient, root_id: str) -> None:
    a = client.create_folder("A")
    b = client.create_folder("B")
    node = put_file(client, "mv.txt", b"x", a["id"])
    moved = client.move_node_from(node["id"], a["id"], b["id"])
    assert moved["parents"] == [b["id"]]
    back = client.move_node(node["id"], root_id)
    assert back["parents"] == [root_id]
    with pytest.raises(RequestError) as info:
        client.move_node_from(node["id"], a["id"], b["id"])  # no longer a child of A
    assert info.value.status_code in (400, 404, 409)
    assert node["id"] in info.value.msg


def test_add_and_remove_child(client: ACDClient, root_id: str) -> None:
    a = client.create_folder("A")
    node = put_file(client, "linked.txt", b"x")
    linked = client.add_child(a["id"], node["id"])
    assert set(linked["parents"]) == {root_id, a["id"]}
    assert [c["id"] for c in client.list_children(a["id"])] == [node["id"]]
    unlinked = client.remove_child(root_id, node["id"])
    assert unlinked["parents"] == [a["id"]]
    other = put_file(client, "LINKED.txt", b"y")
    with pytest.raises(Conflict):
        client.add_child(a["id"], other["id"])


def test_set_available(client: ACDClient) -> None:
    node = put_file(client, "avail.txt", b"x")
    assert client.set_available(node["id"])["status"] == "AVAILABLE"


# --- changes -----------------------------------------------------------------------------------


def _drain(client: ACDClient, checkpoint: str = "", include_purged: bool = False) -> list[ChangeSet]:
    return list(client.get_changes(checkpoint=checkpoint, include_purged=include_purged))


def test_changes_full_then_incremental(client: ACDClient, root_id: str) -> None:
    node = put_file(client, "c1.txt", b"1")
    sets = _drain(client)
    assert sets and sets[0].reset is True
    ids = {n["id"] for cs in sets for n in cs.nodes}
    assert {root_id, node["id"]} <= ids
    checkpoint = sets[-1].checkpoint

    up_to_date = _drain(client, checkpoint)
    assert all(not cs.nodes for cs in up_to_date) and not any(cs.reset for cs in up_to_date)

    n2 = put_file(client, "c2.txt", b"2")
    client.rename_node(node["id"], "c1-renamed.txt")
    later = _drain(client, checkpoint)
    changed = {n["id"]: n for cs in later for n in cs.nodes}
    assert set(changed) == {node["id"], n2["id"]}
    assert changed[node["id"]]["name"] == "c1-renamed.txt"


def test_changes_trash_and_purged(client: ACDClient, drive_server: DriveServer) -> None:
    node = put_file(client, "p.txt", b"x")
    checkpoint = _drain(client)[-1].checkpoint
    client.move_to_trash(node["id"])
    trashed = [n for cs in _drain(client, checkpoint) for n in cs.nodes]
    assert [(n["id"], n["status"]) for n in trashed] == [(node["id"], "TRASH")]
    drive_server.purge(node["id"])  # the API refuses purge to apps, as Amazon did
    sets = _drain(client, checkpoint, include_purged=True)
    assert node["id"] in {p for cs in sets for p in cs.purged_nodes}
    assert node["id"] not in {n["id"] for cs in sets for n in cs.nodes}


def test_changes_chunks_into_several_sets(make_client: MakeClient, drive_server: DriveServer) -> None:
    client = make_client()
    folder = client.create_folder("lots")
    for i in range(30):
        client.create_folder(f"n{i}", folder["id"])
    sets = _drain(client)
    assert sum(len(cs.nodes) for cs in sets) >= 32
    assert sets[0].reset is True


# --- properties ----------------------------------------------------------------------------------


def test_owner_id_and_properties(client: ACDClient) -> None:
    owner = client.get_owner_id()
    assert owner
    node = put_file(client, "props.txt", b"x")
    assert client.list_properties(node["id"], owner) == {}
    added = client.add_property(node["id"], owner, "color", "blue")
    assert added["key"] == "color" and added["value"] == "blue"
    assert added["location"].endswith(f"/properties/{owner}/color")
    client.add_property(node["id"], owner, "color", "red")  # overwrite
    client.add_property(node["id"], owner, "size", "L")
    assert client.list_properties(node["id"], owner) == {"color": "red", "size": "L"}
    client.delete_property(node["id"], owner, "size")
    assert client.list_properties(node["id"], owner) == {"color": "red"}
    client.add_property(node["id"], owner, "k2", "v2")
    client.delete_properties(node["id"], owner)
    assert client.list_properties(node["id"], owner) == {}
    # other owners see nothing
    assert client.list_properties(node["id"], "someone-else") == {}


def test_upload_with_properties(client: ACDClient) -> None:
    """Properties sent with an upload land on the new node in the same request, and the node JSON of
    the answer, of get_metadata and of changes carries them."""
    owner = client.get_owner_id()
    node = client.upload_stream(io.BytesIO(b"target"), "link", properties={owner: {"posix": "a1;m120777"}})
    assert node["properties"] == {owner: {"posix": "a1;m120777"}}
    assert client.list_properties(node["id"], owner) == {"posix": "a1;m120777"}
    assert client.get_metadata(node["id"])["properties"] == {owner: {"posix": "a1;m120777"}}
    seen = [n for cs in _drain(client) for n in cs.nodes if n["id"] == node["id"]]
    assert seen[-1]["properties"] == {owner: {"posix": "a1;m120777"}}
    plain = client.upload_stream(io.BytesIO(b"x"), "plain", properties=None)
    assert "properties" not in plain


def test_property_limits(client: ACDClient) -> None:
    owner = client.get_owner_id()
    node = put_file(client, "limits.txt", b"x")
    client.add_property(node["id"], owner, "long", "v" * 500)  # exactly the limit is fine
    with pytest.raises(RequestError) as too_long:
        client.add_property(node["id"], owner, "longer", "v" * 501)
    assert too_long.value.status_code == 400
    for i in range(9):
        client.add_property(node["id"], owner, f"k{i}", "v")
    assert len(client.list_properties(node["id"], owner)) == 10
    with pytest.raises(RequestError) as too_many:
        client.add_property(node["id"], owner, "eleventh", "v")
    assert too_many.value.status_code == 400
    assert "add property 'eleventh'" in too_many.value.msg and node["id"] in too_many.value.msg
    client.add_property(node["id"], owner, "k0", "overwrite is fine at the limit")
    with pytest.raises(NotFound) as empty_owner:
        client.add_property(node["id"], "", "k", "v")
    assert "UnknownOperationException" in empty_owner.value.msg


def test_delete_missing_property(client: ACDClient) -> None:
    owner = client.get_owner_id()
    node = put_file(client, "np.txt", b"x")
    with pytest.raises(NotFound):
        client.delete_property(node["id"], owner, "nope")


# --- trash -------------------------------------------------------------------------------------


def test_trash_restore_purge(client: ACDClient, root_id: str) -> None:
    folder = client.create_folder("T")
    node = put_file(client, "t.txt", b"x", folder["id"])
    trashed = client.move_to_trash(folder["id"])
    assert trashed["status"] == "TRASH"
    assert folder["id"] in [n["id"] for n in client.list_trash()]
    assert folder["id"] not in [c["id"] for c in client.list_children(root_id)]
    restored = client.restore(folder["id"])
    assert restored["status"] == "AVAILABLE"
    assert client.get_metadata(node["id"])["status"] == "AVAILABLE"
    client.move_to_trash(node["id"])
    # Amazon refused purge to third-party apps and so does our server; the error says so
    with pytest.raises(Forbidden) as refused:
        client.purge(node["id"])
    assert "purge (node " + node["id"] in refused.value.msg and "purgeNode" in refused.value.msg
    with pytest.raises(NotFound) as info:
        client.move_to_trash("AAAAAAAAAAAAAAAAAAAAAA")
    assert "move to trash (node AAAAAAAAAAAAAAAAAAAAAA)" in info.value.msg
    with pytest.raises(RequestError):
        client.restore("AAAAAAAAAAAAAAAAAAAAAA")


# --- account -----------------------------------------------------------------------------------


def test_account(client: ACDClient) -> None:
    info = client.get_account_info()
    assert info["status"] == "ACTIVE" and "termsOfUse" in info
    put_file(client, "doc.txt", b"12345")
    quota = client.get_quota()
    assert quota["quota"] >= quota["available"] > 0
    total, available = client.fs_sizes()
    assert (total, available) == (quota["quota"], quota["available"])
    usage = client.get_account_usage()
    text = str(usage)
    lines = text.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["Documents", "Other", "Photos", "Videos", "Total"]
    assert "5.0 B" in lines[-1] and lines[-1].split()[1].rstrip(",") == "1"


def test_add_child_refuses_self_parent(client: ACDClient) -> None:
    f = client.create_folder("F")
    with pytest.raises(RequestError) as info:
        client.add_child(f["id"], f["id"])
    assert info.value.status_code == 400


def test_add_child_refuses_cycles(client: ACDClient) -> None:
    f = client.create_folder("F")
    g = client.create_folder("G", f["id"])
    with pytest.raises(RequestError) as into_descendant:
        client.add_child(g["id"], f["id"])
    assert into_descendant.value.status_code == 400
