"""Fuzzing the server's parsers with Hypothesis: every bad input gets a 4xx, changes nothing, breaks nothing.

Covered: JSON bodies, multipart bodies, Range headers, filters/sort/paging, changes checkpoints and
options, node ids (and the other path segments), and the framing around them (header counts and sizes,
Content-Length, chunked bodies, raw garbage). For each input the server must

* answer with a status below 500 (a refused input gets a 4xx),
* leave its state as it was when it refused: a digest of every table and of the blob files is the
  same before and after (``state_digest``),
* keep serving (each test ends with a plain authorised request), and log no ERROR (the autouse check
  of tests/conftest.py fails the test otherwise).

CI runs a few dozen examples per test (the whole file takes seconds, and the examples are derandomized
so a run is reproducible). A long run: ``ACDFUSE_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest
tests/server/test_fuzz.py --hypothesis-show-statistics`` (random, with Hypothesis' example database in
``.hypothesis/``); RELIABILITY.md records one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acdfuse.server import DriveServer, ServerConfig

from .rawhttp import Answer, build, exchange

_LONG = int(os.environ.get("ACDFUSE_FUZZ_EXAMPLES", "0") or 0)
_SETTINGS: dict[str, Any] = {
    "max_examples": _LONG or 25,
    "deadline": None,  # a loaded CI machine must not turn a slow answer into a failure
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                              HealthCheck.data_too_large, HealthCheck.filter_too_much],
}
if not _LONG:
    # CI: the same examples every run, and no example database written into the work tree
    _SETTINGS.update(derandomize=True, database=None)
FUZZ = settings(**_SETTINGS)

FILE_CONTENT = bytes(range(256)) * 4  # 1024 bytes; Range answers are checked against it
MAX_FILE = 256 * 1024


@dataclass
class Drive:
    srv: DriveServer
    port: int
    token: str
    root: str
    folder: str
    file: str
    owner: str
    other_token: str
    other_ids: frozenset[str]  # nodes of the second account: must never show up for the first
    mine: frozenset[str]


def _call(port: int, token: str, method: str, path: str, body: Any = None, **params: str) -> Any:
    target = path + ("?" + urlencode(params) if params else "")
    raw = b"" if body is None else json.dumps(body).encode()
    ans = exchange(port, build(method, target, [("Authorization", "Bearer " + token)], raw), method=method)
    assert ans.status in (200, 201), (method, path, ans.status, ans.body[:300])
    return json.loads(ans.body) if ans.body.strip().startswith(b"{") else ans.body


def _upload(port: int, token: str, name: str, parent: str, data: bytes) -> dict[str, Any]:
    body, ctype = multipart([("metadata", None, json.dumps({"name": name, "parents": [parent]}).encode()),
                             ("content", "x", data)])
    ans = exchange(port, build("POST", "/cdproxy/nodes?suppress=deduplication",
                               [("Authorization", "Bearer " + token), ("Content-Type", ctype)], body),
                   method="POST")
    assert ans.status == 201, ans.body[:300]
    return dict(json.loads(ans.body))


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "fuzzbound7") -> tuple[bytes, str]:
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drive]:
    cfg = ServerConfig(data_dir=tmp_path_factory.mktemp("fuzz") / "data", port=0, max_file_size=MAX_FILE)
    srv = DriveServer(cfg)
    srv.start()
    try:
        port, token, other = srv.port, srv.access_token(), srv.access_token("other")
        root = _call(port, token, "GET", "/drive/v1/nodes", filters="isRoot:true")["data"][0]["id"]
        folder = _call(port, token, "POST", "/drive/v1/nodes", {"name": "folder", "kind": "FOLDER"})["id"]
        f = _upload(port, token, "file.bin", folder, FILE_CONTENT)
        owner = f["createdBy"]
        _call(port, token, "PUT", f"/drive/v1/nodes/{f['id']}/properties/{owner}/color", {"value": "red"})
        oroot = _call(port, other, "GET", "/drive/v1/nodes", filters="isRoot:true")["data"][0]["id"]
        ofolder = _call(port, other, "POST", "/drive/v1/nodes", {"name": "folder", "kind": "FOLDER"})["id"]
        ofile = _upload(port, other, "file.bin", ofolder, b"the other account's secret")["id"]
        srv.blob_sweep_done.wait(10)
        yield Drive(srv, port, token, root, folder, f["id"], owner, other,
                    frozenset({oroot, ofolder, ofile}), frozenset({root, folder, f["id"]}))
    finally:
        srv.close()


def state_digest(srv: DriveServer) -> str:
    """Every row of every table (read through a connection of our own) and every blob file's name and
    size; uploads in flight would show in tmp/."""
    data = Path(srv.config.data_dir)
    h = hashlib.sha256()
    con = sqlite3.connect(f"file:{data / 'drive.sqlite3'}?mode=ro", uri=True)
    try:
        for table, order in (("accounts", "id"), ("nodes", "id"), ("parents", "parent, child"),
                             ("properties", "node, owner, key"), ("tokens", "hash"), ("meta", "key")):
            for row in con.execute(f"SELECT * FROM {table} ORDER BY {order}"):  # noqa: S608 - fixed names
                h.update(repr(tuple(row)).encode())
    finally:
        con.close()
    for sub in ("blobs", "tmp"):
        for p in sorted((data / sub).rglob("*")):
            if p.is_file():
                h.update(f"{p.relative_to(data)}:{p.stat().st_size}".encode())
    return h.hexdigest()


def send(d: Drive, raw: bytes, method: str = "GET") -> Answer:
    return exchange(d.port, raw, method=method)


def authed(d: Drive, method: str, target: str, body: bytes = b"",
           headers: list[tuple[str, str]] | None = None, token: str | None = None) -> Answer:
    hdrs = [("Authorization", "Bearer " + (token or d.token)), *(headers or [])]
    return send(d, build(method, target, hdrs, body), method)


def assert_refused_unchanged(d: Drive, before: str, ans: Answer, what: object) -> None:
    assert 400 <= ans.status < 500, (what, ans.status, ans.body[:300])
    assert state_digest(d.srv) == before, (what, "state changed by a refused request")


def assert_still_serving(d: Drive) -> None:
    ans = authed(d, "GET", f"/drive/v1/nodes/{d.file}")
    assert ans.status == 200 and json.loads(ans.body)["id"] == d.file


# ---- strategies ---------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
# a value of the wrong type for any field that wants a string, a list of ids or an object
wrong_typed = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.lists(
    st.integers(), max_size=3) | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
not_json = st.binary(max_size=200).filter(lambda b: not _is_json(b)) | st.sampled_from(
    [b"{", b'{"name": "x",', b"[1, 2", b"\xff\xfe{}", b'{"a": NaN}', b"{'single': 1}", b"nul", b"\x00{}"])
not_an_object = json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode())


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


# ---- JSON bodies --------------------------------------------------------------------------------

def _json_endpoints(d: Drive) -> list[tuple[str, str]]:
    return [
        ("POST", "/drive/v1/nodes"),
        ("PATCH", f"/drive/v1/nodes/{d.file}"),
        ("PATCH", f"/drive/v1/nodes/{d.folder}"),
        ("POST", f"/drive/v1/nodes/{d.root}/children"),
        ("PUT", f"/drive/v1/nodes/{d.file}/properties/{d.owner}/fuzzkey"),
        ("POST", "/drive/v1/changes"),
    ]


@FUZZ
@given(data=st.data(), body=not_json | not_an_object)
def test_malformed_json_bodies_are_refused(drive: Drive, data: st.DataObject, body: bytes) -> None:
    method, path = data.draw(st.sampled_from(_json_endpoints(drive)))
    if path.endswith("/changes") and not body.strip():
        return  # an empty changes body means "no options": a valid request
    before = state_digest(drive.srv)
    ans = authed(drive, method, path, body, [("Content-Type", "application/json")])
    assert_refused_unchanged(drive, before, ans, (method, path, body))


@FUZZ
@given(data=st.data(), value=wrong_typed)
def test_wrongly_typed_fields_are_refused(drive: Drive, data: st.DataObject, value: Any) -> None:
    """A known field with a value of the wrong type: always a 400, never a 500 from deep inside."""
    d = drive
    cases = [
        ("POST", "/drive/v1/nodes", {"name": value, "kind": "FOLDER"}, str),
        ("POST", "/drive/v1/nodes", {"name": "n", "kind": "FOLDER", "parents": value}, list),
        ("POST", "/drive/v1/nodes", {"name": "n", "kind": "FOLDER", "labels": value}, list),
        ("POST", "/drive/v1/nodes", {"name": "n", "kind": "FOLDER", "description": value}, str),
        ("POST", "/drive/v1/nodes", {"name": "n", "kind": "FOLDER", "properties": value}, dict),
        ("PATCH", f"/drive/v1/nodes/{d.file}", {"name": value}, str),
        ("PATCH", f"/drive/v1/nodes/{d.file}", {"description": value}, str),
        ("PATCH", f"/drive/v1/nodes/{d.file}", {"labels": value}, list),
        ("PATCH", f"/drive/v1/nodes/{d.file}", {"parents": value}, list),
        ("POST", f"/drive/v1/nodes/{d.root}/children", {"fromParent": value, "childId": d.file}, str),
        ("POST", f"/drive/v1/nodes/{d.root}/children", {"fromParent": d.folder, "childId": value}, str),
        ("PUT", f"/drive/v1/nodes/{d.file}/properties/{d.owner}/k", {"value": value}, str),
        ("POST", "/drive/v1/changes", {"checkpoint": value}, str),
        ("POST", "/drive/v1/changes", {"chunkSize": value}, int),
        ("POST", "/drive/v1/changes", {"includePurged": value}, bool),
    ]
    method, path, body, wanted = data.draw(st.sampled_from(cases))
    if isinstance(value, wanted) or value is None or (wanted is int and isinstance(value, float | str)):
        return  # not wrong for this field (None means "absent" for optional fields)
    if wanted is list and value == []:
        return  # an empty label list is fine
    if wanted is dict and value == {}:
        return
    if wanted is int and isinstance(value, bool):
        return  # JSON true is 1 to Python; the server may take it
    if wanted is bool and value in (0, 1):
        return
    before = state_digest(d.srv)
    ans = authed(d, method, path, json.dumps(body).encode())
    assert_refused_unchanged(d, before, ans, (method, path, body))


@FUZZ
@given(data=st.data(), body=json_values)
def test_any_json_body_never_breaks_the_server(drive: Drive, data: st.DataObject, body: Any) -> None:
    """Arbitrary JSON (which may be a valid request): below 500, and a refusal changes nothing."""
    method, path = data.draw(st.sampled_from(_json_endpoints(drive)))
    before = state_digest(drive.srv)
    ans = authed(drive, method, path, json.dumps(body).encode())
    assert ans.status < 500, (method, path, body, ans.status, ans.body[:300])
    if ans.status >= 400:
        assert state_digest(drive.srv) == before, (method, path, body)
    else:
        _undo(drive)


def _undo(d: Drive) -> None:
    """Put the seeded nodes back where the other tests expect them (a valid fuzz request may have
    renamed or moved them); new nodes a valid request made stay, which is harmless."""
    for nid, name, parent in ((d.folder, "folder", d.root), (d.file, "file.bin", d.folder)):
        node = json.loads(authed(d, "GET", f"/drive/v1/nodes/{nid}").body)
        if node["status"] != "AVAILABLE":
            authed(d, "POST", f"/drive/v1/trash/{nid}/restore")
        patch: dict[str, Any] = {}
        if node["name"] != name:
            patch["name"] = name
        if node["parents"] != [parent]:
            patch["parents"] = [parent]
        if patch:
            ans = authed(d, "PATCH", f"/drive/v1/nodes/{nid}", json.dumps(patch).encode())
            assert ans.status == 200, ans.body[:300]


# ---- multipart bodies ---------------------------------------------------------------------------

def _valid_upload(name: str = "fuzz.bin", data: bytes = b"fuzz content") -> tuple[bytes, str]:
    return multipart([("metadata", None, json.dumps({"name": name}).encode()), ("content", "x", data)])


@st.composite
def bad_multipart(draw: st.DrawFn) -> tuple[str, bytes]:
    """(Content-Type, body) of an upload that cannot be valid."""
    kind = draw(st.sampled_from(["truncated", "ctype", "metadata", "order", "garbage", "headers",
                                 "noclose", "bigmeta"]))
    body, ctype = _valid_upload()
    if kind == "truncated":
        end = body.rindex(b"--fuzzbound7--")  # anything before the close delimiter is incomplete
        return ctype, body[: draw(st.integers(0, end))]
    if kind == "ctype":
        bad = draw(st.sampled_from(["", "application/json", "multipart/form-data",
                                    "multipart/form-data; boundary=", "multipart/mixed; boundary=fuzzbound7",
                                    "multipart/form-data; boundary=" + "b" * 201,
                                    "multipart/form-data; boundary=otherbound"]) | st.text(max_size=60))
        if bad.lower().replace(" ", "").startswith("multipart/form-data;boundary=fuzzbound7"):
            bad = "text/plain"
        return bad, body
    if kind == "metadata":
        meta = draw(not_json | not_an_object | st.sampled_from(
            [b'{"kind": "FOLDER", "name": "x"}', b'{"name": ""}', b'{"name": "a/b"}', b'{"name": 5}',
             b'{"name": "x", "parents": ["nope"]}', b'{"name": "x", "bogus": 1}']))
        return ctype, multipart([("metadata", None, meta), ("content", "x", b"data")])[0]
    if kind == "order":
        parts = draw(st.sampled_from([
            [("content", "x", b"data"), ("metadata", None, b'{"name": "x"}')],
            [("content", "x", b"data")],
            [("metadata", None, b'{"name": "x"}')],
            [("metadata", None, b'{"name": "x"}'), ("metadata", None, b'{"name": "y"}')],
            [("metadata", None, b'{"name": "x"}'), ("surprise", None, b"1"), ("content", "x", b"d")],
            [],
        ]))
        return ctype, multipart(parts)[0]
    if kind == "garbage":
        return ctype, draw(st.binary(max_size=300))
    if kind == "headers":
        junk = draw(st.binary(min_size=1, max_size=80).filter(lambda b: b"\r\n\r\n" not in b))
        return ctype, b"--fuzzbound7" + junk + b"\r\n\r\n{}\r\n--fuzzbound7--\r\n"
    if kind == "noclose":
        return ctype, body[: body.rindex(b"--fuzzbound7--")] + draw(st.binary(max_size=40))
    # a metadata part over its 64 KiB limit
    big = json.dumps({"name": "x", "description": "d" * 70_000}).encode()
    return ctype, multipart([("metadata", None, big), ("content", "x", b"d")])[0]


@FUZZ
@given(case=bad_multipart(), overwrite=st.booleans())
def test_bad_multipart_bodies_are_refused(drive: Drive, case: tuple[str, bytes], overwrite: bool) -> None:
    ctype, body = case
    target = (f"/cdproxy/nodes/{drive.file}/content" if overwrite
              else "/cdproxy/nodes?suppress=deduplication")
    if overwrite and b'name="content"' in body and body.rstrip().endswith(b"--fuzzbound7--") \
            and ctype.startswith("multipart/form-data; boundary=fuzzbound7"):
        return  # an overwrite ignores its metadata part, so a well-framed body may be valid
    before = state_digest(drive.srv)
    ans = authed(drive, "PUT" if overwrite else "POST", target, body, [("Content-Type", ctype)])
    assert_refused_unchanged(drive, before, ans, (target, ctype, body[:200]))


def test_content_length_longer_than_the_body(drive: Drive) -> None:
    """The client promises more than it sends and closes: 400, no node, no blob, no temp file."""
    body, ctype = _valid_upload()
    before = state_digest(drive.srv)
    for cut in (len(body) - 1, len(body) // 2, 10):
        raw = build("POST", "/cdproxy/nodes?suppress=deduplication",
                    [("Authorization", "Bearer " + drive.token), ("Content-Type", ctype),
                     ("Content-Length", str(len(body)))], body[:cut])
        assert_refused_unchanged(drive, before, send(drive, raw, "POST"), cut)
    assert_still_serving(drive)


def test_oversized_upload_is_refused_before_the_body(drive: Drive) -> None:
    """A Content-Length over max_file_size is answered 413 at once: no byte of the body is needed."""
    before = state_digest(drive.srv)
    with socket.create_connection(("127.0.0.1", drive.port), timeout=10) as s:
        s.sendall(build("POST", "/cdproxy/nodes?suppress=deduplication",
                        [("Authorization", "Bearer " + drive.token),
                         ("Content-Type", "multipart/form-data; boundary=b"),
                         ("Content-Length", str(10 * 1024**4))], close=False))
        s.settimeout(10)
        head = s.recv(4096)  # no body sent: the answer must not wait for it
    assert head.startswith(b"HTTP/1.1 413"), head[:100]
    assert state_digest(drive.srv) == before
    assert_still_serving(drive)


def test_endless_json_body_is_cut_off(drive: Drive) -> None:
    """A chunked JSON body that never ends: 413 after max_json_body, and the server stops reading
    after a bounded amount (it closes the connection), so neither memory nor the disk fills up."""
    limit = drive.srv.config.max_json_body
    sent = 0
    stop = threading.Event()
    answer: list[bytes] = []
    with socket.create_connection(("127.0.0.1", drive.port), timeout=30) as s:
        s.sendall(build("POST", "/drive/v1/nodes",
                        [("Authorization", "Bearer " + drive.token), ("Transfer-Encoding", "chunked")],
                        close=False))

        def read() -> None:
            answer.append(s.recv(4096))
            stop.set()

        reader = threading.Thread(target=read)
        reader.start()
        chunk = b"%x\r\n" % 65536 + b"[" * 65536 + b"\r\n"
        try:
            while sent < 200 * 1024 * 1024:
                s.sendall(chunk)
                sent += 65536
        except OSError:
            pass  # the server closed the connection: what we want
        reader.join(30)
    assert stop.is_set() and answer and answer[0].startswith(b"HTTP/1.1 413"), answer[:1]
    # read: the JSON limit, then at most DRAIN_AFTER_413 more, plus what the socket buffers held
    assert sent < limit + 64 * 1024 * 1024 + 16 * 1024 * 1024, sent
    assert_still_serving(drive)


# ---- Range headers ------------------------------------------------------------------------------

range_text = st.one_of(
    st.text(max_size=40),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.integers(-5, 2000) | st.just(10**30),
              st.integers(-5, 2000) | st.just(10**30)),
    st.builds(lambda a: f"bytes={a}-", st.integers(-5, 2000)),
    st.builds(lambda n: f"bytes=-{n}", st.integers(-5, 2000)),
    st.builds(lambda u, s: f"{u}={s}", st.sampled_from(["bytes", "BYTES", "items", " bytes", ""]),
              st.text(alphabet="0123456789-, =", max_size=20)),
)


@FUZZ
@given(rng=range_text)
def test_range_headers(drive: Drive, rng: str) -> None:
    """Any Range header: 200, 206 with exactly the announced bytes, 400 or 416; never a 5xx."""
    rng = rng.replace("\r", "").replace("\n", "")
    before = state_digest(drive.srv)
    ans = authed(drive, "GET", f"/cdproxy/nodes/{drive.file}/content", headers=[("Range", rng)])
    size = len(FILE_CONTENT)
    assert ans.status in (200, 206, 400, 416), (rng, ans.status, ans.body[:200])
    if ans.status == 206:
        unit, _, spec = ans.headers["content-range"].partition(" ")
        first, _, rest = spec.partition("-")
        last, _, total = rest.partition("/")
        assert unit == "bytes" and int(total) == size
        assert ans.body == FILE_CONTENT[int(first): int(last) + 1]
    elif ans.status == 200:
        assert ans.body == FILE_CONTENT
    elif ans.status == 416:
        assert ans.headers["content-range"] == f"bytes */{size}"
    assert state_digest(drive.srv) == before


# ---- filters, sort, paging ----------------------------------------------------------------------

filter_atoms = st.sampled_from([
    "name:", "kind:", "FILE", "FOLDER", "AND", "OR", "NOT", "(", ")", "[", "]", "{", "}", "TO", "*", '"',
    "\\", " ", "parents:", "isRoot:true", "x", "contentProperties.size:", "1", ":", "modifiedDate:",
    "2014-01-01T00:00:00Z", "labels:", "status:TRASH", "é", "\x00", "id:", "version:", "file.bin",
    "contentProperties.md5:", "createdDate:", "description:", "-", "'", "%", "_",
])
filter_text = st.lists(filter_atoms, max_size=14).map("".join) | st.text(max_size=60)


@FUZZ
@given(ftext=filter_text, sort=st.none() | filter_text | st.sampled_from(
    ['["name ASC"]', "['name DESC']", "name", '["bogus ASC"]', "[", '["name ASC", 5]']),
    limit=st.none() | st.text(max_size=5) | st.integers(-3, 300).map(str),
    token=st.none() | st.text(max_size=30) | st.binary(max_size=40).map(
        lambda b: base64.urlsafe_b64encode(b).decode()))
def test_filters_sort_and_paging(drive: Drive, ftext: str, sort: str | None, limit: str | None,
                                 token: str | None) -> None:
    """200 with only this account's nodes, or 400; a list never changes anything."""
    params = {"filters": ftext}
    for key, value in (("sort", sort), ("limit", limit), ("startToken", token)):
        if value is not None:
            params[key] = value
    before = state_digest(drive.srv)
    for path in ("/drive/v1/nodes", f"/drive/v1/nodes/{drive.folder}/children", "/drive/v1/trash"):
        ans = authed(drive, "GET", path + "?" + urlencode(params))
        assert ans.status in (200, 400), (path, params, ans.status, ans.body[:300])
        if ans.status == 200:
            page = json.loads(ans.body)
            leaked = {n["id"] for n in page["data"]} & drive.other_ids
            assert not leaked, (path, params, leaked)
    assert state_digest(drive.srv) == before


