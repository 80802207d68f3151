"""Security checks of the server that test_auth.py and test_limits.py do not already make.

Already elsewhere (and cited in RELIABILITY.md): no token / a nonsense token -> 401
(test_auth::test_every_api_call_needs_a_token), an expired token -> 401 (test_expired_token_gets_401_message),
tokens stored hashed (test_tokens_are_stored_hashed), basic isolation by id, children, lists and changes
(test_accounts_are_isolated), oversized uploads -> 413 with nothing kept (test_limits::
test_upload_over_the_size_limit_is_413), body and header limits (test_fuzz).

Here: forged and revoked tokens, a refresh token or another drive's token used as a bearer, isolation
through filters, properties, forged checkpoints, moves and tempLinks, the loopback default, blob paths,
and that no secret reaches the server's log even at DEBUG.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from acdfuse.server import DriveServer, ServerConfig
from acdfuse.server.blobs import BlobStore
from acdfuse.server.command import add_arguments

from .conftest import RawDrive


def _status(srv: DriveServer, token: str) -> int:
    r = requests.get(srv.base_url + "/drive/v1/account/info",
                     headers={"Authorization": "Bearer " + token}, timeout=10)
    return r.status_code


def test_forged_tokens_are_refused(drive_server: DriveServer, cdir: Path, tmp_path: Path) -> None:
    real = drive_server.access_token()
    assert _status(drive_server, real) == 200
    refresh = json.loads((cdir / "oauth_data").read_text())["refresh_token"]
    other = DriveServer(ServerConfig(data_dir=tmp_path / "elsewhere", port=0))
    other.start()
    try:
        foreign = other.access_token()  # valid, but for another drive
    finally:
        other.close()
    forged = [
        "Atza|" + secrets.token_urlsafe(48),   # the right shape, never issued
        real[:-1] + ("A" if real[-1] != "A" else "B"),  # one character off
        real + "x", real.upper(), real[5:],
        refresh,                               # a refresh token is no access token
        foreign,
        drive_server.auth.client_secret,       # the app's secret is no token either
    ]
    for token in forged:
        assert _status(drive_server, token) == 401, token
    for header in ("Bearer", "Basic " + base64.b64encode(b"a:b").decode(), real, "Token " + real):
        r = requests.get(drive_server.base_url + "/drive/v1/account/info",
                         headers={"Authorization": header}, timeout=10)
        assert r.status_code in (401, 403), header
    assert _status(drive_server, real) == 200


def test_revoked_tokens_are_refused(drive_server: DriveServer, cdir: Path) -> None:
    token = drive_server.access_token()
    keep = drive_server.access_token("other")
    assert _status(drive_server, token) == 200  # checked once: now in the server's cache
    assert drive_server.revoke_tokens("default", token) == 1
    assert _status(drive_server, token) == 401  # the cache does not keep it alive
    assert _status(drive_server, keep) == 200   # another account's token is untouched
    # revoking an account takes its refresh tokens too: no new access token from them
    second = drive_server.access_token()
    refresh = json.loads((cdir / "oauth_data").read_text())["refresh_token"]
    assert drive_server.revoke_tokens("default") >= 2
    assert _status(drive_server, second) == 401
    r = requests.post(drive_server.base_url + "/auth/o2/token",
                      data={"grant_type": "refresh_token", "refresh_token": refresh}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert _status(drive_server, keep) == 200


def test_revocation_by_another_process_takes_effect(drive_server: DriveServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process sharing the data dir deletes a token in the database: the server, which had
    the token cached, refuses it once its cache entry is older than CACHE_TTL (0 here, so the test
    need not wait out the real 30 s)."""
    import acdfuse.server.auth as auth_module

    monkeypatch.setattr(auth_module, "CACHE_TTL", 0.0)
    token = drive_server.access_token()
    assert _status(drive_server, token) == 200
    con = sqlite3.connect(Path(drive_server.config.data_dir) / "drive.sqlite3")
    try:
        con.execute("DELETE FROM tokens WHERE kind='access'")
        con.commit()
    finally:
        con.close()
    assert _status(drive_server, token) == 401


