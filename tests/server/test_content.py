"""Uploads (multipart, chunked, empty, dedup, localId), overwrite, downloads with Range, thumbnails."""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import requests
from PIL import Image

from acdfuse.server import DriveServer

from .conftest import RawDrive


def test_upload_and_download(api: RawDrive, drive_server: DriveServer) -> None:
    data = os.urandom(300_000)
    drive_server.stats.reset()
    n = api.upload("Report.PDF", data)
    assert n["kind"] == "FILE" and n["name"] == "Report.PDF" and n["parents"] == [api.root]
    cp = n["contentProperties"]
    assert cp["size"] == len(data) and cp["md5"] == hashlib.md5(data).hexdigest()
    assert cp["version"] == 1 and cp["extension"] == "pdf" and cp["contentType"] == "application/pdf"
    r = api.download(n["id"])
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Length"] == str(len(data))
    stats = drive_server.stats.snapshot()
    assert stats["upload"] == 1 and stats["download"] == 1


def test_range_requests(api: RawDrive) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    n = api.upload("r.bin", data)
    nid = n["id"]

    def get(rng: str) -> requests.Response:
        return api.download(nid, headers={"Range": rng})

    r = get("bytes=0-99")
    assert r.status_code == 206 and r.content == data[:100]
    assert r.headers["Content-Range"] == f"bytes 0-99/{len(data)}"
    r = get("bytes=10000-")
    assert r.status_code == 206 and r.content == data[10000:]
    r = get("bytes=10000-999999")  # end clamped to EOF
    assert r.status_code == 206 and r.content == data[10000:]
    r = get("bytes=-40")
    assert r.status_code == 206 and r.content == data[-40:]
    r = get(f"bytes={len(data) - 1}-{len(data) - 1}")
    assert r.status_code == 206 and r.content == data[-1:]
    for past in (f"bytes={len(data)}-", f"bytes={len(data) + 5}-{len(data) + 10}"):
        r = get(past)
        assert r.status_code == 416, past
        assert r.headers["Content-Range"] == f"bytes */{len(data)}"
    for bad in ("bytes=5-2", "lines=0-1", "bytes=a-b", "bytes=0-1,5-6", "bytes=", "bytes=--1"):
        assert get(bad).status_code == 400, bad
    # and the connection is still usable afterwards
    assert api.download(nid).content == data


def test_concurrent_range_reads(api: RawDrive, drive_server: DriveServer) -> None:

    data = os.urandom(2 * 1024 * 1024)
    nid = api.upload("big.bin", data)["id"]
    token = api.s.headers["Authorization"]

    def read(i: int) -> bool:
        start = (i * 65537) % len(data)
        end = min(len(data) - 1, start + 200_000)
        with requests.Session() as s:
            r = s.get(
                f"{drive_server.base_url}/cdproxy/nodes/{nid}/content",
                headers={"Authorization": token, "Range": f"bytes={start}-{end}"},
                timeout=60,
            )
        return r.status_code == 206 and r.content == data[start : end + 1]

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        assert all(ex.map(read, range(48)))


def test_templink(api: RawDrive, drive_server: DriveServer) -> None:
    data = os.urandom(5000)
    f = api.upload("t.bin", data)
    assert "tempLink" not in api.get(f"nodes/{f['id']}").json()
    assert api.get(f"nodes/{f['id']}", params={"asset": "ALL"}).json()["assets"] == []
    link = api.get(f"nodes/{f['id']}", params={"tempLink": "true"}).json()["tempLink"]
    assert link.startswith(drive_server.base_url + "/cdproxy/templink/")
    r = requests.get(link, timeout=10)  # no Authorization header
    assert r.status_code == 200 and r.content == data
    r = requests.get(link, headers={"Range": "bytes=10-19"}, timeout=10)
    assert r.status_code == 206 and r.content == data[10:20]
    # forged or tampered links get 404
    assert requests.get(link[:-3] + "AAA", timeout=10).status_code == 404
    assert (
        requests.get(drive_server.base_url + "/cdproxy/templink/" + "x" * 40, timeout=10).status_code == 404
    )
    # lists add tempLinks to files when asked
    d = api.mkdir("d")
    page = api.get(f"nodes/{api.root}/children", params={"tempLink": "true"}).json()["data"]
    links = {n["name"]: n.get("tempLink") for n in page}
    assert links["d"] is None and links["t.bin"]
    assert requests.get(links["t.bin"], timeout=10).content == data
    assert d["id"]
    # a trashed-then-purged file's link stops working
    api.put(f"trash/{f['id']}")
    drive_server.purge(f["id"])
    assert requests.get(link, timeout=10).status_code == 404


def test_empty_file(api: RawDrive) -> None:
    n = api.upload("empty.txt", b"")
    assert n["contentProperties"]["size"] == 0
    assert n["contentProperties"]["md5"] == "d41d8cd98f00b204e9800998ecf8427e"
    r = api.download(n["id"])
    assert r.status_code == 200 and r.content == b""
    assert api.download(n["id"], headers={"Range": "bytes=0-"}).status_code == 416


