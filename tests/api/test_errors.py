"""Error answers become the right RequestError subclass with a message naming operation, node and the
server's words; this module runs a server with a tiny quota and file size limit."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from api_helpers import put_file

from acdfuse.api.client import ACDClient
from acdfuse.api.common import (
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    RateLimited,
    RequestError,
    ServerError,
    TooLarge,
    Unauthorized,
    credentials_refused,
    is_offline,
    is_transient,
    make_error,
)
from acdfuse.server import ServerConfig


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / "server-data", port=0, quota=100_000, max_file_size=1_000_000)


def test_quota_exceeded_is_its_own_class(client: ACDClient) -> None:
    with pytest.raises(QuotaExceeded) as info:
        put_file(client, "too-big-for-quota.bin", b"x" * 200_000)
    assert not isinstance(info.value, Forbidden) and info.value.status_code == 403
    assert credentials_refused(info.value) is None      # a full drive is no verdict on the token
    assert not is_offline(info.value) and not is_transient(info.value)
    msg = info.value.msg
    assert "upload 'too-big-for-quota.bin' into root" in msg
    assert "exceeds account allowance" in msg and "NO_ACTIVE_SUBSCRIPTION_FOUND" in msg
    assert info.value.request_id and info.value.request_id in msg
    assert client.fs_sizes() == (100_000, 100_000)


def test_file_too_large_is_413(client: ACDClient) -> None:
    with pytest.raises(TooLarge) as info:
        client.upload_stream(io.BytesIO(b"x" * 2_000_000), "huge.bin")
    assert info.value.status_code == 413 and "1000000" in info.value.msg


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


def test_conflict_of_an_upload_carries_the_existing_id(client: ACDClient) -> None:
    first = put_file(client, "same.txt", b"one")
    with pytest.raises(Conflict) as info:
        put_file(client, "same.txt", b"two")
    assert info.value.node_id == first["id"]


def test_conflict_id_from_the_message_when_the_body_has_no_info() -> None:
    """Amazon's 409s named the existing node in their text ("... conflicting NodeId: <id>")."""
    node_id = "AbCdEfGhIjKlMnOpQr0123"
    err = make_error(409, f"Node with the name x already exists under parentId P conflicting NodeId: {node_id}")
    assert type(err) is Conflict and err.node_id == node_id
    assert make_error(409, "no id here").node_id is None        # type: ignore[attr-defined]
    assert make_error(409, "x", node_id="given").node_id == "given"    # type: ignore[attr-defined]


def test_status_classes() -> None:
    assert type(make_error(412, "x")) is PreconditionFailed
    assert type(make_error(413, "x")) is TooLarge
    assert type(make_error(507, "x")) is QuotaExceeded
    assert type(make_error(403, "x", code="NO_ACTIVE_SUBSCRIPTION_FOUND")) is QuotaExceeded
    assert type(make_error(403, "File size exceeds account allowance.")) is QuotaExceeded
    assert type(make_error(403, "Insufficient permissions granted")) is Forbidden
    # the words are looked for in the server's message, not in ours (a file may be called anything)
    named = make_error(403, "upload 'exceeds account allowance.txt': denied", server_message="denied")
    assert type(named) is Forbidden


def test_offline_and_transient() -> None:
    offline = [make_error(1000, "refused"), make_error(1003, "cut"), make_error(500, "x"),
               make_error(503, "x"), ConnectionResetError("reset")]
    for exc in offline:
        assert is_offline(exc) and is_transient(exc), exc
    for exc in [make_error(429, "slow down"), make_error(408, "timeout")]:
        assert not is_offline(exc) and is_transient(exc), exc
    answered = [make_error(400, "x"), make_error(404, "x"), make_error(409, "x"), make_error(412, "x"),
                make_error(413, "x"), make_error(507, "full"), make_error(401, "x"), ValueError("bug")]
    for exc in answered:
        assert not is_offline(exc) and not is_transient(exc), exc
    # a wrapper is seen through along __cause__, but not along __context__ (an error while handling)
    try:
        try:
            raise make_error(1000, "refused")
        except ConnectionFailed as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as exc:
        assert is_offline(exc)
    try:
        try:
            raise make_error(1000, "refused")
        except ConnectionFailed:
            raise KeyError("a bug in the handler") from None
    except KeyError as exc:
        assert not is_offline(exc)
    assert isinstance(make_error(429, "x"), RateLimited) and isinstance(make_error(502, "x"), ServerError)


def test_credentials_refused_walks_the_chain() -> None:
    code = RequestError.CODE
    for exc in (make_error(401, "x"), make_error(403, "forbidden"), RequestError(code.REFRESH_FAILED, "x"),
                RequestError(code.INVALID_TOKEN, "x")):
        assert credentials_refused(exc) is exc
    assert isinstance(make_error(401, "x"), Unauthorized)
    for exc in (make_error(507, "full"), make_error(403, "x", code="NO_ACTIVE_SUBSCRIPTION_FOUND"),
                make_error(404, "x"), make_error(1000, "x"), ValueError("x")):
        assert credentials_refused(exc) is None
    refused = make_error(401, "Token has expired")
    try:
        try:
            raise refused
        except Unauthorized as inner:
            raise RuntimeError("first sync failed") from inner
    except RuntimeError as outer:
        assert credentials_refused(outer) is refused
    try:
        try:
            raise refused
        except Unauthorized:
            raise NotFound(404, "while reporting")     # noqa: B904 - __context__ on purpose
    except NotFound as outer:
        assert credentials_refused(outer) is refused


def test_a_token_server_that_cannot_be_reached_is_not_a_refusal(client: ACDClient, tmp_path: Path) -> None:
    """With the token expired and the token URL unreachable, the refresh fails as offline, not as
    refused credentials (it said REFRESH_FAILED before, and a mount told the user to log in again)."""
    import json
    import time

    cdir = Path(client.cache_path)
    data = json.loads((cdir / "oauth_data").read_text())
    data["exp_time"] = time.time() - 10
    (cdir / "oauth_data").write_text(json.dumps(data))
    server = json.loads((cdir / "acdfuse_server").read_text())
    # the metadata endpoints stay where they are; only the token URL points at a closed port
    (cdir / "acdfuse_server").write_text(json.dumps({"base_url": "http://127.0.0.1:9"}))
    other = ACDClient(str(cdir))
    (cdir / "acdfuse_server").write_text(json.dumps(server))
    with pytest.raises(RequestError) as info:
        other.get_root_id()
    assert is_offline(info.value) and credentials_refused(info.value) is None
