"""ContentMixin against the real server: create, upload, overwrite, download, resume, thumbnails."""

from __future__ import annotations

import hashlib
import io
import mmap
import os
from pathlib import Path

import pytest
from api_helpers import PatternReader, pattern_bytes, put_file
from PIL import Image

from acdfuse.api import content
from acdfuse.api.client import ACDClient
from acdfuse.api.common import Conflict, NotFound, RequestError
from acdfuse.server import DriveServer


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_create_folder_in_root_and_subfolder(client: ACDClient, root_id: str) -> None:
    top = client.create_folder("Top")
    assert top["kind"] == "FOLDER" and top["parents"] == [root_id] and top["name"] == "Top"
    sub = client.create_folder("Sub", top["id"])
    assert sub["parents"] == [top["id"]]
    assert [c["name"] for c in client.list_children(top["id"])] == ["Sub"]


def test_create_folder_conflict_names_existing_node(client: ACDClient) -> None:
    first = client.create_folder("Photos")
    with pytest.raises(Conflict) as info:
        client.create_folder("photos")  # uniqueness is case-insensitive
    err = info.value
    assert err.status_code == 409
    assert err.node_id == first["id"]
    assert "create folder 'photos'" in err.msg and "already exists" in err.msg


def test_create_file_is_empty(client: ACDClient, root_id: str) -> None:
    node = client.create_file("/some/local/dir/empty.txt")
    assert node["name"] == "empty.txt" and node["parents"] == [root_id]
    assert node["contentProperties"]["size"] == 0
    assert node["contentProperties"]["md5"] == _md5(b"")


def test_upload_file_with_callbacks(client: ACDClient, tmp_path: Path) -> None:
    data = pattern_bytes(3 * content.FS_RW_CHUNK_SZ + 17)
    local = tmp_path / "blob.bin"
    local.write_bytes(data)
    folder = client.create_folder("up")
    seen: list[bytes] = []
    node = client.upload_file(str(local), folder["id"], read_callbacks=[seen.append])
    assert node["name"] == "blob.bin" and node["parents"] == [folder["id"]]
    assert node["contentProperties"]["md5"] == _md5(data)
    assert node["contentProperties"]["size"] == len(data)
    assert b"".join(seen) == data
    assert max(len(s) for s in seen) <= content.FS_RW_CHUNK_SZ


def test_upload_stream_non_seekable(client: ACDClient) -> None:
    size = 2 * content.FS_RW_CHUNK_SZ + 5
    node = client.upload_stream(io.BufferedReader(PatternReader(size)), "gen.bin")
    assert node["contentProperties"]["size"] == size
    assert node["contentProperties"]["md5"] == _md5(pattern_bytes(size))


def test_upload_stream_empty_non_seekable(client: ACDClient) -> None:
    node = client.upload_stream(io.BufferedReader(PatternReader(0)), "nothing.txt")
    assert node["contentProperties"]["size"] == 0


def test_upload_stream_from_middle_of_seekable_stream(client: ACDClient) -> None:
    buf = io.BytesIO(b"skip-me|payload")
    buf.seek(8)
    node = client.upload_stream(buf, "part.txt")
    assert node["contentProperties"]["md5"] == _md5(b"payload")


def test_upload_conflict(client: ACDClient) -> None:
    first = put_file(client, "same.txt", b"1")
    with pytest.raises(Conflict) as info:
        put_file(client, "SAME.txt", b"2")
    assert info.value.node_id == first["id"]
    assert "upload 'SAME.txt'" in info.value.msg


def test_upload_to_missing_parent(client: ACDClient) -> None:
    with pytest.raises(RequestError) as info:
        put_file(client, "x.txt", b"x", parent="AAAAAAAAAAAAAAAAAAAAAA")
    assert info.value.status_code in (400, 404)
    assert "AAAAAAAAAAAAAAAAAAAAAA" in info.value.msg


def test_upload_deduplication_flag(client: ACDClient, tmp_path: Path) -> None:
    put_file(client, "orig.bin", b"duplicate content")
    local = tmp_path / "copy.bin"
    local.write_bytes(b"duplicate content")
    # without the flag duplicates are fine (suppress=deduplication is sent)
    client.upload_file(str(local))
    with pytest.raises(Conflict):
        client.upload_file(str(local), client.create_folder("d")["id"], deduplication=True)


