"""The first mount of a large drive shows the progress of its first sync on a terminal (a tqdm bar in
nodes per second, as `acdfuse sync` does), followed by the parent through a pipe from the background
mount process; with stderr not a terminal it stays quiet (issue 11, "sync")."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import fusermount_u, require_fuse

from acdfuse.server import DriveServer

pytestmark = pytest.mark.mount

NODES = 20_000      # a first sync of a few seconds here; far more than one progress tick


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "xcache"),
                     ("XDG_CONFIG_HOME", "config"), ("XDG_RUNTIME_DIR", "run")):
        (tmp_path / sub).mkdir(mode=0o700, exist_ok=True)
        env[var] = str(tmp_path / sub)
    return env


def run_on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run argv with its stderr on a pseudo-terminal 300 columns wide; (status, what it wrote there)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 300, 0, 0))
    try:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=slave)
    finally:
        os.close(slave)
    out = b""
    try:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:         # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            out += data
    finally:
        os.close(master)
    return proc.wait(timeout=180), out.decode(errors="replace")


def test_first_mount_of_a_large_drive_shows_progress_on_a_terminal_only(
        tmp_path: Path, drive_server: DriveServer, cdir: Path) -> None:
    require_fuse()
    drive_server.generate_tree(n_nodes=NODES)
    env = _env(tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    acdfuse = [sys.executable, "-m", "acdfuse"]
    code, shown = run_on_a_terminal([*acdfuse, "mount", str(mnt), "--config-dir", str(cdir),
                                     "--cache-dir", str(tmp_path / "c1")], env)
    try:
        assert code == 0, shown
        assert os.path.ismount(mnt)
        bars = re.findall(rf"first sync of {re.escape(str(mnt))}: (\d+) nodes \[[^\]]* nodes/s\]", shown)
        assert bars, shown
        assert int(bars[-1]) >= NODES, shown        # the last state of the bar: every node read
        assert "Traceback" not in shown
    finally:
        down = subprocess.run([*acdfuse, "umount", str(mnt)], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        if os.path.ismount(mnt):
            fusermount_u(mnt, lazy=True)
    assert down.returncode == 0, down.stderr

    # the same first sync with stderr not a terminal: no bar, nothing at all
    quiet = subprocess.run([*acdfuse, "mount", str(mnt), "--config-dir", str(cdir),
                            "--cache-dir", str(tmp_path / "c2")], env=env, capture_output=True, text=True,
                           timeout=180, check=False)
    try:
        assert quiet.returncode == 0, quiet.stderr
        assert quiet.stderr == ""
    finally:
        down = subprocess.run([*acdfuse, "umount", str(mnt)], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        if os.path.ismount(mnt):
            fusermount_u(mnt, lazy=True)
    assert down.returncode == 0, down.stderr


def test_umount_on_a_terminal_shows_the_uploads_it_waits_for_as_a_bar(
        tmp_path: Path, cdir: Path, client: Any) -> None:
    require_fuse()
    env = _env(tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    acdfuse = [sys.executable, "-m", "acdfuse"]
    up = subprocess.run([*acdfuse, "mount", str(mnt), "--config-dir", str(cdir), "--cache-dir",
                         str(tmp_path / "c"), "--upload-delay", "3"], env=env, capture_output=True,
                        text=True, timeout=180, check=False)
    assert up.returncode == 0, up.stderr
    try:
        data = {f"f{i}.bin": os.urandom(200_000) for i in range(3)}
        for name, content in data.items():
            (mnt / name).write_bytes(content)        # closed: each waits out its quiet delay
        code, shown = run_on_a_terminal([*acdfuse, "umount", str(mnt)], env)
    finally:
        if os.path.ismount(mnt):
            fusermount_u(mnt, lazy=True)
    assert code == 0, shown
    assert re.search(r"acdfuse umount: uploading: +\d+%.*B/s, \d file\(s\) left\]", shown), shown
    assert re.search(r"acdfuse umount: uploading: 100%.*0 file\(s\) left\]", shown), shown
    assert "every closed file is uploaded" in shown and "waiting for" not in shown
    names = {c["name"] for c in client.list_children(client.get_root_id())}
    assert set(data) <= names
