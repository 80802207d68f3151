"""`acdfuse umount` of a writable mount: it waits for the uploads and shows their progress; with
--force it leaves them in the write journal for the next mount, and says so (real background mounts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import log_problems, require_fuse
from write_helpers import pending_uploads, wait_uploaded, write_file

pytestmark = pytest.mark.mount


def acdfuse(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line with XDG dirs of this test (the mount's pid file lives in its run dir)."""
    env = dict(os.environ)
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "xcache"),
                     ("XDG_CONFIG_HOME", "config"), ("XDG_RUNTIME_DIR", "run")):
        (tmp_path / sub).mkdir(mode=0o700, exist_ok=True)
        env[var] = str(tmp_path / sub)
    return subprocess.run([sys.executable, "-m", "acdfuse", *args], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def server_files(client: Any) -> dict[str, bytes]:
    out = {}
    for child in client.list_children(client.get_root_id()):
        if child.get("kind") == "FILE" and child.get("status") == "AVAILABLE":
            size = child["contentProperties"]["size"]
            out[child["name"]] = bytes(client.download_chunk(child["id"], 0, size)) if size else b""
    return out


def test_umount_waits_for_the_uploads_and_shows_their_progress(tmp_path: Path, cdir: Path,
                                                              client: Any) -> None:
    require_fuse()
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    up = acdfuse(tmp_path, "mount", str(mnt), "--config-dir", str(cdir), "--cache-dir", str(cache),
                 "--upload-delay", "3")
    assert up.returncode == 0, up.stderr
    try:
        data = {f"f{i}.bin": os.urandom(100_000 * (i + 1)) for i in range(5)}
        for name, content in data.items():
            write_file(mnt / name, content)
        assert pending_uploads(cache) == 5               # all within their quiet delay
    finally:
        down = acdfuse(tmp_path, "umount", str(mnt))
    assert down.returncode == 0, down.stderr
    assert "waiting for 5 upload(s)" in down.stderr, down.stderr
    assert "every closed file is uploaded" in down.stderr, down.stderr
    assert not os.path.ismount(mnt)
    assert pending_uploads(cache) == 0
    assert server_files(client) == data
    assert not log_problems(cache / "acdfuse.log", [])


def test_umount_force_leaves_the_uploads_to_the_next_mount(tmp_path: Path, cdir: Path, client: Any) -> None:
    require_fuse()
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    up = acdfuse(tmp_path, "mount", str(mnt), "--config-dir", str(cdir), "--cache-dir", str(cache),
                 "--upload-delay", "3600")
    assert up.returncode == 0, up.stderr
    try:
        write_file(mnt / "later.txt", b"uploaded by the next mount")
    finally:
        down = acdfuse(tmp_path, "umount", "--force", str(mnt))
    assert down.returncode == 0, down.stderr
    assert "stay in the write journal" in down.stderr and str(cache) in down.stderr, down.stderr
    assert pending_uploads(cache) == 1
    assert "later.txt" not in server_files(client)
    # the next mount with that cache dir shows the file at once and uploads it
    up = acdfuse(tmp_path, "mount", str(mnt), "--config-dir", str(cdir), "--cache-dir", str(cache),
                 "--upload-delay", "0.2")
    assert up.returncode == 0, up.stderr
    try:
        assert (mnt / "later.txt").read_bytes() == b"uploaded by the next mount"
        wait_uploaded(cache)
    finally:
        down = acdfuse(tmp_path, "umount", str(mnt))
    assert down.returncode == 0, down.stderr
    assert server_files(client)["later.txt"] == b"uploaded by the next mount"
    assert not log_problems(cache / "acdfuse.log", [])


def test_status_shows_the_pending_uploads(tmp_path: Path, cdir: Path) -> None:
    require_fuse()
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    up = acdfuse(tmp_path, "mount", str(mnt), "--config-dir", str(cdir), "--cache-dir", str(cache),
                 "--upload-delay", "3600")
    assert up.returncode == 0, up.stderr
    try:
        write_file(mnt / "a.bin", b"x" * 1000)
        (mnt / "sub").mkdir()
        write_file(mnt / "sub" / "b.bin", b"y" * 500)
        done = acdfuse(tmp_path, "status", str(mnt), "--json")
        assert done.returncode == 0, done.stderr
        [status] = json.loads(done.stdout)
        assert status["pending"] == {"count": 2, "bytes": 1500, "failures": []}
        assert status["options"]["upload_delay"] == 3600
    finally:
        down = acdfuse(tmp_path, "umount", "--force", str(mnt))
    assert down.returncode == 0, down.stderr