def test_overwrite_file_and_stream_and_clear(client: ACDClient, tmp_path: Path) -> None:
    node = put_file(client, "doc.txt", b"version one")
    local = tmp_path / "doc.txt"
    local.write_bytes(b"version two, longer")
    seen: list[bytes] = []
    n2 = client.overwrite_file(node["id"], str(local), read_callbacks=[seen.append])
    assert n2["id"] == node["id"]
    assert n2["contentProperties"]["md5"] == _md5(b"version two, longer")
    assert n2["contentProperties"]["version"] == node["contentProperties"]["version"] + 1
    assert n2["version"] > node["version"]
    assert b"".join(seen) == b"version two, longer"

    n3 = client.overwrite_stream(io.BufferedReader(PatternReader(1000)), node["id"])
    assert n3["contentProperties"]["size"] == 1000
    n4 = client.clear_file(node["id"])
    assert n4["contentProperties"]["size"] == 0


def test_overwrite_missing_node(client: ACDClient) -> None:
    with pytest.raises(NotFound) as info:
        client.overwrite_stream(io.BytesIO(b"x"), "AAAAAAAAAAAAAAAAAAAAAA")
    assert "overwrite (node AAAAAAAAAAAAAAAAAAAAAA)" in info.value.msg


def test_download_chunk_and_response_chunk(client: ACDClient) -> None:
    data = pattern_bytes(300_000)
    node = put_file(client, "r.bin", data)
    assert client.download_chunk(node["id"], 0, 100) == data[:100]
    assert client.download_chunk(node["id"], 1000, 200_000) == data[1000:201_000]
    # a range running past the end gives what exists
    assert client.download_chunk(node["id"], 299_990, 100) == data[299_990:]
    r = client.response_chunk(node["id"], 5, 10)
    try:
        assert r.status_code == 206 and r.content == data[5:15]
    finally:
        r.close()


def test_download_chunk_into_fills_the_callers_buffer(client: ACDClient) -> None:
    data = pattern_bytes(300_000)
    node = put_file(client, "into.bin", data)
    target = bytearray(b"\xff" * 120_000)
    assert client.download_chunk_into(node["id"], 1000, memoryview(target)[10:110_010]) == 110_000
    assert target[10:110_010] == data[1000:111_000]
    assert target[:10] == b"\xff" * 10 and target[110_010:] == b"\xff" * 9990  # nothing outside
    # page-aligned memory (what the mount uses); at the end of the file fewer bytes are written
    page = mmap.mmap(-1, 4096)
    assert client.download_chunk_into(node["id"], 299_000, page) == 1000
    assert page[:1000] == data[299_000:]
    with pytest.raises(TypeError):
        client.download_chunk_into(node["id"], 0, b"read-only")


def test_download_chunk_past_end_is_416(client: ACDClient) -> None:
    node = put_file(client, "small.bin", b"abc")
    with pytest.raises(RequestError) as info:
        client.download_chunk(node["id"], 10, 5)
    assert info.value.status_code == 416
    assert node["id"] in info.value.msg


def test_chunked_download_to_file_object(client: ACDClient, monkeypatch: pytest.MonkeyPatch) -> None:
    data = pattern_bytes(1_000_003)
    node = put_file(client, "c.bin", data)
    monkeypatch.setattr(content, "CHUNK_SIZE", 300_000)  # several ranged requests
    out = io.BytesIO()
    pieces: list[bytes] = []
    client.chunked_download(node["id"], out, write_callbacks=[pieces.append])
    assert out.getvalue() == data and b"".join(pieces) == data
    out2 = io.BytesIO()
    client.chunked_download(node["id"], out2, offset=500_000, length=len(data))
    assert out2.getvalue() == data[500_000:]


def test_download_file(client: ACDClient, tmp_path: Path) -> None:
    data = pattern_bytes(700_000)
    node = put_file(client, "d.bin", data)
    seen: list[bytes] = []
    client.download_file(node["id"], "d.bin", str(tmp_path), length=len(data), write_callbacks=[seen.append])
    assert (tmp_path / "d.bin").read_bytes() == data
    assert b"".join(seen) == data
    assert not (tmp_path / ("d.bin" + content.PARTIAL_SUFFIX)).exists()
    # an existing file is replaced
    client.download_file(node["id"], "d.bin", str(tmp_path))
    assert (tmp_path / "d.bin").read_bytes() == data


def test_download_empty_file(client: ACDClient, tmp_path: Path) -> None:
    node = client.create_file("zero")
    client.download_file(node["id"], "zero", str(tmp_path))
    assert (tmp_path / "zero").read_bytes() == b""


def test_download_file_resumes_partial(client: ACDClient, drive_server: DriveServer, tmp_path: Path) -> None:
    data = pattern_bytes(1_500_000)
    node = put_file(client, "big.bin", data)
    part = tmp_path / ("big.bin" + content.PARTIAL_SUFFIX)
    part.write_bytes(data[:900_000])
    drive_server.stats.reset()
    seen: list[bytes] = []
    client.download_file(
        node["id"], "big.bin", str(tmp_path), length=len(data), write_callbacks=[seen.append]
    )
    assert (tmp_path / "big.bin").read_bytes() == data
    assert not part.exists()
    # callbacks saw the whole file: the kept part was replayed, the rest downloaded
    assert b"".join(seen) == data
    # only the missing tail (plus the one re-fetched piece) went over the wire
    downloaded = drive_server.stats.snapshot()["download_bytes"]
    assert downloaded <= len(data) - 900_000 + content.FS_RW_CHUNK_SZ