def test_chunked_streaming_upload_with_epilogue(api: RawDrive) -> None:
    """The way acd_cli streams: a generator body (chunked), an epilogue after the close delimiter."""
    boundary = uuid.uuid4().hex
    payload = os.urandom(1_000_003)

    def body() -> Iterator[bytes]:
        meta = json.dumps({"kind": "FILE", "name": "stream.bin", "parents": [api.root]})
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{meta}\r\n').encode()
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="foo"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for i in range(0, len(payload), 77777):
            yield payload[i : i + 77777]
        yield f"\r\n--{boundary}--\r\nmultipart/form-data; boundary={boundary}".encode()

    r = api.s.post(
        api.content + "nodes",
        params={"suppress": "deduplication"},
        data=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert r.json()["contentProperties"]["md5"] == hashlib.md5(payload).hexdigest()
    assert api.download(r.json()["id"]).content == payload


def test_boundary_like_bytes_inside_content(api: RawDrive) -> None:
    boundary = "XyZ"
    # everything that looks like the delimiter except the delimiter itself (CRLF "--XyZ")
    data = b"--XyZ\r\n" + b"\r\n--XyY" + b"\r\n--Xy" + os.urandom(1000) + b"\r\n-" + b"\r\n--X"
    meta = json.dumps({"kind": "FILE", "name": "tricky.bin"})
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{meta}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="x"\r\n\r\n'
    ).encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    r = api.s.post(
        api.content + "nodes",
        params={"suppress": "deduplication"},
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    assert api.download(r.json()["id"]).content == data


def test_bad_uploads_change_nothing(api: RawDrive) -> None:
    url = api.content + "nodes"
    # not multipart
    assert (
        api.s.post(url, data=b"hello", headers={"Content-Type": "text/plain"}, timeout=10).status_code == 400
    )
    # multipart without a closing delimiter
    body = (
        b'--B\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{"name":"x"}\r\n--B\r\n'
        b'Content-Disposition: form-data; name="content"\r\n\r\nabc'
    )
    r = api.s.post(url, data=body, headers={"Content-Type": "multipart/form-data; boundary=B"}, timeout=10)
    assert r.status_code == 400
    # malformed metadata JSON
    files = {"metadata": (None, "{nope"), "content": ("x", b"abc")}
    assert api.s.post(url, files=files, timeout=10).status_code == 400
    # content before metadata / missing content / missing metadata
    files2 = [("content", ("x", b"abc")), ("metadata", (None, json.dumps({"name": "a"})))]
    assert api.s.post(url, files=files2, timeout=10).status_code == 400
    assert (
        api.s.post(url, files={"metadata": (None, json.dumps({"name": "a"}))}, timeout=10).status_code == 400
    )
    assert api.s.post(url, files={"content": ("x", b"abc")}, timeout=10).status_code == 400
    # unknown parent
    r = api.upload_raw("a.txt", b"abc", "AAAAAAAAAAAAAAAAAAAAAA")
    assert r.status_code == 400 and "parentId" in r.json()["message"]
    # a folder kind on the content URL
    files = {"metadata": (None, json.dumps({"name": "d", "kind": "FOLDER"})), "content": ("x", b"abc")}
    assert api.s.post(url, files=files, params={"suppress": "deduplication"}, timeout=10).status_code == 400
    assert api.list_all(f"nodes/{api.root}/children") == []
    # no stray blobs or temp files were left behind
    data_dir = api.srv.config.data_dir
    assert list((data_dir / "tmp").iterdir()) == []
    assert [p for p in (data_dir / "blobs").rglob("*") if p.is_file()] == []


def test_duplicate_content(api: RawDrive) -> None:
    first = api.upload("one.bin", b"same bytes")
    r = api.upload_raw("two.bin", b"same bytes", dedup=True)
    assert r.status_code == 409
    assert r.json()["info"]["nodeId"] == first["id"]
    # suppress=deduplication allows it
    assert api.upload_raw("two.bin", b"same bytes").status_code == 201
    # empty files never count as duplicates
    api.upload("e1", b"")
    assert api.upload_raw("e2", b"", dedup=True).status_code == 201


def test_local_id(api: RawDrive) -> None:
    r = api.upload_raw("a.txt", b"a", params={"localId": "guid-1"})
    assert r.status_code == 201
    r = api.upload_raw("b.txt", b"b", params={"localId": "guid-1"})
    assert r.status_code == 409 and r.json()["info"]["nodeId"]


def test_overwrite(api: RawDrive) -> None:
    n = api.upload("doc.txt", b"version one")
    r = api.overwrite(n["id"], b"the second version")
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["id"] == n["id"] and m["version"] == n["version"] + 1
    assert m["contentProperties"]["version"] == 2
    assert m["contentProperties"]["size"] == len(b"the second version")
    assert m["contentProperties"]["md5"] == hashlib.md5(b"the second version").hexdigest()
    assert m["modifiedDate"] >= n["modifiedDate"]
    assert api.download(n["id"]).content == b"the second version"
    # the same content again is allowed (no dedup on overwrite) and still bumps versions
    m2 = api.overwrite(n["id"], b"the second version").json()
    assert m2["contentProperties"]["version"] == 3 and m2["version"] == m["version"] + 1
    # a metadata part is tolerated
    files = {"metadata": (None, "{}"), "content": ("x", b"third")}
    r = api.s.put(api.content + f"nodes/{n['id']}/content", files=files, timeout=10)
    assert r.status_code == 200 and api.download(n["id"]).content == b"third"
    # folders and unknown ids cannot be overwritten
    d = api.mkdir("d")
    assert api.overwrite(d["id"], b"x").status_code == 400
    assert api.overwrite("AAAAAAAAAAAAAAAAAAAAAA", b"x").status_code == 404


def test_thumbnail(api: RawDrive) -> None:

    buf = io.BytesIO()
    Image.new("RGB", (640, 320), (200, 10, 10)).save(buf, "JPEG")
    n = api.upload("photo.jpg", buf.getvalue())
    r = api.download(n["id"], params={"viewBox": "100"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert max(img.size) == 100 and img.size == (100, 50)
    assert api.download(n["id"], params={"viewBox": "abc"}).status_code == 400
    t = api.upload("t.txt", b"not an image")
    assert api.download(t["id"], params={"viewBox": "100"}).status_code == 404


def test_big_rejected_upload_still_gets_its_409(api: RawDrive) -> None:
    """The conflict is known from the metadata part; the client still reads the 409 (not a reset)."""
    first = api.upload("dup.bin", b"a")
    r = api.upload_raw("DUP.bin", b"\0" * (80 * 1024 * 1024))
    assert r.status_code == 409 and r.json()["info"]["nodeId"] == first["id"]
    assert api.get("account/info").status_code == 200


def test_keep_alive_survives_rejected_upload(api: RawDrive) -> None:
    """A 409 upload whose body the server did not need must not desynchronise the connection."""
    api.upload("x.bin", b"a")
    for _ in range(3):
        r = api.upload_raw("X.BIN", os.urandom(500_000))
        assert r.status_code == 409
        assert api.get("account/info").status_code == 200


def test_client_vanishing_mid_upload_leaves_nothing(api: RawDrive, drive_server: DriveServer) -> None:
    """Half an upload, then the connection drops: no node, no blob, no temp file; the server goes on."""

    boundary = "cut"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n'
        '{"name": "half.bin"}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="x"\r\n\r\n'
    ).encode()
    body_len = len(head) + 1_000_000 + len(f"\r\n--{boundary}--\r\n")
    request = (
        f"POST /cdproxy/nodes?suppress=deduplication HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: {api.s.headers['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {body_len}\r\n\r\n"
    ).encode()
    api.get("account/info")  # the session's keep-alive connection is open before we count
    before = drive_server.open_connections
    with socket.create_connection(("127.0.0.1", drive_server.port)) as sock:
        sock.sendall(request + head + os.urandom(300_000))
        deadline = time.monotonic() + 10
        while drive_server.open_connections == before and time.monotonic() < deadline:
            time.sleep(0.01)  # wait until the server has taken the connection
    deadline = time.monotonic() + 10  # then until its handler has finished with it
    while drive_server.open_connections > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert drive_server.open_connections == before
    assert drive_server.stats.snapshot()["upload"] == 1
    data_dir = drive_server.config.data_dir
    assert list((data_dir / "tmp").iterdir()) == []
    assert [p for p in (data_dir / "blobs").rglob("*") if p.is_file()] == []
    assert api.list_all(f"nodes/{api.root}/children") == []
    assert api.upload("whole.bin", b"fine")["name"] == "whole.bin"


def test_upload_streams_in_constant_memory(api: RawDrive) -> None:
    """256 MiB through the (in-process) server must not raise the process RSS by 50 MB."""

    def rss() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    total = 256 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    boundary = "rss"
    md5 = hashlib.md5()

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{{"name": "big"}}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="x"\r\n\r\n'
        ).encode()
        for _ in range(total // len(block)):
            md5.update(block)
            yield block
        yield f"\r\n--{boundary}--\r\n".encode()

    before = rss()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss())

    t = threading.Thread(target=sample)
    t.start()
    try:
        r = api.s.post(
            api.content + "nodes",
            params={"suppress": "deduplication"},
            data=body(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=300,
        )
    finally:
        done.set()
        t.join()
    assert r.status_code == 201, r.text
    assert r.json()["contentProperties"] == {
        **r.json()["contentProperties"],
        "size": total,
        "md5": md5.hexdigest(),
    }
    assert peak[0] - before < 50 * 1024 * 1024, (before, peak[0])
