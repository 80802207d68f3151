"""Bearer auth, OAuth grants and pages, token storage, account isolation."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from acdfuse.server import DriveServer

from .conftest import RawDrive


def test_every_api_call_needs_a_token(drive_server: DriveServer) -> None:
    base = drive_server.base_url
    for method, path in [
        ("GET", "/drive/v1/account/endpoint"),
        ("GET", "/drive/v1/nodes"),
        ("POST", "/drive/v1/changes"),
        ("GET", "/cdproxy/nodes/AAAAAAAAAAAAAAAAAAAAAA/content"),
    ]:
        r = requests.request(method, base + path, timeout=10)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json() == {"message": "Token has expired"}
        r = requests.request(method, base + path, headers={"Authorization": "Bearer nonsense"}, timeout=10)
        assert r.status_code == 401


def test_expired_token_gets_401_message(drive_server: DriveServer) -> None:
    token = drive_server.access_token(token_lifetime=-1)  # already expired when issued
    r = requests.get(
        drive_server.base_url + "/drive/v1/account/info",
        headers={"Authorization": "Bearer " + token},
        timeout=10,
    )
    assert r.status_code == 401
    assert r.json() == {"message": "Token has expired"}
    assert r.headers.get("x-amzn-RequestId")


def test_bearer_scheme_is_case_insensitive(drive_server: DriveServer) -> None:
    token = drive_server.access_token()
    r = requests.get(
        drive_server.base_url + "/drive/v1/account/info",
        headers={"Authorization": "bearer " + token},
        timeout=10,
    )
    assert r.status_code == 200
    assert r.json() == {"termsOfUse": "1.0.0", "status": "ACTIVE"}


def _client(cdir: Path) -> dict[str, str]:
    return json.loads((cdir / "client_data").read_text())


def test_refresh_grant_gives_a_working_token(drive_server: DriveServer, cdir: Path) -> None:
    oauth = json.loads((cdir / "oauth_data").read_text())
    client = _client(cdir)
    r = requests.post(
        drive_server.base_url + "/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": oauth["refresh_token"],
            "client_id": client["CLIENT_ID"],
            "client_secret": client["CLIENT_SECRET"],
            "redirect_uri": "http://localhost/",
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["token_type"] == "bearer" and tok["expires_in"] > 0
    assert tok["refresh_token"] == oauth["refresh_token"]
    assert tok["access_token"] != oauth["access_token"]
    r = requests.get(
        drive_server.base_url + "/drive/v1/account/quota",
        headers={"Authorization": "Bearer " + tok["access_token"]},
        timeout=10,
    )
    assert r.status_code == 200
    # HTTP Basic client authentication works too
    r = requests.post(
        drive_server.base_url + "/auth/o2/token",
        data={"grant_type": "refresh_token", "refresh_token": oauth["refresh_token"]},
        auth=(client["CLIENT_ID"], client["CLIENT_SECRET"]),
        timeout=10,
    )
    assert r.status_code == 200


def test_refresh_without_client_credentials(drive_server: DriveServer, cdir: Path) -> None:
    """Appspot-style refresh (acd_cli's relay added the secret): the refresh token alone is enough."""
    oauth = json.loads((cdir / "oauth_data").read_text())
    r = requests.post(
        drive_server.base_url + "/auth/o2/token",
        data={"grant_type": "refresh_token", "refresh_token": oauth["refresh_token"]},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["access_token"].startswith("Atza|")


def test_token_endpoint_errors(drive_server: DriveServer, cdir: Path) -> None:
    client = _client(cdir)
    url = drive_server.base_url + "/auth/o2/token"
    r = requests.post(
        url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": "Atzr|bogus",
            "client_id": client["CLIENT_ID"],
            "client_secret": client["CLIENT_SECRET"],
        },
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # a code grant always needs the client credentials
    r = requests.post(url, data={"grant_type": "authorization_code", "code": "x"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    # a refresh grant without any client credentials still needs a valid refresh token
    r = requests.post(url, data={"grant_type": "refresh_token", "refresh_token": "x"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = requests.post(
        url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": "x",
            "client_id": client["CLIENT_ID"],
            "client_secret": "wrong",
        },
        timeout=10,
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = requests.post(
        url,
        data={
            "grant_type": "password",
            "client_id": client["CLIENT_ID"],
            "client_secret": client["CLIENT_SECRET"],
        },
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_authorization_code_flow_through_login_page(drive_server: DriveServer, cdir: Path) -> None:
    client = _client(cdir)
    base = drive_server.base_url
    redirect = "http://localhost:9999/callback"
    q = {
        "client_id": client["CLIENT_ID"],
        "scope": "clouddrive:read_all clouddrive:write",
        "response_type": "code",
        "redirect_uri": redirect,
        "state": "xyz",
    }
    page = requests.get(base + "/ap/oa", params=q, timeout=10)
    assert page.status_code == 200 and "<form" in page.text and 'name="account"' in page.text
    r = requests.post(
        base + "/ap/oa",
        data={**q, "account": "alice", "decision": "allow"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302
    loc = urlsplit(r.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == redirect
    params = parse_qs(loc.query)
    assert params["state"] == ["xyz"]
    code = params["code"][0]
    tok_req = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect,
        "client_id": client["CLIENT_ID"],
        "client_secret": client["CLIENT_SECRET"],
    }
    r = requests.post(base + "/auth/o2/token", data=tok_req, timeout=10)
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    # the code is single use
    again = requests.post(base + "/auth/o2/token", data=tok_req, timeout=10)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # the token belongs to the new account "alice", not to "default"
    info = requests.get(base + "/auth/o2/tokeninfo", params={"access_token": access}, timeout=10)
    assert info.status_code == 200
    body = info.json()
    assert body["aud"] == client["CLIENT_ID"] and body["exp"] > 0 and "user_id" in body
    assert (
        body["user_id"]
        != requests.get(
            base + "/auth/o2/tokeninfo",
            params={"access_token": json.loads((cdir / "oauth_data").read_text())["access_token"]},
            timeout=10,
        ).json()["user_id"]
    )


def test_login_password(drive_server: DriveServer, cdir: Path) -> None:

    drive_server.oauth.config = replace(drive_server.config, login_password="s3cret")
    client = _client(cdir)
    q = {"client_id": client["CLIENT_ID"], "response_type": "code", "redirect_uri": "http://x/cb"}
    base = drive_server.base_url
    assert 'type="password"' in requests.get(base + "/ap/oa", params=q, timeout=10).text
    r = requests.post(
        base + "/ap/oa",
        data={**q, "decision": "allow", "password": "wrong"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 401 and "Wrong account or password" in r.text
    r = requests.post(
        base + "/ap/oa",
        data={**q, "decision": "allow", "password": "s3cret"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302 and "code=" in r.headers["Location"]


def test_login_page_rejects_unknown_client_and_deny(drive_server: DriveServer, cdir: Path) -> None:
    base = drive_server.base_url
    r = requests.get(
        base + "/ap/oa",
        params={"client_id": "evil", "redirect_uri": "http://x/", "response_type": "code"},
        timeout=10,
    )
    assert r.status_code == 400
    client = _client(cdir)
    q = {"client_id": client["CLIENT_ID"], "response_type": "code", "redirect_uri": "http://x/cb"}
    r = requests.post(base + "/ap/oa", data={**q, "decision": "deny"}, allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "error=access_denied" in r.headers["Location"]


def test_tokeninfo_rejects_bad_token(drive_server: DriveServer) -> None:
    r = requests.get(
        drive_server.base_url + "/auth/o2/tokeninfo", params={"access_token": "Atza|x"}, timeout=10
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_token"


def test_tokens_are_stored_hashed(drive_server: DriveServer, cdir: Path) -> None:
    oauth = json.loads((cdir / "oauth_data").read_text())
    db = Path(drive_server.config.data_dir) / "drive.sqlite3"
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT hash FROM tokens").fetchall()
    finally:
        conn.close()
    stored = {r[0] for r in rows}
    assert stored
    assert oauth["access_token"] not in stored and oauth["refresh_token"] not in stored
    raw = b"".join(p.read_bytes() for p in db.parent.glob("drive.sqlite3*"))
    assert oauth["access_token"].encode() not in raw
    assert oauth["refresh_token"].encode() not in raw


def test_accounts_are_isolated(api: RawDrive, other_api: RawDrive) -> None:
    mine = api.mkdir("private")
    f = api.upload("secret.txt", b"top secret", mine["id"])
    assert other_api.root != api.root
    for path in (f"nodes/{mine['id']}", f"nodes/{f['id']}", f"nodes/{mine['id']}/children"):
        r = other_api.get(path)
        assert r.status_code == 404, (path, r.text)
    assert other_api.download(f["id"]).status_code == 404
    assert other_api.patch(f"nodes/{f['id']}", {"name": "stolen"}).status_code == 404
    assert other_api.put(f"trash/{f['id']}").status_code == 404
    assert other_api.overwrite(f["id"], b"x").status_code == 404
    assert other_api.put(f"nodes/{other_api.root}/children/{f['id']}").status_code == 404
    r = other_api.post("nodes", {"name": "x", "kind": "FOLDER", "parents": [mine["id"]]})
    assert r.status_code == 400
    # and nothing of A shows in B's lists or changes
    assert all(n["id"] not in (mine["id"], f["id"]) for n in other_api.list_all("nodes"))
    ids = {n["id"] for o in other_api.changes() for n in o.get("nodes", [])}
    assert mine["id"] not in ids and f["id"] not in ids
    # A's node is untouched
    assert api.get(f"nodes/{f['id']}").json()["name"] == "secret.txt"
