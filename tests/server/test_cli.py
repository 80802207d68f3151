"""``acdfuse serve`` as a process: flags, --credentials-out files (0600), kill -9 durability."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests


@contextmanager
def serve(data: Path, cdir: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "acdfuse",
            "serve",
            "--data",
            str(data),
            "--port",
            "0",
            "--credentials-out",
            str(cdir),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = ""
        for line in proc.stdout:
            if "serving at" in line:
                base = line.split("serving at", 1)[1].split()[0]
                break
        assert base.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()


def _token(cdir: Path) -> dict[str, str]:
    return {"Authorization": "Bearer " + json.loads((cdir / "oauth_data").read_text())["access_token"]}


def test_serve_writes_credentials_and_stops_on_sigterm(tmp_path: Path) -> None:
    cdir = tmp_path / "cdir"
    with serve(tmp_path / "data", cdir, "--token-lifetime", "7200", "--account", "bob") as (proc, base):
        files = {p.name: p for p in cdir.iterdir()}
        assert set(files) == {"endpoint_data", "oauth_data", "client_data", "acdfuse_server"}
        for p in files.values():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        ep = json.loads(files["endpoint_data"].read_text())
        assert ep["metadataUrl"] == base + "/drive/v1/" and ep["contentUrl"] == base + "/cdproxy/"
        assert ep["customerExists"] is True and ep["exp_time"] > 0
        oauth = json.loads(files["oauth_data"].read_text())
        assert oauth["token_type"] == "bearer" and oauth["expires_in"] == 7200
        assert set(oauth) == {"access_token", "refresh_token", "token_type", "expires_in", "exp_time"}
        assert set(json.loads(files["client_data"].read_text())) == {"CLIENT_ID", "CLIENT_SECRET"}
        assert json.loads(files["acdfuse_server"].read_text()) == {"base_url": base}
        r = requests.get(base + "/drive/v1/account/endpoint", headers=_token(cdir), timeout=10)
        assert r.status_code == 200 and r.json()["metadataUrl"] == base + "/drive/v1/"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_completed_upload_survives_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    payload = os.urandom(1_500_000)
    with serve(data_dir, tmp_path / "c1") as (proc, base):
        h = _token(tmp_path / "c1")
        meta = json.dumps({"name": "keep.bin", "kind": "FILE"})
        r = requests.post(
            base + "/cdproxy/nodes",
            params={"suppress": "deduplication"},
            headers=h,
            files={"metadata": (None, meta), "content": ("x", payload)},
            timeout=30,
        )
        assert r.status_code == 201
        node = r.json()
        folder = requests.post(
            base + "/drive/v1/nodes",
            headers=h,
            timeout=10,
            data=json.dumps({"name": "kept", "kind": "FOLDER"}),
        ).json()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with serve(data_dir, tmp_path / "c2") as (_proc, base):
        h = _token(tmp_path / "c2")
        assert requests.get(base + f"/drive/v1/nodes/{node['id']}", headers=h, timeout=10).json() == node
        assert (
            requests.get(base + f"/drive/v1/nodes/{folder['id']}", headers=h, timeout=10).status_code == 200
        )
        r = requests.get(base + f"/cdproxy/nodes/{node['id']}/content", headers=h, timeout=30)
        assert r.content == payload


def test_bad_flags(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "acdfuse", "serve", "--data", str(tmp_path), "--error-rate", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "error-rate" in r.stderr


def test_help_shows_defaults_and_how_to_get_a_client_config() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "acdfuse", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = " ".join(r.stdout.split())  # argparse wraps lines
    for default in ("(default: 8080)", "(default: 3600)", "(default: default)", "(default: 127.0.0.1"):
        assert default in out, default
    for hint in (
        "--config-dir CDIR",
        "ACDClient(",
        "ACD_CLI_CACHE_PATH=CDIR",
        "--token-lifetime",
        "--credentials-only",
    ):
        assert hint in out, hint


def _run_briefly(tmp_path: Path, *extra: str) -> tuple[str, str]:
    """Start ``acdfuse serve`` until it says where it serves, stop it, return (stdout, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "acdfuse", "serve", "--data", str(tmp_path / "data"), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "serving at" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return "".join(lines) + out, err


def test_all_interfaces_bind_warns_once(tmp_path: Path) -> None:
    out, err = _run_briefly(tmp_path, "--host", "0.0.0.0")
    warnings = [line for line in err.splitlines() if "warning" in line and "loopback" in line]
    assert len(warnings) == 1, err
    assert "Host header" in warnings[0] and "--public-url" in warnings[0]
    out, err = _run_briefly(tmp_path, "--host", "0.0.0.0", "--public-url", "http://nas.lan:8080")
    assert "serving at http://nas.lan:8080" in out
    assert "clients are sent to http://nas.lan:8080" in err


def test_loopback_start_says_how_to_get_a_client_config(tmp_path: Path) -> None:
    out, err = _run_briefly(tmp_path)
    assert "warning" not in err
    assert "--credentials-only --credentials-out CDIR" in out and str(tmp_path / "data") in out


def test_bad_public_url(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "acdfuse", "serve", "--data", str(tmp_path), "--public-url", "nas.lan:8080"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "--public-url" in r.stderr


def test_background_returns_once_ready_and_stops_through_its_pid_file(tmp_path: Path) -> None:
    """``serve --background && mount`` must not race: credentials exist and the server answers (QA F18)."""
    data, cdir = tmp_path / "data", tmp_path / "c"

    def start(out: Path) -> subprocess.CompletedProcess[str]:
        argv = ["serve", "--data", str(data), "--port", "0", "--credentials-out", str(out), "--background"]
        return subprocess.run(
            [sys.executable, "-m", "acdfuse", *argv], capture_output=True, text=True, timeout=300, check=False
        )

    r = start(cdir)
    pid = int((data / "server.pid").read_text()) if (data / "server.pid").exists() else None
    try:
        assert r.returncode == 0, r.stderr
        assert pid is not None and f"pid {pid}" in r.stdout and "server.pid" in r.stdout
        base = json.loads((cdir / "acdfuse_server").read_text())["base_url"]
        assert f"serving at {base}" in r.stdout
        assert (
            requests.get(base + "/drive/v1/account/info", headers=_token(cdir), timeout=30).status_code == 200
        )
        again = start(tmp_path / "c2")  # the data dir is taken: fails with the child's reason
        assert again.returncode == 1 and "in use by another acdfuse server" in again.stderr
        assert not (tmp_path / "c2").exists()
        assert int((data / "server.pid").read_text()) == pid
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60  # generous: only "it stops and cleans up" matters
    while (data / "server.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (data / "server.pid").exists()