# ---- changes: checkpoints and options -----------------------------------------------------------

def _forged_checkpoint(epoch: str, account: int, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{epoch}.{account}.{seq}".encode()).decode().rstrip("=")


checkpoints = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=30).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    st.builds(_forged_checkpoint, st.text(alphabet="0123456789abcdef.", max_size=9),
              st.integers(-2, 5), st.integers(-(10**20), 10**20)),
)


@FUZZ
@given(checkpoint=checkpoints, epoch_right=st.booleans(), account=st.integers(-1, 4),
       seq=st.integers(-5, 10**6), chunk=st.none() | json_scalars, max_nodes=st.none() | json_scalars,
       purged=st.none() | json_scalars)
def test_changes_checkpoints_and_options(drive: Drive, checkpoint: str, epoch_right: bool, account: int,
                                        seq: int, chunk: Any, max_nodes: Any, purged: Any) -> None:
    """A garbage or forged checkpoint gets a full dump of this account with ``reset: true`` (or 400 for
    bad options); a stream always ends with ``{"end": true}`` and never holds another account's node."""
    if epoch_right:  # a well-formed checkpoint of this drive, naming any account and number
        checkpoint = _forged_checkpoint(drive.srv.drive.epoch, account, seq)
    body: dict[str, Any] = {"checkpoint": checkpoint}
    for key, value in (("chunkSize", chunk), ("maxNodes", max_nodes), ("includePurged", purged)):
        if value is not None:
            body[key] = value
    before = state_digest(drive.srv)
    ans = authed(drive, "POST", "/drive/v1/changes", json.dumps(body).encode())
    assert ans.status in (200, 400), (body, ans.status, ans.body[:300])
    if ans.status == 200:
        lines = [json.loads(line) for line in ans.body.splitlines() if line.strip()]
        assert lines[-1] == {"end": True}
        ids = {n["id"] for o in lines[:-1] for n in o["nodes"]}
        assert not ids & drive.other_ids, body
    assert state_digest(drive.srv) == before


