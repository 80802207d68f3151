"""Error answers become the right RequestError subclass with a message naming operation, node and the
server's words; this module runs a server with a tiny quota and file size limit."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from api_helpers import put_file

from acdfuse.api.client import ACDClient
from acdfuse.api.common import Conflict, Forbidden, RequestError
from acdfuse.server import ServerConfig


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / "server-data", port=0, quota=100_000, max_file_size=1_000_000)


def test_quota_exceeded_is_forbidden_with_code(client: ACDClient) -> None:
    with pytest.raises(Forbidden) as info:
        put_file(client, "too-big-for-quota.bin", b"x" * 200_000)
    msg = info.value.msg
    assert "upload 'too-big-for-quota.bin' into root" in msg
    assert "exceeds account allowance" in msg and "NO_ACTIVE_SUBSCRIPTION_FOUND" in msg
    assert info.value.request_id and info.value.request_id in msg
    assert client.fs_sizes() == (100_000, 100_000)


def test_file_too_large_is_413(client: ACDClient) -> None:
    with pytest.raises(RequestError) as info:
        client.upload_stream(io.BytesIO(b"x" * 2_000_000), "huge.bin")
    assert info.value.status_code == 413
    assert type(info.value) is RequestError  # no subclass for 413: the mount maps the status


def test_conflict_message_and_body(client: ACDClient) -> None:
    first = client.create_folder("Dup")
    with pytest.raises(Conflict) as info:
        client.create_folder("dup", None)
    err = info.value
    assert err.node_id == first["id"]
    assert "NAME_ALREADY_EXISTS" in err.msg and "create folder 'dup' in root" in err.msg
    assert '"nodeId"' in err.body  # the raw envelope stays available
    assert str(err).startswith("Conflict: 409, create folder")


def test_name_too_long_is_400(client: ACDClient) -> None:
    with pytest.raises(RequestError) as info:
        client.create_folder("n" * 281)
    assert info.value.status_code == 400
    assert "280" in info.value.msg
