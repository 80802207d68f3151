"""The run dir (pid and lock files of mounts) must be this user's alone: under /tmp another user could
have made it first and so steer our pid and lock files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from acdfuse.runtime.pidfiles import MountRecord


def test_a_private_run_dir_is_made_and_used(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir(mode=0o700)
    record = MountRecord(base / "acdfuse", tmp_path / "mnt")
    fd = record.lock()
    try:
        assert (base / "acdfuse").stat().st_mode & 0o777 == 0o700
        assert record.lock_file.exists()
    finally:
        os.close(fd)


def test_a_run_dir_others_may_change_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    base.chmod(0o777)           # as a dir another user pre-made in /tmp with open modes would be
    record = MountRecord(base / "acdfuse", tmp_path / "mnt")
    with pytest.raises(PermissionError, match="only this user may change"):
        record.lock()
    with pytest.raises(PermissionError):
        record.write_pid()
    assert not record.pid_file.exists()


def test_a_run_dir_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    base = tmp_path / "base"
    base.mkdir(mode=0o700)
    (base / "acdfuse").symlink_to(real)
    with pytest.raises(PermissionError):
        MountRecord(base / "acdfuse", tmp_path / "mnt").lock()
