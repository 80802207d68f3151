"""The client library keeps its secrets: none in any log record at DEBUG (its own, requests', urllib3's),
and credential files are written whole or not at all.

File modes (0600) of oauth_data and endpoint_data are checked in test_oauth.py; write_private_json's
mode and leftover-free replace in test_helpers_units.py; the server-written client config in
tests/server/test_cli.py.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest

from acdfuse.api.client import ACDClient
from acdfuse.api.common import RequestError, write_private_json
from acdfuse.server import DriveServer


def test_no_secret_in_the_client_log_at_debug(drive_server: DriveServer, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    cdir = tmp_path / "cdir"
    drive_server.write_credentials(cdir, token_lifetime=2)  # due at once: the first call refreshes
    oauth = json.loads((cdir / "oauth_data").read_text())
    secret = json.loads((cdir / "client_data").read_text())["CLIENT_SECRET"]
    caplog.set_level(logging.DEBUG)  # every logger of the process: ours, requests, urllib3
    client = ACDClient(str(cdir))
    try:
        root = client.get_root_id()
        node = client.upload_stream(io.BytesIO(b"payload"), "f.bin", root)
        assert bytes(client.download_chunk(node["id"], 0, 7)) == b"payload"
        link = client.get_metadata(node["id"])["tempLink"]  # a capability URL: kept out of logs too
        assert client.handler.get_access_token_info()["aud"]
        # a token the server refuses: the client refreshes, and says so, without quoting it
        drive_server.revoke_tokens("default", json.loads((cdir / "oauth_data").read_text())["access_token"])
        assert client.list_children(root)
    finally:
        client.close()
    fresh = json.loads((cdir / "oauth_data").read_text())
    secrets = {oauth["access_token"], oauth["refresh_token"], fresh["access_token"], secret,
               link.rsplit("/", 1)[1]}
    records = [r for r in caplog.records if not r.name.startswith("acdfuse.server")]
    text = "\n".join(r.getMessage() for r in records)
    assert "Refreshing authentication token" in text and "tokeninfo" in text
    for s in secrets:
        assert s not in text, f"secret {s[:12]}... in the client's log"


def test_credential_file_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    """A write that fails half-way (here: a value JSON cannot hold) leaves the old file as it was and
    no temporary file behind; a reader never sees a half-written token."""
    target = tmp_path / "oauth_data"
    write_private_json(str(target), {"access_token": "old"})
    with pytest.raises(TypeError):
        write_private_json(str(target), {"access_token": "new", "bad": object()})
    assert json.loads(target.read_text()) == {"access_token": "old"}
    assert os.listdir(tmp_path) == ["oauth_data"]
    assert target.stat().st_mode & 0o777 == 0o600


def test_refused_token_file_is_reported_not_quoted(tmp_path: Path) -> None:
    """An oauth_data that is not valid JSON: a RequestError naming the file, without its content."""
    cdir = tmp_path / "cdir"
    cdir.mkdir()
    (cdir / "oauth_data").write_text('{"access_token": "Atza|do-not-print-me", ')
    (cdir / "acdfuse_server").write_text(json.dumps({"base_url": "http://127.0.0.1:9"}))
    with pytest.raises(RequestError) as info:
        ACDClient(str(cdir))
    assert "oauth_data" in str(info.value) and "do-not-print-me" not in str(info.value)