# ---- ids and other path segments ----------------------------------------------------------------

segment = st.one_of(
    st.text(min_size=1, max_size=40),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=20,
            max_size=24),
    st.sampled_from(["..", ".", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "%00", "A" * 22 + "%2F", "../" * 8,
                     "/" + "A" * 22, "A" * 22 + "/..", "A" * 5000]),
)
ID_TEMPLATES = [
    ("GET", "/drive/v1/nodes/{x}"), ("PATCH", "/drive/v1/nodes/{x}"), ("DELETE", "/drive/v1/nodes/{x}"),
    ("GET", "/drive/v1/nodes/{x}/children"), ("POST", "/drive/v1/nodes/{x}/children"),
    ("PUT", "/drive/v1/nodes/{folder}/children/{x}"), ("DELETE", "/drive/v1/nodes/{x}/children/{file}"),
    ("GET", "/drive/v1/nodes/{x}/properties/{owner}"), ("PUT", "/drive/v1/nodes/{x}/properties/{owner}/k"),
    ("PUT", "/drive/v1/trash/{x}"), ("POST", "/drive/v1/trash/{x}/restore"),
    ("GET", "/cdproxy/nodes/{x}/content"), ("PUT", "/cdproxy/nodes/{x}/content"),
    ("GET", "/cdproxy/templink/{x}"),
]