def test_download_file_resume_false_starts_over(client: ACDClient, tmp_path: Path) -> None:
    data = pattern_bytes(200_000)
    node = put_file(client, "r.bin", data)
    part = tmp_path / ("r.bin" + content.PARTIAL_SUFFIX)
    part.write_bytes(b"garbage" * 10_000)
    client.download_file(node["id"], "r.bin", str(tmp_path), resume=False)
    assert (tmp_path / "r.bin").read_bytes() == data


def test_download_file_relative_to_cwd(
    client: ACDClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = put_file(client, "cwd.txt", b"here")
    monkeypatch.chdir(tmp_path)
    client.download_file(node["id"], "cwd.txt")
    assert (tmp_path / "cwd.txt").read_bytes() == b"here"


def test_download_missing_node(client: ACDClient, tmp_path: Path) -> None:
    with pytest.raises(NotFound) as info:
        client.download_file("AAAAAAAAAAAAAAAAAAAAAA", "x", str(tmp_path))
    assert "AAAAAAAAAAAAAAAAAAAAAA" in info.value.msg


def test_download_thumbnail(client: ACDClient, tmp_path: Path) -> None:
    img = Image.new("RGB", (640, 320), (200, 30, 30))
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    buf.seek(0)
    node = client.upload_stream(buf, "pic.jpg")
    out = tmp_path / "thumb.jpg"
    client.download_thumbnail(node["id"], str(out), max_dim=64)
    with Image.open(out) as thumb:
        assert max(thumb.size) <= 64
        assert thumb.size[0] > thumb.size[1]
    assert os.path.getsize(out) > 0


class _FailingSource(io.RawIOBase):
    """Yields ``good`` bytes, then fails like a dying disk."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        if self.left <= 0:
            raise OSError(5, "Input/output error")
        n = min(len(b), self.left)
        b[:n] = b"s" * n
        self.left -= n
        return n


def test_failing_source_is_a_local_error_not_retried(client: ACDClient, drive_server: DriveServer) -> None:
    root = client.get_root_id()
    drive_server.stats.reset()
    with pytest.raises(OSError) as info:
        client.upload_stream(io.BufferedReader(_FailingSource(400_000)), "half.bin")
    assert not isinstance(info.value, RequestError)
    assert info.value.errno == 5
    assert drive_server.stats.snapshot()["upload"] <= 1  # sent once, never repeated
    assert client.list_children(root) == []  # the cut upload left nothing behind
    assert put_file(client, "half.bin", b"whole")["contentProperties"]["size"] == 5


def test_content_version_is_checked(client: ACDClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader pinned to one content (by md5, or by the first answer) never mixes in a newer one."""
    old = pattern_bytes(900_000, seed=1)
    node = put_file(client, "v.bin", old)
    md5 = node["contentProperties"]["md5"]
    assert client.download_chunk(node["id"], 0, 1000, content_md5=md5) == old[:1000]
    client.overwrite_stream(io.BytesIO(pattern_bytes(900_000, seed=2)), node["id"])
    with pytest.raises(RequestError) as info:
        client.download_chunk(node["id"], 0, 1000, content_md5=md5)
    assert info.value.status_code == 412 and "content changed" in info.value.msg
    # replaced by a shorter content: the server answers 416 before any ETag can be compared, and a
    # pinned reader must still see 412 (ESTALE in the mount), not a bad range (EINVAL)
    short = put_file(client, "short.bin", b"x" * 100)
    client.overwrite_stream(io.BytesIO(b""), short["id"])
    with pytest.raises(RequestError) as info:
        client.download_chunk(short["id"], 0, 100, content_md5=short["contentProperties"]["md5"])
    assert info.value.status_code == 412 and "content changed" in info.value.msg
    with pytest.raises(RequestError) as info:       # unpinned, the 416 stays what it is
        client.download_chunk(short["id"], 0, 100)
    assert info.value.status_code == 416

    # an overwrite between two ranged requests of one download
    monkeypatch.setattr(content, "CHUNK_SIZE", 300_000)
    calls = []

    def overwrite_once(_: bytes) -> None:
        if not calls:
            calls.append(1)
            client.overwrite_stream(io.BytesIO(pattern_bytes(900_000, seed=3)), node["id"])

    with pytest.raises(RequestError) as mixed:
        client.chunked_download(node["id"], io.BytesIO(), length=900_000, write_callbacks=[overwrite_once])
    assert mixed.value.status_code == 412
