"""Per-account passwords (``acdfuse serve account add``) and the public PKCE client ``acdfuse-cli``."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

from acdfuse.common.locks import take_lock
from acdfuse.server import DriveServer
from acdfuse.server.accounts import check_password, hash_password
from acdfuse.server.auth import PUBLIC_CLIENT_ID, pkce_challenge
from acdfuse.server.config import ServerConfig
from acdfuse.server.db import SCHEMA_VERSION, Database
from acdfuse.server.provision import add_account, list_accounts
from acdfuse.server.server import LOCK_FILE

REDIRECT = "http://127.0.0.1:45678/cb"


def _login(base: str, q: dict[str, str], **form: str) -> requests.Response:
    return requests.post(
        base + "/ap/oa", data={**q, "decision": "allow", **form}, allow_redirects=False, timeout=10
    )


def _public_query(verifier: str, redirect: str = REDIRECT) -> dict[str, str]:
    return {
        "client_id": PUBLIC_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": redirect,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
        "state": "st",
    }


def _code(r: requests.Response) -> str:
    assert r.status_code == 302, r.text
    return parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]


def test_hash_is_salted_and_checked() -> None:
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b and "pw" not in a
    assert check_password("pw", a) and check_password("pw", b)
    assert not check_password("pW", a) and not check_password("pw", "garbage")


def test_account_password_on_login_page(drive_server: DriveServer) -> None:
    add_account(drive_server.config, "alice", "alice-pw")
    add_account(drive_server.config, "bob", "bob-pw")
    base = drive_server.base_url
    v = secrets.token_urlsafe(48)
    q = _public_query(v)
    assert 'type="password"' in requests.get(base + "/ap/oa", params=q, timeout=10).text
    assert _login(base, q, account="alice", password="bob-pw").status_code == 401
    assert _login(base, q, account="alice").status_code == 401
    # with passwords in use, the login page signs nobody up
    assert _login(base, q, account="mallory", password="x").status_code == 401
    assert drive_server.drive.account_by_name("mallory") is None
    _code(_login(base, q, account="alice", password="alice-pw"))
    _code(_login(base, q, account="bob", password="bob-pw"))


def test_server_wide_password_still_works(drive_server: DriveServer, server_config: ServerConfig) -> None:
    drive_server.oauth.config = replace(server_config, login_password="shared")
    add_account(drive_server.config, "alice", "alice-pw")
    base = drive_server.base_url
    q = _public_query(secrets.token_urlsafe(48))
    # an account with its own password needs that one, others the server-wide one
    assert _login(base, q, account="alice", password="shared").status_code == 401
    _code(_login(base, q, account="alice", password="alice-pw"))
    _code(_login(base, q, account="carol", password="shared"))
    assert _login(base, q, account="carol", password="nope").status_code == 401


def test_public_client_needs_pkce_and_loopback(drive_server: DriveServer) -> None:
    base = drive_server.base_url
    v = secrets.token_urlsafe(48)
    for bad in (
        {"redirect_uri": "http://example.com:80/cb"},
        {"redirect_uri": "https://127.0.0.1:4000/cb"},
        {"redirect_uri": "http://127.0.0.1/cb"},
        {"code_challenge_method": "plain"},
        {"code_challenge": ""},
    ):
        r = requests.get(base + "/ap/oa", params={**_public_query(v), **bad}, timeout=10)
        assert r.status_code == 400, bad
    for ok in ("http://127.0.0.1:5000/x", "http://localhost:5001/"):
        assert requests.get(base + "/ap/oa", params=_public_query(v, ok), timeout=10).status_code == 200


def test_public_client_code_exchange(drive_server: DriveServer, cdir: Path) -> None:
    base = drive_server.base_url
    token_url = base + "/auth/o2/token"
    v = secrets.token_urlsafe(48)

    def exchange(code: str, **extra: str) -> requests.Response:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        return requests.post(token_url, data={"client_id": PUBLIC_CLIENT_ID, **form, **extra}, timeout=10)

    # no verifier, a wrong one: refused (and the code is used up)
    r = exchange(_code(_login(base, _public_query(v), account="alice")))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    code = _code(_login(base, _public_query(v), account="alice"))
    r = exchange(code, code_verifier=secrets.token_urlsafe(48))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # the public client's code cannot be redeemed with the app's secret either
    client = json.loads((cdir / "client_data").read_text())
    code = _code(_login(base, _public_query(v), account="alice"))
    r = exchange(code, code_verifier=v, client_id=client["CLIENT_ID"], client_secret=client["CLIENT_SECRET"])
    assert r.status_code == 400
    # the right verifier: tokens, usable, and refreshable with the public client id and no secret
    code = _code(_login(base, _public_query(v), account="alice"))
    r = exchange(code, code_verifier=v)
    assert r.status_code == 200, r.text
    tokens = r.json()
    root = requests.get(
        base + "/drive/v1/nodes",
        params={"filters": "isRoot:true"},
        headers={"Authorization": "Bearer " + tokens["access_token"]},
        timeout=10,
    )
    assert root.status_code == 200
    r = requests.post(
        token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": PUBLIC_CLIENT_ID,
        },
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["access_token"] != tokens["access_token"]
    # the confidential app still needs its secret for a code
    code = _code(
        _login(base, {"client_id": client["CLIENT_ID"], "response_type": "code", "redirect_uri": REDIRECT})
    )
    r = requests.post(
        token_url,
        data={"grant_type": "authorization_code", "code": code, "client_id": client["CLIENT_ID"]},
        timeout=10,
    )
    assert r.status_code == 401


def _schema_2_database(path: Path) -> None:
    """A database as a server of schema 2 (before account passwords) left it."""
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema', '2');"
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL,"
        " root TEXT NOT NULL, quota INTEGER NOT NULL, horizon INTEGER NOT NULL DEFAULT 0,"
        " created INTEGER NOT NULL);"
        "INSERT INTO accounts(name, user_id, root, quota, created) VALUES ('old', 'u', 'r', 1, 0);"
        "CREATE TABLE nodes (id TEXT PRIMARY KEY, account INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT,"
        " lname TEXT, status TEXT NOT NULL, version INTEGER NOT NULL, labels TEXT NOT NULL DEFAULT '[]',"
        " description TEXT NOT NULL DEFAULT '', created_by TEXT NOT NULL, created INTEGER NOT NULL,"
        " modified INTEGER NOT NULL, etag TEXT NOT NULL, is_root INTEGER NOT NULL DEFAULT 0, size INTEGER,"
        " md5 TEXT, content_type TEXT, extension TEXT, content_version INTEGER, content_date INTEGER,"
        " blob TEXT, local_id TEXT, seq INTEGER NOT NULL, trashed INTEGER,"
        " parents_json TEXT NOT NULL DEFAULT '[]');"
    )
    conn.commit()
    conn.close()


def test_schema_2_database_migrates(tmp_path: Path) -> None:
    path = tmp_path / "drive.sqlite3"
    _schema_2_database(path)
    db = Database(path)
    db.open()
    try:
        assert db.get_meta("schema") == str(SCHEMA_VERSION)
        row = db.conn().execute("SELECT name, password FROM accounts").fetchone()
        assert tuple(row) == ("old", None)
    finally:
        db.close()


def test_account_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    base = [sys.executable, "-m", "acdfuse", "serve", "--data", str(data), "account"]
    r = subprocess.run([*base, "add", "alice", "--password-file", str(pw)], capture_output=True, text=True)
    assert r.returncode == 0 and "added" in r.stdout, r.stderr
    r = subprocess.run([*base, "add", "bob", "--no-password"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*base, "add", "carol"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "--password-file" in r.stderr
    r = subprocess.run([*base, "list"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.splitlines() == ["alice\tpassword", "bob\tno password"]
    infos = list_accounts(ServerConfig(data_dir=data))
    assert [(i.name, i.has_password) for i in infos] == [("alice", True), ("bob", False)]


def test_account_add_while_an_older_server_runs_says_to_restart_it(tmp_path: Path) -> None:
    """A server of an older version holds the data dir (its lock), its database at schema 2: adding an
    account would need the migration only that server may do, so it is refused in one line saying how
    to get on; once the old server is gone, the same command works."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    _schema_2_database(data / "drive.sqlite3")
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    argv = [sys.executable, "-m", "acdfuse", "serve", "--data", str(data), "account", "add", "alice",
            "--password-file", str(pw)]
    lock = take_lock(data / LOCK_FILE)      # what the running (older) server holds
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    finally:
        os.close(lock)
    assert r.returncode == 2
    assert r.stderr == (
        f"acdfuse serve account: the server running on {data} is older than this acdfuse (its database has "
        f"schema 2, this version needs {SCHEMA_VERSION}): stop it (kill $(cat {data / 'server.pid'})), start "
        f"it again with this acdfuse (`acdfuse serve --data {data} ...`), then run this command again\n")
    conn = sqlite3.connect(data / "drive.sqlite3")
    try:   # untouched: still the old server's database
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == ("2",)
        assert "password" not in {r[1] for r in conn.execute("PRAGMA table_info(accounts)")}
    finally:
        conn.close()

    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and "added" in r.stdout, r.stderr
    assert [(i.name, i.has_password) for i in list_accounts(ServerConfig(data_dir=data))] == [
        ("alice", True), ("old", False)]