@FUZZ
@given(template=st.sampled_from(ID_TEMPLATES), x=segment, encode=st.booleans(),
       theirs=st.sampled_from([None, 0, 1, 2]))
def test_ids_in_paths(drive: Drive, template: tuple[str, str], x: str, encode: bool,
                      theirs: int | None) -> None:
    """Unknown, malformed and path-trick ids, and the other account's real ids: 4xx, nothing changes."""
    method, pattern = template
    if theirs is not None:
        x = sorted(drive.other_ids)[theirs]
    elif encode or not x.isprintable() or " " in x:
        x = quote(x, safe="")
    if x in drive.mine or quote(x, safe="") in drive.mine:
        return
    target = pattern.format(x=x, folder=drive.folder, file=drive.file, owner=drive.owner)
    body = b'{"value": "v"}' if "properties" in pattern else b'{"fromParent": "%s", "childId": "%s"}' % (
        drive.root.encode(), drive.file.encode()) if pattern.endswith("children") else b""
    if pattern.endswith("/content") and method == "PUT":
        body, ctype = _valid_upload()
        headers = [("Content-Type", ctype)]
    else:
        headers = [("Content-Type", "application/json")] if body else []
    before = state_digest(drive.srv)
    ans = authed(drive, method, target, body, headers)
    assert_refused_unchanged(drive, before, ans, (method, target))


