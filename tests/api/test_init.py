"""``acdfuse init``: sign in to a running drive server (non-interactively, and with the test as the
browser), then use the stored tokens with ACDClient and ``acdfuse mount``'s default config dir."""

from __future__ import annotations

import html
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import requests

from acdfuse.api.client import ACDClient
from acdfuse.cli_mount import resolve_drive
from acdfuse.common.xdg import XdgDirs
from acdfuse.runtime.paths import ClientDirs
from acdfuse.server import DriveServer
from acdfuse.server.provision import add_account


def _init(tmp_path: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    return subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "acdfuse", "init", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        **kw,  # type: ignore[call-overload]
    )


def _password_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pw"
    path.write_text(text + "\n")
    return path


def _check_config(cdir: Path, srv: DriveServer, account: str) -> None:
    names = sorted(p.name for p in cdir.iterdir())
    assert names == ["acdfuse_server", "endpoint_data", "oauth_data"]
    for name in names:
        assert stat.S_IMODE((cdir / name).stat().st_mode) == 0o600
    client = ACDClient(str(cdir))
    try:
        assert client.get_root_id() == srv.account(account).root
        assert client.list_children(client.get_root_id()) == []
    finally:
        client.handler.close()


def test_init_non_interactive_then_client_and_refresh(drive_server: DriveServer, tmp_path: Path) -> None:
    add_account(drive_server.config, "alice", "alice-pw")
    add_account(drive_server.config, "bob", "bob-pw")
    cdir = tmp_path / "cfg" / "acdfuse"
    # a wrong password stores nothing
    bad = _init(tmp_path, "--server", drive_server.base_url, "--account", "alice",
                "--password-file", str(_password_file(tmp_path, "bob-pw")))
    assert bad.returncode == 1 and "wrong account or password" in bad.stderr
    assert not (cdir / "oauth_data").exists()
    r = _init(tmp_path, "--server", drive_server.base_url + "/", "--account", "alice",
              "--password-file", str(_password_file(tmp_path, "alice-pw")))
    assert r.returncode == 0, r.stderr
    _check_config(cdir, drive_server, "alice")
    # `acdfuse mount MNT` with no config flag picks this dir
    dirs = ClientDirs.from_xdg(XdgDirs.from_environ({"XDG_CONFIG_HOME": str(tmp_path / "cfg")}, tmp_path))
    assert resolve_drive({}, dirs) == (cdir, False)
    # refreshing works without client_data (the public client has no secret)
    client = ACDClient(str(cdir))
    try:
        old = json.loads((cdir / "oauth_data").read_text())["access_token"]
        client.handler.refresh_auth_token()
        new = json.loads((cdir / "oauth_data").read_text())["access_token"]
        assert new != old
        assert client.get_root_id() == drive_server.account("alice").root
    finally:
        client.handler.close()


def test_init_interactive_with_the_test_as_browser(drive_server: DriveServer, tmp_path: Path) -> None:
    add_account(drive_server.config, "carol", "carol-pw")
    cdir = tmp_path / "elsewhere"
    proc = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "acdfuse", "init", "--server", drive_server.base_url, "--no-browser",
         "--config-dir", str(cdir), "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if line.strip().startswith(drive_server.base_url + "/ap/oa?"):
                url = line.strip()
                break
        assert url, proc.stderr.read() if proc.stderr else ""
        # a stray request to the listener (wrong state) does not end the wait
        port = url.split("redirect_uri=http%3A%2F%2F127.0.0.1%3A", 1)[1].split("%2F", 1)[0]
        stray = requests.get(f"http://127.0.0.1:{port}/callback?code=x&state=forged", timeout=30)
        assert "failed" in stray.text and proc.poll() is None
        with requests.Session() as browser:
            page = browser.get(url, timeout=30)
            assert page.status_code == 200 and 'type="password"' in page.text
            form = dict(_hidden_inputs(page.text))
            form.update(account="carol", password="carol-pw", decision="allow")  # noqa: S106 - a test account
            # the redirect goes to init's listener on 127.0.0.1, which answers the browser
            done = browser.post(drive_server.base_url + "/ap/oa", data=form, timeout=30)
            assert done.status_code == 200 and "Signed in" in done.text
            assert done.url.startswith("http://127.0.0.1:")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "tokens stored" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    _check_config(cdir, drive_server, "carol")


def test_init_times_out_and_refuses_bad_urls(tmp_path: Path, drive_server: DriveServer) -> None:
    r = _init(tmp_path, "--server", drive_server.base_url, "--no-browser", "--timeout", "0.5")
    assert r.returncode == 1 and "no answer from the browser" in r.stderr
    r = _init(tmp_path, "--server", "ftp://x")
    assert r.returncode == 2
    assert not (tmp_path / "cfg" / "acdfuse" / "oauth_data").exists()


def _hidden_inputs(page: str) -> list[tuple[str, str]]:
    return [
        (m.group(1), html.unescape(m.group(2)))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page)
    ]
