"""Tokens refresh by themselves (ahead of time and after a 401), files are written atomically with 0600,
clients sharing a config dir do not clobber each other, and the login flows work against our server."""

from __future__ import annotations

import html
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import webbrowser
from pathlib import Path

import pytest
import requests
from api_helpers import put_file

from acdfuse.api import oauth
from acdfuse.api.client import ENDPOINT_VAL_TIME, ACDClient
from acdfuse.api.common import AMAZON_ENDPOINT_URL, RequestError, ServiceUrls, load_service_urls
from acdfuse.server import DriveServer


def _oauth(cdir: Path) -> dict:
    return json.loads((cdir / "oauth_data").read_text())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def short_cdir(drive_server: DriveServer, tmp_path: Path) -> Path:
    """Credentials whose access tokens live 2 seconds."""
    path = tmp_path / "short"
    drive_server.write_credentials(path, token_lifetime=2)
    return path


def test_expired_token_is_refreshed_before_use(drive_server: DriveServer, short_cdir: Path) -> None:
    before = _oauth(short_cdir)
    client = ACDClient(str(short_cdir))
    drive_server.stats.reset()
    root = client.get_root_id()  # the server wrote exp_time = issue + 2 - 120: already due
    after = _oauth(short_cdir)
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] == before["refresh_token"]
    assert after["exp_time"] > time.time() - 5
    stats = drive_server.stats.snapshot()
    assert stats["oauth"] == 1 and stats["unauthorized"] == 0
    time.sleep(2.2)  # let the new token run out
    assert client.list_children(root) == []
    assert _oauth(short_cdir)["access_token"] != after["access_token"]
    assert drive_server.stats.snapshot()["unauthorized"] == 0
    assert _mode(short_cdir / "oauth_data") == 0o600


def test_401_refreshes_once_and_repeats(drive_server: DriveServer, tmp_path: Path) -> None:
    cdir = tmp_path / "c401"
    drive_server.write_credentials(cdir, token_lifetime=1)
    data = _oauth(cdir)
    data["exp_time"] = time.time() + 3600  # the client believes the token is good for an hour
    (cdir / "oauth_data").write_text(json.dumps(data))
    client = ACDClient(str(cdir))
    time.sleep(1.2)  # ...but the server lets it expire
    drive_server.stats.reset()
    node = put_file(client, "after-401.txt", b"x")  # an upload: the body is sent again after the refresh
    assert node["name"] == "after-401.txt"
    stats = drive_server.stats.snapshot()
    assert stats["unauthorized"] == 1
    assert stats["oauth"] == 1
    assert _oauth(cdir)["access_token"] != data["access_token"]


def test_refresh_failure_is_clear(drive_server: DriveServer, short_cdir: Path) -> None:
    data = _oauth(short_cdir)
    data["refresh_token"] = "Atzr|not-a-valid-refresh-token"
    (short_cdir / "oauth_data").write_text(json.dumps(data))
    client = ACDClient(str(short_cdir))
    with pytest.raises(RequestError) as info:
        client.get_root_id()
    assert info.value.status_code == RequestError.CODE.REFRESH_FAILED
    assert "refresh token" in info.value.msg and "invalid grant" in info.value.msg


def test_invalid_token_file(cdir: Path) -> None:
    (cdir / "oauth_data").write_text('{"access_token": "x"}')
    with pytest.raises(RequestError) as info:
        ACDClient(str(cdir))
    assert info.value.status_code == RequestError.CODE.INVALID_TOKEN
    assert "oauth_data" in info.value.msg


def test_token_file_is_written_atomically_0600(short_cdir: Path) -> None:
    (short_cdir / "oauth_data").chmod(0o644)
    client = ACDClient(str(short_cdir))
    client.get_root_id()
    assert _mode(short_cdir / "oauth_data") == 0o600
    # no temporary files left behind; only the lock file is new
    assert sorted(p.name for p in short_cdir.iterdir()) == [
        "acdfuse_server",
        "client_data",
        "endpoint_data",
        "oauth_data",
        "oauth_data.lock",
    ]


def test_clients_sharing_a_dir_reload_instead_of_refreshing(
    drive_server: DriveServer, short_cdir: Path
) -> None:
    first = ACDClient(str(short_cdir))
    second = ACDClient(str(short_cdir))  # e.g. another process: loaded the same expired token
    drive_server.stats.reset()
    first.get_root_id()
    second.get_root_id()  # finds the token the first one wrote and uses it
    assert drive_server.stats.snapshot()["oauth"] == 1
    assert second.handler.oauth_data["access_token"] == first.handler.oauth_data["access_token"]


def test_concurrent_clients_on_one_dir(drive_server: DriveServer, short_cdir: Path) -> None:
    """Two clients (separate handlers, like two processes) and two threads each, tokens expiring."""
    clients = [ACDClient(str(short_cdir)) for _ in range(2)]
    root = clients[0].get_root_id()
    errors: list[BaseException] = []

    def work(c: ACDClient) -> None:
        try:
            deadline = time.monotonic() + 5  # more than two token lifetimes
            while time.monotonic() < deadline:
                c.list_children(root)
        except BaseException as exc:  # collected and re-raised by the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    stats = drive_server.stats.snapshot()
    assert stats["oauth"] >= 2
    json.loads((short_cdir / "oauth_data").read_text())  # never left half-written


def test_access_token_info(client: ACDClient, cdir: Path) -> None:
    info = client.handler.get_access_token_info()
    client_id = json.loads((cdir / "client_data").read_text())["CLIENT_ID"]
    assert info["aud"] == client_id
    assert info["exp"] > 0 and "user_id" in info and "app_id" in info