# ---- framing: header counts and sizes, Content-Length, chunked, garbage ---------------------------

def test_header_limits(drive: Drive) -> None:
    before = state_digest(drive.srv)
    auth = [("Authorization", "Bearer " + drive.token)]
    many = [(f"X-Fuzz-{i}", "v") for i in range(150)]
    assert send(drive, build("GET", "/drive/v1/account/info", auth + many)).status == 431
    huge = [("X-Fuzz", "v" * 70_000)]
    assert send(drive, build("GET", "/drive/v1/account/info", auth + huge)).status == 431
    assert send(drive, build("GET", "/drive/v1/nodes?x=" + "a" * 70_000, auth)).status == 414
    bad_cl = [("Content-Length", v) for v in ("-1", "abc", "1e3", "0x10", " ", "99999999999999999999x")]
    for h in bad_cl:
        assert send(drive, build("POST", "/drive/v1/nodes", [*auth, h], b"{}"), "POST").status == 400, h
    big_cl = build("POST", "/drive/v1/nodes", [*auth, ("Content-Length", str(10**15))], b"{}")
    assert send(drive, big_cl, "POST").status == 413
    assert state_digest(drive.srv) == before
    assert_still_serving(drive)


chunked_bodies = st.one_of(
    st.binary(max_size=120),
    st.lists(st.sampled_from([b"zz\r\n", b"-1\r\n", b"5\r\nab\r\n", b"3\r\nabcXY", b"0\r\n",
                              b"ffffffffffffffffffff\r\n", b"1;ext=" + b"e" * 5000 + b"\r\n", b"\r\n",
                              b"2\r\n{}\r\n", b"0\r\nTrailer: x\r\n"]), max_size=5).map(b"".join),
)


