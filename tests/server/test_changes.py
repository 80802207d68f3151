"""``changes``: full dump with reset, checkpoints, chunking, maxNodes, stale checkpoints, purged nodes."""

from __future__ import annotations

import threading
import time

import requests

from acdfuse.server import DriveServer

from .conftest import RawDrive


def _ids(objs: list[dict]) -> list[str]:
    return [n["id"] for o in objs if "nodes" in o for n in o["nodes"]]


def test_full_dump_then_incremental(api: RawDrive) -> None:
    d = api.mkdir("d")
    f = api.upload("f.txt", b"x", d["id"])
    objs = api.changes()
    assert objs[-1] == {"end": True}
    body = objs[:-1]
    assert body[0]["reset"] is True and all(o["reset"] is False for o in body[1:])
    assert all(o["statusCode"] == 200 and o["checkpoint"] for o in body)
    assert set(_ids(objs)) == {api.root, d["id"], f["id"]}
    cp = body[-1]["checkpoint"]
    # nothing new: one object with no nodes, then end
    again = api.changes({"checkpoint": cp})
    assert again[-1] == {"end": True}
    assert len(again) == 2 and again[0]["nodes"] == [] and again[0]["reset"] is False
    cp = again[0]["checkpoint"]
    # a rename, an overwrite, a trash and a new node show up, each once, with their new state
    api.patch(f"nodes/{d['id']}", {"name": "D"})
    api.overwrite(f["id"], b"new content")
    g = api.mkdir("g")
    api.put(f"trash/{g['id']}")
    objs = api.changes({"checkpoint": cp})
    nodes = {n["id"]: n for o in objs[:-1] for n in o["nodes"]}
    assert set(nodes) == {d["id"], f["id"], g["id"]}
    assert nodes[d["id"]]["name"] == "D"
    assert nodes[f["id"]]["contentProperties"]["version"] == 2
    assert nodes[g["id"]]["status"] == "TRASH"
    assert objs[0]["reset"] is False


def test_chunk_size_and_max_nodes(api: RawDrive) -> None:
    for i in range(9):
        api.mkdir(f"n{i}")
    objs = api.changes({"chunkSize": 2})
    body = objs[:-1]
    assert objs[-1] == {"end": True}
    assert all(len(o["nodes"]) <= 2 for o in body)
    assert len(_ids(objs)) == 10 and len(set(_ids(objs))) == 10
    # maxNodes ends the stream early; continuing from its checkpoint delivers the rest
    part = api.changes({"maxNodes": 4, "chunkSize": 3})
    assert part[-1] == {"end": True}
    got = _ids(part)
    assert 4 <= len(got) < 10
    rest = api.changes({"checkpoint": part[-2]["checkpoint"]})
    assert rest[0]["reset"] is False
    assert sorted(got + _ids(rest)) == sorted(_ids(objs))


def test_invalid_or_stale_checkpoint_resets(api: RawDrive, drive_server: DriveServer) -> None:
    api.mkdir("a")
    for cp in ("garbage", "Zm9vLjEuMg", "", "x" * 300):
        objs = api.changes({"checkpoint": cp})
        assert objs[0]["reset"] is True
        assert objs[-1] == {"end": True}
        assert len(_ids(objs)) == 2
    good = api.changes()[-2]["checkpoint"]
    # forgetting tombstones makes older checkpoints stale -> full dump with reset
    drive_server.forget_purged()
    objs = api.changes({"checkpoint": good})
    assert objs[0]["reset"] is True and len(_ids(objs)) == 2


def test_bad_changes_bodies(api: RawDrive) -> None:
    for body in (
        '{"chunkSize": -1}',
        '{"maxNodes": "x"}',
        '{"checkpoint": 5}',
        "[1]",
        "{bad",
        '{"includePurged": "maybe"}',
    ):
        r = api.s.post(api.meta + "changes", data=body, timeout=10)
        assert r.status_code == 400, body


def test_purged_nodes_with_include_purged(api: RawDrive, drive_server: DriveServer) -> None:
    d = api.mkdir("d")
    f = api.upload("f.txt", b"bytes", d["id"])
    keep = api.mkdir("keep")
    cp = api.changes()[-2]["checkpoint"]
    api.put(f"trash/{d['id']}")
    # purging the folder purges what is reachable only through it
    assert drive_server.purge(d["id"]) == 2
    assert api.get(f"nodes/{d['id']}").status_code == 404
    assert api.download(f["id"]).status_code == 404
    with_purged = api.changes({"checkpoint": cp, "includePurged": "true"})
    status = {n["id"]: n["status"] for o in with_purged[:-1] for n in o["nodes"]}
    assert status == {d["id"]: "PURGED", f["id"]: "PURGED"}
    without = api.changes({"checkpoint": cp})
    assert _ids(without) == []
    # a full dump never contains tombstones
    assert set(_ids(api.changes({"includePurged": "true"}))) == {api.root, keep["id"]}
    # blobs of purged files are gone
    blobs = [p for p in (drive_server.config.data_dir / "blobs").rglob("*") if p.is_file()]
    assert blobs == []


def test_trash_retention_sweeper(api: RawDrive, drive_server: DriveServer) -> None:

    f = api.upload("old.txt", b"x")
    api.put(f"trash/{f['id']}")
    fresh = api.upload("fresh.txt", b"y")
    api.put(f"trash/{fresh['id']}")
    retention = drive_server.config.trash_retention
    assert retention is not None
    # pretend time has moved past the retention for both: both purged
    assert drive_server.sweep_trash(now=time.time() + retention + 10) == 2
    assert api.get(f"nodes/{f['id']}").status_code == 404
    assert drive_server.sweep_trash() == 0


def test_changes_while_others_write(api: RawDrive, drive_server: DriveServer) -> None:
    """Polling ``changes`` with checkpoints during concurrent writes loses nothing: replaying every
    delivered node state in order ends exactly at the server's final tree."""

    stop = threading.Event()
    token = api.s.headers["Authorization"]
    errors: list[str] = []

    def writer(k: int) -> None:
        with requests.Session() as s:
            s.headers["Authorization"] = token
            i = 0
            while not stop.is_set() and i < 60:
                r = s.post(
                    drive_server.base_url + "/drive/v1/nodes",
                    timeout=30,
                    data=f'{{"name": "w{k}-{i}", "kind": "FOLDER"}}',
                )
                if r.status_code != 201:
                    errors.append(r.text)
                elif i % 3 == 0:
                    nid = r.json()["id"]
                    s.patch(
                        drive_server.base_url + f"/drive/v1/nodes/{nid}",
                        timeout=30,
                        data=f'{{"name": "renamed-{k}-{i}"}}',
                    )
                i += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    mirror: dict[str, dict] = {}
    checkpoint = None

    def poll() -> None:
        nonlocal checkpoint
        objs = api.changes({"chunkSize": 7, **({"checkpoint": checkpoint} if checkpoint else {})})
        assert objs[-1] == {"end": True}
        for o in objs[:-1]:
            if o["reset"]:
                mirror.clear()
            for n in o["nodes"]:
                mirror[n["id"]] = n
            checkpoint = o["checkpoint"]

    while any(t.is_alive() for t in threads):
        poll()
    stop.set()
    for t in threads:
        t.join()
    poll()  # whatever was written after the last poll
    assert not errors
    server = {n["id"]: n for n in api.list_all("nodes")}
    assert {k: v["name"] for k, v in mirror.items() if "name" in v} == {
        k: v["name"] for k, v in server.items() if "name" in v
    }
    assert {k: v["version"] for k, v in mirror.items()} == {k: v["version"] for k, v in server.items()}
