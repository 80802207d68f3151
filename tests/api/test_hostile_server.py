"""The client against a hostile server: every broken answer becomes a clear RequestError subclass.

The server is ``hostile.HostileServer``, a raw socket on loopback that sends exactly the bytes a test
scripts: malformed JSON, a Content-Length that lies, a changes stream without its end, node JSON no
drive would send (no id, a parent cycle, a giant size). The client must raise a subclass of
``RequestError`` (never a KeyError, AttributeError or a JSON error from deep inside), never hang, and
a ``NodeStore.sync`` fed by such a stream must leave the mirror exactly as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from acdfuse.api.backoff_req import RetryPolicy
from acdfuse.api.client import ACDClient
from acdfuse.api.common import ConnectionFailed, IncompleteResult, RequestError
from acdfuse.store import NodeStore
from acdfuse.store.errors import SyncError

from hostile import HostileServer, Seen, answer, chunked, write_config

ID = "A" * 22
ROOT, FOLDER, FILE = "R" * 22, "F" * 22, "f" * 22

pytestmark = pytest.mark.timeout(60)


def _client(srv: HostileServer, cdir: Path) -> ACDClient:
    client = ACDClient(str(cdir if cdir.exists() else write_config(cdir, srv.base_url)))
    # a hostile answer is retried like a cut one; keep the waits short
    client.BOReq.policy = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.02, deadline=5)
    return client


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Callable[[Callable[[Seen], bytes]], ACDClient]]:
    made: list[tuple[HostileServer, ACDClient]] = []

    def make(respond: Callable[[Seen], bytes]) -> ACDClient:
        srv = HostileServer(respond)
        client = _client(srv, tmp_path / f"cdir{len(made)}")
        made.append((srv, client))
        return client

    yield make
    for srv, client in made:
        client.close()
        srv.close()


def node(node_id: str, name: str | None, parents: list[str], **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": node_id, "kind": "FOLDER", "parents": parents, "status": "AVAILABLE",
                           "version": 1, "createdDate": "2024-01-01T00:00:00.000Z",
                           "modifiedDate": "2024-01-01T00:00:00.000Z"}
    if name is not None:
        out["name"] = name
    out.update(extra)
    return out


def a_file(node_id: str, name: str, parent: str, size: Any = 3) -> dict[str, Any]:
    return node(node_id, name, [parent], kind="FILE",
                contentProperties={"size": size, "md5": "0" * 32, "version": 1})


# ---- answers to single calls ---------------------------------------------------------------------

def _calls() -> dict[str, Callable[[ACDClient], Any]]:
    return {
        "get_metadata": lambda c: c.get_metadata(ID),
        "update_metadata": lambda c: c.rename_node(ID, "x"),
        "get_root_id": lambda c: c.get_root_id(),
        "list_children": lambda c: c.list_children(ID),
        "create_folder": lambda c: c.create_folder("x"),
        "upload": lambda c: c.upload_stream(io.BytesIO(b"abc"), "f.bin", ID),
        "overwrite": lambda c: c.overwrite_stream(io.BytesIO(b"abc"), ID),
        "trash": lambda c: c.move_to_trash(ID),
        "quota": lambda c: c.fs_sizes(),
        "account_info": lambda c: c.get_account_info(),
        "properties": lambda c: c.list_properties(ID, "owner"),
        "changes": lambda c: list(c.get_changes()),
    }


def _ok(s: Seen) -> int:
    """The status a well-behaved server gives this request (201 for a create or upload)."""
    return 201 if s.method == "POST" and s.path.split("?")[0].endswith("/nodes") else 200


def _no_id(s: Seen) -> bytes:
    nameless = {"name": "x", "kind": "FILE"}
    if s.method == "GET" and ("children" in s.path or s.path.split("?")[0].endswith("/nodes")):
        return answer(200, {"count": 1, "data": [nameless]})  # a page holding a node without id
    return answer(_ok(s), nameless)


BAD_BODIES: dict[str, Callable[[Seen], bytes]] = {
    "malformed json": lambda s: answer(_ok(s), b'{"id": "AAAA", "na'),
    "json list": lambda s: answer(_ok(s), [1, 2, 3]),
    "json string": lambda s: answer(_ok(s), '"hello"'),
    "html page": lambda s: answer(_ok(s), b"<html><body>Captive portal</body></html>"),
    "not utf-8": lambda s: answer(_ok(s), b"\xff\xfe\x00{"),
    "length longer than body": lambda s: answer(_ok(s), b'{"id": "' + ID.encode() + b'"}', length=500),
    "length shorter than body": lambda s: answer(_ok(s), b'{"id": "' + ID.encode() + b'", "x": 1}', length=9),
    "giant length": lambda s: answer(_ok(s), b"{}", length=10**15),
    "bad chunk size": lambda s: (b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"zz\r\n{}\r\n0\r\n\r\n"),
    "chunked cut": lambda s: chunked(_ok(s), [b'{"id": "', ID.encode()], last=False),
    "garbage status line": lambda s: b"HTTP/1.1 two hundred\r\n\r\n{}",
    "nothing at all": lambda s: b"",
    "no node id": _no_id,
    "a success status the call does not expect": lambda s: answer(202 if _ok(s) == 200 else 200,
                                                                  {"id": ID, "name": "x"}),
}

# an object without an id is a valid quota, account info or property list
_NOT_A_NODE_CALL = {"quota", "account_info", "properties"}


@pytest.mark.parametrize(("bad", "call"), [
    (bad, call) for bad in sorted(BAD_BODIES) for call in sorted(_calls())
    if not (bad == "no node id" and call in _NOT_A_NODE_CALL)
])
def test_broken_answers_give_a_request_error_subclass(hostile: Any, call: str, bad: str) -> None:
    client = hostile(BAD_BODIES[bad])
    with pytest.raises(RequestError) as info:
        _calls()[call](client)
    exc = info.value
    assert type(exc) is not RequestError, f"a plain RequestError for {bad}: {exc}"
    assert isinstance(exc, IncompleteResult | ConnectionFailed), repr(exc)


def _ranged(status: int = 206, body: bytes = b"0123456789", *, crange: str | None = "bytes 0-9/10",
            length: int | None = None, cut: bool = False) -> Callable[[Seen], bytes]:
    headers = {} if crange is None else {"Content-Range": crange}
    if cut:
        head = f"HTTP/1.1 {status} Partial\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return lambda s: head.encode() + b"\r\n5\r\n01234\r\n"
    return lambda s: answer(status, body, length=length, headers=headers, reason="Partial")


BAD_RANGED = {
    "206 without Content-Range": _ranged(crange=None),
    "Content-Range not parseable": _ranged(crange="bytes zero-nine/ten"),
    "Content-Range of another offset": _ranged(crange="bytes 5-14/20"),
    "Content-Range backwards": _ranged(crange="bytes 9-0/10"),
    "200 instead of 206": _ranged(status=200, crange=None),
    "body shorter than its range": _ranged(body=b"01234"),
    "length longer than the body": _ranged(body=b"01234", length=10),
    "chunked body cut": _ranged(cut=True),
    "nothing at all": lambda s: b"",
}


@pytest.mark.parametrize("bad", sorted(BAD_RANGED))
def test_broken_ranged_answers(hostile: Any, bad: str) -> None:
    client = hostile(BAD_RANGED[bad])
    with pytest.raises(RequestError) as info:
        client.download_chunk(ID, 0, 10)
    assert isinstance(info.value, IncompleteResult | ConnectionFailed), repr(info.value)


def test_ranged_answer_with_odd_but_usable_framing(hostile: Any) -> None:
    """More bytes than asked for (a range past our end, a giant total): only what was asked is taken."""
    client = hostile(_ranged(body=b"0123456789" * 3, crange="bytes 0-29/99999999999999999999999"))
    assert bytes(client.download_chunk(ID, 0, 10)) == b"0123456789"


def test_a_changes_stream_without_end(hostile: Any) -> None:
    stream = [json.dumps({"checkpoint": "c1", "reset": True, "statusCode": 200,
                          "nodes": [node(ROOT, None, [], isRoot=True)]}).encode() + b"\n"]
    client = hostile(lambda s: chunked(200, stream))
    with pytest.raises(IncompleteResult, match="without"):
        list(client.get_changes())


def test_listing_that_pages_forever_is_stopped(hostile: Any) -> None:
    """A server that answers every page with the same nextToken would keep the client paging (and
    its memory growing) forever; a repeated token is refused."""
    page = {"count": 1, "nextToken": "again", "data": [node(ID, "x", [ROOT])]}
    client = hostile(lambda s: answer(200, page))
    with pytest.raises(IncompleteResult, match="nextToken"):
        client.list_children(ROOT)


@pytest.mark.parametrize("body", [[1], {"customerExists": True}, {"metadataUrl": 5, "contentUrl": "x"}, b"{"])
def test_endpoint_discovery_with_a_broken_answer(tmp_path: Path, body: Any) -> None:
    srv = HostileServer(lambda s: answer(200, body))
    cdir = write_config(tmp_path / "cdir", srv.base_url)
    (cdir / "endpoint_data").unlink()  # so the client asks the server
    client = _client(srv, cdir)
    try:
        with pytest.raises(IncompleteResult, match="endpoint discovery"):
            client.get_root_id()
    finally:
        client.close()
        srv.close()


# ---- the node store fed by a hostile changes stream --------------------------------------------

def _stream(*objects: Any, end: bool = True) -> list[bytes]:
    lines = [(o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objects]
    return lines + ([b'{"end": true}\n'] if end else [])


def _changes(nodes: list[Any], checkpoint: Any = "c2", **extra: Any) -> dict[str, Any]:
    return {"checkpoint": checkpoint, "reset": False, "statusCode": 200, "nodes": nodes, **extra}


SEED = _stream({"checkpoint": "c1", "reset": True, "statusCode": 200, "nodes": [
    node(ROOT, None, [], isRoot=True), node(FOLDER, "folder", [ROOT]), a_file(FILE, "file.bin", FOLDER)]})

HOSTILE_STREAMS: dict[str, list[bytes]] = {
    "no end": _stream(_changes([node(ID, "x", [ROOT])]), end=False),
    "garbage line": _stream(b"\x00\xffnot json"),
    "a list, not an object": _stream([1, 2]),
    "no checkpoint": _stream({"reset": False, "statusCode": 200, "nodes": []}),
    "checkpoint not a string": _stream(_changes([], checkpoint=5)),
    "nodes not a list": _stream(_changes({"id": ID})),  # type: ignore[arg-type]
    "node not an object": _stream(_changes(["x"])),
    "node without an id": _stream(_changes([{"name": "x", "parents": [ROOT]}])),
    "purged node without an id": _stream(_changes([{"status": "PURGED"}])),
    "giant size": _stream(_changes([a_file(ID, "giant", ROOT, size=10**30)])),
    "negative size": _stream(_changes([a_file(ID, "neg", ROOT, size=-5)])),
    "infinite size": [json.dumps(_changes([a_file(ID, "inf", ROOT, size=0)])).replace(
        '"size": 0', '"size": 1e999').encode() + b"\n", b'{"end": true}\n'],
    "size not a number": _stream(_changes([a_file(ID, "nan", ROOT, size="lots")])),
    "version beyond 64 bits": _stream(_changes([node(ID, "v", [ROOT], version=2**64)])),
    "date is an object": _stream(_changes([node(ID, "d", [ROOT], createdDate={"y": 1})])),
    "md5 is a list": _stream(_changes([node(ID, "m", [ROOT], kind="FILE",
                                            contentProperties={"size": 1, "md5": [1]})])),
    "parents not ids": _stream(_changes([node(ID, "p", [1, 2])])),
    "error status inside": _stream(_changes([], statusCode=500)),
    # the good change first: nothing of a stream is applied unless all of it is good
    "good then bad": _stream(_changes([node(ID, "good", [ROOT])]), _changes([{"id": 7}])),
}


def _mirror_digest(store: NodeStore) -> str:
    con = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    try:
        h = hashlib.sha256()
        for line in con.iterdump():
            h.update(line.encode())
        return h.hexdigest()
    finally:
        con.close()


@pytest.fixture
def seeded(hostile: Any, tmp_path: Path) -> Iterator[tuple[NodeStore, ACDClient, dict[str, list[bytes]]]]:
    """A mirror synced from a good stream; the test then sets ``script["stream"]`` to the next one."""
    script: dict[str, list[bytes]] = {"stream": SEED}
    client = hostile(lambda s: chunked(200, script["stream"]))
    store = NodeStore(tmp_path / "mirror" / "nodes.db")
    store.open()
    try:
        store.sync(client.get_changes)
        assert store.resolve("/folder/file.bin") is not None
        yield store, client, script
    finally:
        store.close()


@pytest.mark.parametrize("case", sorted(HOSTILE_STREAMS))
def test_hostile_changes_leave_the_mirror_unchanged(seeded: Any, case: str) -> None:
    store, client, script = seeded
    before = _mirror_digest(store)
    checkpoint = store.checkpoint
    script["stream"] = HOSTILE_STREAMS[case]
    with pytest.raises(SyncError) as info:
        store.sync(client.get_changes)
    cause = info.value.__cause__
    # the client refuses what is malformed as such; the store refuses values it cannot keep
    assert isinstance(cause, RequestError | ValueError), repr(cause)
    if isinstance(cause, RequestError):
        assert type(cause) is not RequestError or case == "error status inside", repr(cause)
    assert _mirror_digest(store) == before
    assert store.checkpoint == checkpoint
    assert store.resolve("/folder/file.bin") is not None


def test_odd_but_possible_nodes_are_stored_faithfully(seeded: Any) -> None:
    """What a drive can really hold is kept, and the mirror stays usable: a nameless node (Amazon sent
    some) is left out, a parent cycle and a folder inside itself are kept but unreachable from the
    root, and walking the tree ends; a large size that fits 64 bits is kept as it is."""
    store, client, script = seeded
    a, b, selfish, big = "a" * 22, "b" * 22, "s" * 22, "g" * 22
    script["stream"] = _stream(_changes([
        node(ID, None, [ROOT]),                       # no name
        node(a, "a", [b]), node(b, "b", [a]),          # a cycle, detached from the root
        node(selfish, "me", [selfish]),                # its own parent
        a_file(big, "big.bin", FOLDER, size=2**62),
    ]))
    result = store.sync(client.get_changes)
    assert result.skipped == 1
    assert store.get(ID) is None
    assert store.get(a) is not None and store.path_of(a) is None
    assert store.get(selfish) is not None and store.path_of(selfish) is None
    walked = [p for p, _ in store.walk("/")]
    assert walked == ["/", "/folder", "/folder/big.bin", "/folder/file.bin"]
    big_node = store.resolve("/folder/big.bin")
    assert big_node is not None and big_node.size == 2**62