def test_account_revoke_signs_out_every_client_of_one_account(drive_server: DriveServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``acdfuse serve account revoke NAME`` while the server runs: NAME's tokens get 401 (once the
    server's cache lets go of them: CACHE_TTL, 0 here), another account's keep working, and an unknown
    name is one line on stderr."""
    import acdfuse.server.auth as auth_module

    monkeypatch.setattr(auth_module, "CACHE_TTL", 0.0)
    mine = [drive_server.access_token() for _ in range(2)]
    theirs = drive_server.access_token("bob")
    assert [_status(drive_server, t) for t in (*mine, theirs)] == [200, 200, 200]
    base = [sys.executable, "-m", "acdfuse", "serve", "--data", str(drive_server.config.data_dir), "account"]
    r = subprocess.run([*base, "revoke", "default"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("account 'default': ") and "revoked" in r.stdout
    assert [_status(drive_server, t) for t in (*mine, theirs)] == [401, 401, 200]
    r = subprocess.run([*base, "revoke", "nobody"], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2
    assert r.stderr == (f"acdfuse serve account: there is no account 'nobody' in {drive_server.config.data_dir} "
                        f"(`account list` shows them)\n")


def test_accounts_are_isolated_through_filters_properties_and_moves(
    api: RawDrive, other_api: RawDrive, drive_server: DriveServer
) -> None:
    theirs = other_api.mkdir("their-folder")
    secret = other_api.upload("their-unique-secret.txt", b"B's data", theirs["id"])
    owner = secret["createdBy"]
    assert other_api.put(f"nodes/{secret['id']}/properties/{owner}/k", {"value": "v"}).status_code == 201
    mine = api.mkdir("mine")
    for filters in (f"parents:{theirs['id']}", f"id:{secret['id']}", "name:their-unique-secret.txt",
                    "name:their*", f"contentProperties.md5:{secret['contentProperties']['md5']}",
                    "status:TRASH OR status:AVAILABLE", "kind:FILE"):
        ids = {n["id"] for n in api.list_all("nodes", filters=filters)}
        assert secret["id"] not in ids and theirs["id"] not in ids, filters
    for path in (f"nodes/{secret['id']}/properties/{owner}", f"nodes/{secret['id']}/properties/{owner}/k"):
        assert api.get(path).status_code == 404, path
    assert api.put(f"nodes/{secret['id']}/properties/{owner}/k", {"value": "x"}).status_code == 404
    assert api.delete(f"nodes/{secret['id']}/properties/{owner}/k").status_code == 404
    # moves and parents across accounts
    assert api.post(f"nodes/{mine['id']}/children",
                    {"fromParent": theirs["id"], "childId": secret["id"]}).status_code in (400, 404)
    assert api.post(f"nodes/{theirs['id']}/children",
                    {"fromParent": mine["id"], "childId": mine["id"]}).status_code in (400, 404)
    assert api.delete(f"nodes/{theirs['id']}/children/{secret['id']}").status_code == 404
    assert api.patch(f"nodes/{mine['id']}", {"parents": [theirs["id"]]}).status_code in (400, 404)
    assert other_api.put(f"trash/{secret['id']}").status_code == 200
    assert api.post(f"trash/{secret['id']}/restore").status_code == 404
    assert secret["id"] not in {n["id"] for n in api.list_all("trash")}
    # B's own checkpoint, replayed by A: a reset with only A's nodes
    b_checkpoint = other_api.changes()[0]["checkpoint"]
    objs = api.changes({"checkpoint": b_checkpoint})
    assert objs[0]["reset"] is True
    ids = {n["id"] for o in objs for n in o.get("nodes", [])}
    assert secret["id"] not in ids and theirs["id"] not in ids and mine["id"] in ids
    # B's state is untouched
    assert other_api.get(f"nodes/{secret['id']}").json()["parents"] == [theirs["id"]]
    assert other_api.get(f"nodes/{secret['id']}/properties/{owner}/k").json()["value"] == "v"


def test_templinks_cannot_be_forged_for_another_node(api: RawDrive, other_api: RawDrive) -> None:
    mine = api.upload("mine.bin", b"A's bytes")
    theirs = other_api.upload("theirs.bin", b"B's bytes")
    link = api.get(f"nodes/{mine['id']}", params={"tempLink": "true"}).json()["tempLink"]
    assert requests.get(link, timeout=10).content == b"A's bytes"
    token = urlsplit(link).path.rsplit("/", 1)[1]
    head, sig = token.split(".")
    raw = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode()
    acc, node, exp = raw.split(".")
    for forged_raw in (f"{acc}.{theirs['id']}.{exp}", f"{int(acc) + 1}.{node}.{exp}",
                       f"{acc}.{node}.{int(exp) + 10**6}"):
        forged_head = base64.urlsafe_b64encode(forged_raw.encode()).decode().rstrip("=")
        url = link.replace(token, f"{forged_head}.{sig}")
        assert requests.get(url, timeout=10).status_code == 404, forged_raw


def test_loopback_is_the_default(drive_server: DriveServer) -> None:
    assert ServerConfig(data_dir=Path("x")).host == "127.0.0.1"
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments("serve", parser.add_subparsers())
    args = parser.parse_args(["serve"])
    assert args.host == "127.0.0.1"
    assert drive_server.exposed is False
    assert urlsplit(drive_server.base_url).hostname == "127.0.0.1"


def test_blob_paths_never_come_from_the_request(api: RawDrive, drive_server: DriveServer) -> None:
    """Hostile names and filenames leave no trace in the file system: blobs are named by the server."""
    data = Path(drive_server.config.data_dir)
    before = {p for p in data.parent.rglob("*")}
    boundary = "bnd"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n'
        '{"name": "..%2F..%2Fescape"}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
        'filename="../../../../tmp/escape"\r\n\r\nx\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    r = api.s.post(api.content + "nodes?suppress=deduplication", data=body, timeout=10,
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 201, r.text
    new = {p for p in data.parent.rglob("*")} - before
    blobs = [p for p in new if p.is_file()]
    assert blobs, new
    for p in blobs:
        assert p.parent.parent == data / "blobs" and len(p.name) == 32 and p.name[:2] == p.parent.name
    assert not any("escape" in str(p) for p in data.parent.rglob("*"))
    store = BlobStore(data)
    for bad in ("../../etc/passwd", "..", "ab/../../x", "A" * 32, "0" * 31):
        with pytest.raises(ValueError):
            store.path(bad)


def test_no_secret_in_the_server_log_at_debug(drive_server: DriveServer, cdir: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    base = drive_server.base_url
    oauth = json.loads((cdir / "oauth_data").read_text())
    client = json.loads((cdir / "client_data").read_text())
    password = "pw-" + secrets.token_hex(8)
    drive_server.oauth.config = replace(drive_server.config, login_password=password)
    secrets_seen: list[str] = [oauth["access_token"], oauth["refresh_token"], client["CLIENT_SECRET"], password]
    # tokeninfo with the token in the query string, as Amazon documented it
    requests.get(base + "/auth/o2/tokeninfo", params={"access_token": oauth["access_token"]}, timeout=10)
    r = requests.post(base + "/auth/o2/token", timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": oauth["refresh_token"],
        "client_id": client["CLIENT_ID"], "client_secret": client["CLIENT_SECRET"]})
    secrets_seen.append(r.json()["access_token"])
    q = {"client_id": client["CLIENT_ID"], "response_type": "code", "redirect_uri": "http://x/cb"}
    r = requests.post(base + "/ap/oa", data={**q, "decision": "allow", "password": password},
                      allow_redirects=False, timeout=10)
    code = r.headers["Location"].split("code=")[1].split("&")[0]
    secrets_seen.append(code)
    r = requests.post(base + "/auth/o2/token?code=" + code, timeout=10, data={
        "grant_type": "authorization_code", "client_id": client["CLIENT_ID"],
        "client_secret": client["CLIENT_SECRET"], "redirect_uri": "http://x/cb"})
    assert r.status_code == 200, r.text
    secrets_seen += [r.json()["access_token"], r.json()["refresh_token"]]
    headers = {"Authorization": "Bearer " + oauth["access_token"]}
    meta = base + "/drive/v1/"
    root = requests.get(meta + "nodes", params={"filters": "isRoot:true"}, headers=headers,
                        timeout=10).json()["data"][0]["id"]
    f = requests.post(base + "/cdproxy/nodes", headers=headers, timeout=10,
                      files={"metadata": (None, json.dumps({"name": "t.bin", "parents": [root]})),
                             "content": ("t", b"data")}).json()
    link = requests.get(meta + f"nodes/{f['id']}", params={"tempLink": "true"}, headers=headers,
                        timeout=10).json()["tempLink"]
    assert requests.get(link, timeout=10).content == b"data"
    secrets_seen.append(urlsplit(link).path.rsplit("/", 1)[1])
    # a refused bearer token is no more loggable than a good one
    requests.get(meta + "nodes", headers={"Authorization": "Bearer Atza|wrong-" + secrets.token_hex(8)},
                 timeout=10)
    # the server's own records (this test's HTTP client logs its URLs through urllib3: not the server)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("acdfuse"))
    assert "tokeninfo" in text and "templink" in text  # the requests were logged, without secrets
    for s in secrets_seen:
        assert s not in text, f"secret {s[:12]}... in the log"