@FUZZ
@given(body=chunked_bodies)
def test_broken_chunked_bodies(drive: Drive, body: bytes) -> None:
    before = state_digest(drive.srv)
    raw = build("POST", "/drive/v1/nodes",
                [("Authorization", "Bearer " + drive.token), ("Transfer-Encoding", "chunked")], body)
    ans = send(drive, raw, "POST")
    assert_refused_unchanged(drive, before, ans, body)


def test_unknown_transfer_encoding(drive: Drive) -> None:
    """501 (RFC 9112 6.1: a transfer coding the server does not know), the one non-4xx refusal."""
    before = state_digest(drive.srv)
    raw = build("POST", "/drive/v1/nodes",
                [("Authorization", "Bearer " + drive.token), ("Transfer-Encoding", "gzip")], b"{}")
    assert send(drive, raw, "POST").status == 501
    assert state_digest(drive.srv) == before


@FUZZ
@given(raw=st.one_of(
    st.binary(min_size=1, max_size=300),
    st.builds(lambda m, t, v: f"{m} {t} {v}\r\n\r\n".encode("utf-8", "surrogateescape"),
              st.text(max_size=10), st.text(max_size=30), st.text(max_size=12)),
    st.builds(lambda k, v: b"GET /drive/v1/account/info HTTP/1.1\r\n" + k + b": " + v + b"\r\n\r\n",
              st.binary(max_size=30), st.binary(max_size=60)),
))
def test_garbage_requests(drive: Drive, raw: bytes) -> None:
    """Bytes that are not (quite) a request: a 4xx or a closed connection, and the server lives on."""
    before = state_digest(drive.srv)
    ans = send(drive, raw)
    assert ans.status < 500 or ans.status == 501 or ans.status == 505, (raw, ans.status, ans.body[:200])
    assert state_digest(drive.srv) == before
    assert_still_serving(drive)


