"""overwrite_stream(..., expected_content_version=) and client.max_file_size, against our server with its
extensions (the server checks If-Match) and against one started with them off (the client reads the
node first and compares; max_file_size falls back to Amazon's 50,000 MiB)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import put_file

from acdfuse.api.client import DEFAULT_MAX_FILE_SIZE, ACDClient
from acdfuse.api.common import PreconditionFailed, TooLarge
from acdfuse.server import DriveServer, ServerConfig

LIMIT = 3_000_000


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / "server-data", port=0, max_file_size=LIMIT)


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[DriveServer]:
    """A server like Amazon's: no advertised extensions, If-Match ignored."""
    srv = DriveServer(ServerConfig(data_dir=tmp_path / "plain-data", port=0, extensions=False))
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def plain_client(plain_server: DriveServer, tmp_path: Path) -> Iterator[ACDClient]:
    cdir = tmp_path / "plain-cdir"
    plain_server.write_credentials(cdir)
    c = ACDClient(str(cdir))
    try:
        yield c
    finally:
        c.close()


def overwrite(client: ACDClient, node_id: str, data: bytes, expected: int | None = None) -> dict:
    return client.overwrite_stream(io.BytesIO(data), node_id, expected_content_version=expected)


def version(node: dict) -> int:
    return int(node["contentProperties"]["version"])


def test_max_file_size_is_what_the_server_says(client: ACDClient, drive_server: DriveServer,
                                               cdir: Path) -> None:
    assert "acdfuse" not in json.loads((cdir / "endpoint_data").read_text())  # --credentials-out's file
    assert client.max_file_size == LIMIT
    assert client.conditional_overwrite
    # asked once, and kept in endpoint_data for the next client
    assert json.loads((cdir / "endpoint_data").read_text())["acdfuse"]["maxFileSize"] == LIMIT
    drive_server.stats.reset()
    with ACDClient(str(cdir)) as again:
        assert again.max_file_size == LIMIT and drive_server.stats.snapshot()["requests"] == 0
    with pytest.raises(TooLarge):
        put_file(client, "big.bin", b"x" * (LIMIT + 1))


def test_the_server_checks_the_condition(client: ACDClient, make_client, drive_server: DriveServer) -> None:
    node = put_file(client, "doc.txt", b"one")
    assert client.conditional_overwrite
    drive_server.stats.reset()
    done = overwrite(client, node["id"], b"two", expected=1)
    assert version(done) == 2
    stats = drive_server.stats.snapshot()
    assert stats["overwrite"] == 1 and stats["metadata"] == 0      # no read first: If-Match did it
    # someone else overwrites: our condition on version 2 fails, and nothing changes
    overwrite(make_client(), node["id"], b"theirs")
    with pytest.raises(PreconditionFailed) as info:
        overwrite(client, node["id"], b"mine", expected=2)
    assert info.value.status_code == 412 and "PRECONDITION_FAILED" in info.value.msg
    assert client.download_chunk(node["id"], 0, 100) == b"theirs"
    assert version(client.get_metadata(node["id"])) == 3


def test_metadata_changes_do_not_fail_the_condition(client: ACDClient) -> None:
    node = put_file(client, "doc.txt", b"one")
    folder = client.create_folder("moved-here")
    client.rename_node(node["id"], "renamed.txt")
    client.move_node_from(node["id"], client.get_root_id(), folder["id"])
    client.add_property(node["id"], client.get_owner_id(), "k", "v")
    done = overwrite(client, node["id"], b"two", expected=1)
    assert version(done) == 2 and done["name"] == "renamed.txt"


def test_without_a_condition_an_overwrite_is_unconditional(client: ACDClient, make_client) -> None:
    node = put_file(client, "doc.txt", b"one")
    overwrite(make_client(), node["id"], b"theirs")
    assert version(overwrite(client, node["id"], b"mine")) == 3


def test_without_the_extension_the_client_compares_first(plain_client: ACDClient,
                                                         plain_server: DriveServer) -> None:
    client = plain_client
    assert not client.conditional_overwrite
    assert client.max_file_size == DEFAULT_MAX_FILE_SIZE == 50_000 * 1024**2
    node = put_file(client, "doc.txt", b"one")
    plain_server.stats.reset()
    done = overwrite(client, node["id"], b"two", expected=1)
    assert version(done) == 2
    stats = plain_server.stats.snapshot()
    assert stats["metadata"] == 1 and stats["overwrite"] == 1       # the node was read just before
    other = ACDClient(client.cache_path)
    try:
        overwrite(other, node["id"], b"theirs")
    finally:
        other.close()
    plain_server.stats.reset()
    with pytest.raises(PreconditionFailed) as info:
        overwrite(client, node["id"], b"mine", expected=2)
    assert "content version is 3, expected 2" in info.value.msg
    assert plain_server.stats.snapshot()["overwrite"] == 0          # nothing was sent
    assert client.download_chunk(node["id"], 0, 100) == b"theirs"
    # metadata changes do not count here either
    client.rename_node(node["id"], "renamed.txt")
    assert version(overwrite(client, node["id"], b"mine", expected=3)) == 4


def test_properties_go_with_an_overwrite_where_the_server_takes_them(client: ACDClient,
                                                                     plain_client: ACDClient) -> None:
    """``overwrite_stream(properties=)``: one request on a server that advertises it (None deletes a
    key); refused before anything is sent on one that does not (Amazon ignored them)."""
    assert client.properties_with_content and not plain_client.properties_with_content
    owner = client.get_owner_id()
    node = client.upload_stream(io.BytesIO(b"one"), "p.txt", properties={owner: {"x0": "a=t1"}})
    answer = client.overwrite_stream(io.BytesIO(b"two"), node["id"], expected_content_version=1,
                                     properties={owner: {"posix": "a1;t7;c2", "x0": None}})
    assert version(answer) == 2 and answer["properties"] == {owner: {"posix": "a1;t7;c2"}}
    plain = put_file(plain_client, "q.txt", b"one")
    with pytest.raises(ValueError):
        plain_client.overwrite_stream(io.BytesIO(b"two"), plain["id"], properties={owner: {"k": "v"}})
    assert version(plain_client.get_metadata(plain["id"])) == 1
