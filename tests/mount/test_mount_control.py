"""`acdfuse status` and `acdfuse sync` against real mounts through their control socket, and SIGTERM:
the mount process unmounts its mount point and exits 0."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import stat
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import pattern, upload

from acdfuse.runtime.pidfiles import MountRecord

pytestmark = pytest.mark.mount


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = os.environ.copy()
    for var, name in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache-home"),
                      ("XDG_CONFIG_HOME", "config"), ("XDG_RUNTIME_DIR", "run")):
        env[var] = str(tmp_path / name)
    return env


def cli(env: dict[str, str], *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    if "stderr" not in kw:
        kw["capture_output"] = True
    return subprocess.run([sys.executable, "-m", "acdfuse", *args], env=env, text=True, timeout=120,
                          check=False, **kw)


def test_status_and_sync(mounts: Any, cdir: Path, client: Any, env: dict[str, str], tmp_path: Path) -> None:
    m = mounts(cdir, env=env).start("-o", "cache_size=512M")
    m2 = mounts(cdir, name="mnt2", cache="cache2", env=env).start()
    record = MountRecord(tmp_path / "run" / "acdfuse", m.mnt)
    assert stat.S_IMODE(record.control_socket.stat().st_mode) == 0o600

    (m.mnt / "seen.txt").exists()
    upload(client, "new.bin", pattern(1000))
    done = cli(env, "sync", str(m.mnt))
    assert done.returncode == 0, done.stderr
    assert "synced" in done.stdout and done.stderr == ""
    # sync returned after the sync: the file is there without waiting
    assert (m.mnt / "new.bin").read_bytes() == pattern(1000)

    done = cli(env, "status", str(m.mnt), "--json")
    assert done.returncode == 0, done.stderr
    [status] = json.loads(done.stdout)
    assert status["mountpoint"] == str(m.mnt) and status["pid"] == m.proc.pid
    assert status["nodes"] >= 2
    assert status["last_sync"]["state"] == "online" and status["last_sync"]["error"] is None
    assert status["last_sync"]["syncs"] >= 1 and status["last_sync"]["at"] > 0
    assert status["quota"]["total"] > 0
    assert status["cache"]["reads"] >= 1 and status["cache"]["disk_bytes"] >= 0
    assert status["pending"] == {"count": 0, "bytes": 0, "failures": []}
    assert status["options"]["cache_size"] == 512 << 20 and status["options"]["interval"] == 3600
    assert status["account"]["config_dir"] == str(cdir) and not status["account"]["bundled_drive"]

    # no argument: every mount of this user, in text
    done = cli(env, "status")
    assert done.returncode == 0, done.stderr
    assert f"{m.mnt} (pid" in done.stdout and f"{m2.mnt} (pid" in done.stdout
    assert "last sync" in done.stdout and "online" in done.stdout
    # sizes for people: units, not a bare byte count
    assert re.search(r"cache +[0-9.]+ (B|KiB|MiB|GiB) on disk", done.stdout), done.stdout
    assert re.search(r"pending +0 uploads, 0 B", done.stdout), done.stdout
    # sync with several mounts wants a name
    done = cli(env, "sync")
    assert done.returncode == 1 and "name one" in done.stderr

    # on a terminal: a progress bar in nodes per second
    primary, secondary = pty.openpty()
    # a terminal of 100 columns (a fresh pty has 0, where the bar has no room)
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        done = cli(env, "sync", str(m2.mnt), stderr=secondary, stdout=subprocess.PIPE)
        os.close(secondary)
        secondary = -1
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert done.returncode == 0
    assert b"syncing" in shown and b"nodes" in shown


def test_status_of_no_mount(env: dict[str, str], tmp_path: Path) -> None:
    done = cli(env, "status")
    assert done.returncode == 0 and done.stdout == "acdfuse: no mounts\n"
    done = cli(env, "status", str(tmp_path), "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout) == [{"mountpoint": str(tmp_path),
                                        "error": f"{tmp_path} is not mounted by acdfuse"}]
    done = cli(env, "sync", str(tmp_path))
    assert done.returncode == 1 and "not mounted by acdfuse" in done.stderr


def test_sigterm_unmounts(mounts: Any, cdir: Path, env: dict[str, str], tmp_path: Path) -> None:
    m = mounts(cdir, env=env).start()
    record = MountRecord(tmp_path / "run" / "acdfuse", m.mnt)
    assert record.pid_file.exists() and record.control_socket.exists()
    proc = m.proc
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, m.stderr()
    m.proc = None
    assert not os.path.ismount(m.mnt)
    assert not record.pid_file.exists() and not record.control_socket.exists()
    assert "unmounted" in m.log_file.read_text()