def test_slow_drip_does_not_hold_the_server(drive: Drive) -> None:
    """Connections that stall mid-request do not keep other clients from being served."""
    socks = []
    try:
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", drive.port), timeout=10)
            s.sendall(b"POST /drive/v1/nodes HTTP/1.1\r\nContent-Length: 100\r\n")
            socks.append(s)
        assert_still_serving(drive)  # within exchange()'s timeout
    finally:
        for s in socks:
            s.close()


# ---- regressions found by the long runs ---------------------------------------------------------

def test_json_constants_and_huge_numbers(drive: Drive) -> None:
    """Python's json takes NaN and Infinity (and 1e999 becomes infinity): they used to reach int()
    as a chunkSize (500), and a size filter beyond 64 bits overflowed SQLite (500)."""
    before = state_digest(drive.srv)
    for body in (b'{"chunkSize": 1e999}', b'{"maxNodes": -1e999}', b'{"a": NaN}', b'{"chunkSize": Infinity}'):
        ans = authed(drive, "POST", "/drive/v1/changes", body)
        assert ans.status == 400, (body, ans.status, ans.body[:200])
    meta = b'{"name": "n.bin", "x": NaN}'
    body, ctype = multipart([("metadata", None, meta), ("content", "x", b"d")])
    assert authed(drive, "POST", "/cdproxy/nodes", body, [("Content-Type", ctype)]).status == 400
    for text in ("contentProperties.size:99999999999999999999999",
                 "contentProperties.size:[* TO 99999999999999999999999]", "version:-99999999999999999999999"):
        ans = authed(drive, "GET", "/drive/v1/nodes?" + urlencode({"filters": text}))
        assert ans.status == 200, (text, ans.status, ans.body[:200])
    ans = authed(drive, "GET", "/drive/v1/nodes?" + urlencode(
        {"filters": "contentProperties.size:[1000 TO 99999999999999999999999]"}))
    assert drive.file in {n["id"] for n in json.loads(ans.body)["data"]}
    assert authed(drive, "GET", f"/drive/v1/nodes/{drive.file}%0A").status == 404
    assert state_digest(drive.srv) == before