def test_local_handler_authorization_code_flow(
    drive_server: DriveServer, cdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (cdir / "oauth_data").unlink()
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open_new_tab", opened.append)

    def user(prompt: str) -> str:
        """Plays the user: opens the login page, allows access, pastes the redirect URL."""
        url = opened[-1]
        assert url in prompt
        page = requests.get(url, timeout=10)
        assert page.status_code == 200
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
        hidden = {k: html.unescape(v) for k, v in hidden.items()}
        answer = requests.post(
            drive_server.base_url + "/ap/oa",
            data={**hidden, "account": "default", "decision": "allow"},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 302
        return answer.headers["Location"]

    monkeypatch.setattr("builtins.input", user)
    client = ACDClient(str(cdir))
    assert isinstance(client.handler, oauth.LocalOAuthHandler)
    assert opened and opened[0].startswith(drive_server.base_url + "/ap/oa?")
    assert _mode(cdir / "oauth_data") == 0o600
    assert client.get_root_id()


def test_appspot_handler_without_client_data(cdir: Path) -> None:
    (cdir / "client_data").unlink()
    client = ACDClient(str(cdir))
    assert type(client.handler) is oauth.AppspotOAuthHandler
    assert client.get_root_id()  # the server-issued token is valid for an hour


def test_endpoint_discovery_and_cache(drive_server: DriveServer, cdir: Path) -> None:
    (cdir / "endpoint_data").unlink()
    drive_server.stats.reset()
    client = ACDClient(str(cdir))
    assert drive_server.stats.snapshot()["requests"] == 0  # the constructor only reads files
    assert client.metadata_url == drive_server.base_url + "/drive/v1/"
    assert client.content_url == drive_server.base_url + "/cdproxy/"
    saved = json.loads((cdir / "endpoint_data").read_text())
    assert abs(saved["exp_time"] - (time.time() + ENDPOINT_VAL_TIME)) < 60
    assert _mode(cdir / "endpoint_data") == 0o600
    assert drive_server.stats.snapshot()["requests"] == 1

    saved["exp_time"] = time.time() - 1  # expired: fetched again
    saved["metadataUrl"] = "http://127.0.0.1:9/stale/"
    (cdir / "endpoint_data").write_text(json.dumps(saved))
    client2 = ACDClient(str(cdir))
    assert client2.get_root_id()
    assert (
        json.loads((cdir / "endpoint_data").read_text())["metadataUrl"]
        == drive_server.base_url + "/drive/v1/"
    )


def test_service_urls(cdir: Path, tmp_path: Path) -> None:
    base = json.loads((cdir / "acdfuse_server").read_text())["base_url"]
    urls = load_service_urls(str(cdir))
    assert urls == ServiceUrls.for_base(base)
    assert urls.endpoint == base + "/drive/v1/account/endpoint"
    assert urls.login == base + "/ap/oa"
    assert urls.token == base + "/auth/o2/token"
    assert urls.tokeninfo == base + "/auth/o2/tokeninfo"
    amazon = load_service_urls(str(tmp_path))
    assert amazon.endpoint == AMAZON_ENDPOINT_URL
    assert amazon.login == oauth.LocalOAuthHandler.AMAZON_OA_LOGIN_URL
    assert amazon.token == oauth.LocalOAuthHandler.AMAZON_OA_TOKEN_URL


def test_os_level_file_permissions_of_new_dir_files(client: ACDClient, cdir: Path) -> None:
    client.handler.write_oauth_data()
    for name in ("oauth_data",):
        assert _mode(cdir / name) == 0o600
    assert os.access(cdir / "oauth_data", os.R_OK)


_WORKER = """
import sys, time
from acdfuse.api.client import ACDClient
c = ACDClient(sys.argv[1])
root = c.get_root_id()
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    c.list_children(root)
    n += 1
print(n)
"""


def test_processes_sharing_a_dir(drive_server: DriveServer, short_cdir: Path) -> None:
    """Two real processes, tokens expiring every 2 s: both keep working, the file stays valid."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(short_cdir), "5"], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert all(int(o) > 0 for o in outs)
    assert drive_server.stats.snapshot()["oauth"] >= 2
    data = _oauth(short_cdir)
    assert data["access_token"].startswith("Atza|")
    assert _mode(short_cdir / "oauth_data") == 0o600


def test_appspot_handler_refreshes_against_our_server(short_cdir: Path) -> None:
    (short_cdir / "client_data").unlink()
    client = ACDClient(str(short_cdir))
    assert type(client.handler) is oauth.AppspotOAuthHandler
    assert client.get_root_id()  # the token is already due: this refreshes


def test_refresh_works_when_the_lock_file_cannot_be_opened(short_cdir: Path) -> None:
    (short_cdir / "oauth_data.lock").mkdir()  # open() fails even for root
    client = ACDClient(str(short_cdir))
    before = _oauth(short_cdir)["access_token"]
    assert client.get_root_id()
    assert _oauth(short_cdir)["access_token"] != before


def test_denied_login_is_a_clear_error(cdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cdir / "oauth_data").unlink()
    monkeypatch.setattr(webbrowser, "open_new_tab", lambda url: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "http://localhost/?error=access_denied")
    with pytest.raises(RequestError) as info:
        ACDClient(str(cdir))
    assert info.value.status_code == RequestError.CODE.INVALID_TOKEN
    assert "access_denied" in info.value.msg
    assert not (cdir / "oauth_data").exists()
