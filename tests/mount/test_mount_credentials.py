"""Background mounts tell the user in one line what went wrong or how they are mounted: refused
credentials (cold and warm mirror, QA F11), a failed mount said once (QA F5), a read-only mount
table entry (QA F9), a private cache dir (QA F13)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import fusermount_u, log_problems, require_fuse

pytestmark = pytest.mark.mount


def acdfuse(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "xcache"),
                     ("XDG_CONFIG_HOME", "config"), ("XDG_RUNTIME_DIR", "run")):
        (tmp_path / sub).mkdir(mode=0o700, exist_ok=True)
        env[var] = str(tmp_path / sub)
    return subprocess.run([sys.executable, "-m", "acdfuse", *args], env=env, capture_output=True,
                          text=True, timeout=180, check=False)


def bogus_copy(cdir: Path, target: Path) -> Path:
    shutil.copytree(cdir, target)
    oauth = json.loads((target / "oauth_data").read_text())
    oauth.update(access_token="Atza|bogus", refresh_token="Atzr|bogus")
    (target / "oauth_data").write_text(json.dumps(oauth))
    return target


def console_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def test_refused_credentials_on_an_empty_mirror_fail_in_one_clear_line(tmp_path: Path, cdir: Path) -> None:
    bad = bogus_copy(cdir, tmp_path / "bad")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = acdfuse(tmp_path, "mount", str(mnt), "--config-dir", str(bad), "--cache-dir", str(tmp_path / "c"),
                   "--timeout", "5")
    assert proc.returncode != 0
    lines = console_lines(proc)
    assert len(lines) == 1, proc.stderr                       # said once, no empty first line
    assert lines[0].startswith("acdfuse mount: cannot mount")
    assert "refused the credentials" in lines[0] and str(bad) in lines[0]
    assert "did not answer" not in lines[0]
    assert not os.path.ismount(mnt)


def test_refused_credentials_on_a_warm_mirror_mount_offline_with_one_warning(
        tmp_path: Path, cdir: Path, client: Any, expect_errors: list[str]) -> None:
    require_fuse()
    client.upload_stream(io.BytesIO(b"cached bytes\n"), "warm.txt")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cache = tmp_path / "c"
    up = acdfuse(tmp_path, "mount", str(mnt), "--config-dir", str(cdir), "--cache-dir", str(cache))
    assert up.returncode == 0, up.stderr
    try:
        assert (mnt / "warm.txt").read_bytes() == b"cached bytes\n"
        assert console_lines(up) == []                       # a good mount is quiet
    finally:
        down = acdfuse(tmp_path, "umount", str(mnt))
    assert down.returncode == 0, down.stderr

    bad = bogus_copy(cdir, tmp_path / "bad")
    up = acdfuse(tmp_path, "mount", str(mnt), "--config-dir", str(bad), "--cache-dir", str(cache),
                 "--timeout", "5")
    try:
        assert up.returncode == 0, up.stderr
        lines = console_lines(up)
        assert len(lines) == 1, up.stderr
        assert "offline" in lines[0] and "refused the credentials" in lines[0] and str(bad) in lines[0]
        assert (mnt / "warm.txt").read_bytes() == b"cached bytes\n"
    finally:
        down = acdfuse(tmp_path, "umount", str(mnt))
        if os.path.ismount(mnt):
            fusermount_u(mnt, lazy=True)
    assert down.returncode == 0, down.stderr
    assert not log_problems(cache / "acdfuse.log", [])


def test_the_mount_table_says_read_only(tmp_path: Path, cdir: Path) -> None:
    require_fuse()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cache = tmp_path / "new" / "c"
    up = acdfuse(tmp_path, "mount", str(mnt), "--config-dir", str(cdir), "--cache-dir", str(cache),
                 "--read-only")
    assert up.returncode == 0, up.stderr
    try:
        # QA F13: the cache holds drive content and names: other users cannot enter it
        assert cache.stat().st_mode & 0o777 == 0o700
        assert cache.parent.stat().st_mode & 0o777 == 0o700
        entry = next(line.split() for line in Path("/proc/self/mounts").read_text().splitlines()
                     if line.split()[1] == str(mnt))
        assert "ro" in entry[3].split(","), entry
    finally:
        down = acdfuse(tmp_path, "umount", str(mnt))
    assert down.returncode == 0, down.stderr


def test_help_says_how_writing_works(tmp_path: Path) -> None:
    proc = acdfuse(tmp_path, "mount", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "--read-only" in text and "EROFS" in text and "--upload-delay" in text
    assert "write journal" in text and "acdfuse umount" in text
    # QA F14: where a client config comes from, where the bundled drive and the log live
    for needle in ("--credentials-out CDIR", "acdfuse/credentials", "acdfuse/drive", "acdfuse.log"):
        assert needle in text, needle


def test_default_cache_dirs_are_closed_a_chosen_one_gets_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from acdfuse.runtime.paths import make_cache_dir  # noqa: PLC0415

    root = tmp_path / "xdg-cache" / "acdfuse"
    (root / "embedded").mkdir(parents=True)
    for d in (root, root / "embedded"):
        d.chmod(0o755)                     # as an older version left them
    make_cache_dir(root / "embedded", root)
    assert [d.stat().st_mode & 0o777 for d in (root, root / "embedded")] == [0o700, 0o700]
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    chosen.chmod(0o755)
    with caplog.at_level("WARNING", logger="acdfuse.runtime.paths"):
        make_cache_dir(chosen, root)
    assert chosen.stat().st_mode & 0o777 == 0o755    # the user's dir: told, not changed
    assert "open to other users" in caplog.text


def test_warm_mirror_with_the_server_down_mounts_offline_with_one_line(
        tmp_path: Path, cdir: Path, client: Any, drive_server: Any) -> None:
    require_fuse()
    client.upload_stream(io.BytesIO(b"still here\n"), "kept.txt")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cache = tmp_path / "c"
    up = acdfuse(tmp_path, "mount", str(mnt), "--config-dir", str(cdir), "--cache-dir", str(cache))
    assert up.returncode == 0, up.stderr
    try:
        assert (mnt / "kept.txt").read_bytes() == b"still here\n"
    finally:
        down = acdfuse(tmp_path, "umount", str(mnt))
    assert down.returncode == 0, down.stderr
    drive_server.close()

    up = acdfuse(tmp_path, "mount", str(mnt), "--config-dir", str(cdir), "--cache-dir", str(cache))
    try:
        assert up.returncode == 0, up.stderr
        lines = console_lines(up)
        assert len(lines) == 1, up.stderr
        assert "offline" in lines[0] and "does not accept connections" in lines[0]
        assert (mnt / "kept.txt").read_bytes() == b"still here\n"
    finally:
        down = acdfuse(tmp_path, "umount", str(mnt))
        if os.path.ismount(mnt):
            fusermount_u(mnt, lazy=True)
    assert down.returncode == 0, down.stderr
    assert not log_problems(cache / "acdfuse.log", [])
