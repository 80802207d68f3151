"""Helpers of the mount tests: real FUSE mounts: ``python3 -m acdfuse mount --foreground`` as a child process.

A missing /dev/fuse or fusermount fails the tests (never a skip). Every mount is unmounted in teardown,
only our own child processes are killed, and the mount's log file is checked for ERROR lines and
tracebacks that the test did not announce in ``expect_errors``.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

MOUNT_TIMEOUT = 60.0


def require_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse is missing: the mount tests cannot run here (they never skip)")
    if not (shutil.which("fusermount") or shutil.which("fusermount3")):
        pytest.fail("fusermount is missing: install fuse3 / libfuse2 (the mount tests never skip)")


def fusermount_u(mnt: Path, lazy: bool = False) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("fusermount") or shutil.which("fusermount3") or "fusermount"
    args = [exe, "-u"] + (["-z"] if lazy else []) + [str(mnt)]
    return subprocess.run(args, capture_output=True, text=True, check=False)


def log_problems(log_file: Path, expected: list[str]) -> list[str]:
    """ERROR/CRITICAL lines and tracebacks in a mount log that no expected substring explains."""
    if not log_file.exists():
        return []
    bad = []
    lines = log_file.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
            context = line if not line.startswith("Traceback") else "\n".join(lines[max(0, i - 1):i + 12])
            if not any(s in context for s in expected):
                bad.append(context)
    return bad


class Mount:
    """One ``acdfuse mount --foreground`` child process on a temp dir."""

    def __init__(self, mnt: Path, cdir: Path | None, cache_dir: Path, expected: list[str],
                 env: dict[str, str] | None = None) -> None:
        self.mnt = mnt
        self.cdir = cdir
        self.cache_dir = cache_dir
        self.expected = expected
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_path = cache_dir.parent / f"{cache_dir.name}-stderr.txt"

    @property
    def log_file(self) -> Path:
        return self.cache_dir / "acdfuse.log"

    def start(self, *extra: str) -> Mount:
        require_fuse()
        self.mnt.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "acdfuse", "mount", str(self.mnt), "--foreground",
                "--cache-dir", str(self.cache_dir), "--interval", "3600", "--timeout", "10", *extra]
        if self.cdir is not None:
            argv += ["--config-dir", str(self.cdir)]
        with open(self.stderr_path, "ab") as errf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf,
                                         env=self.env)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mount exited with {self.proc.returncode}:\n{self.stderr()}")
            if os.path.ismount(self.mnt):
                os.stat(self.mnt)
                return self
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"mount did not appear within {MOUNT_TIMEOUT}s:\n{self.stderr()}")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def sync(self, changed: Path | None = None, check: Any = None, timeout: float = 30.0) -> None:
        """SIGUSR1 the mount, then poll until ``check()`` holds (the sync and the attr cache passed)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)
        if check is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the change did not show up after a SIGUSR1 sync")
            time.sleep(0.1)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if os.path.ismount(self.mnt):
            result = fusermount_u(self.mnt)
            if result.returncode != 0:
                fusermount_u(self.mnt, lazy=True)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()     # our own child, by pid
            proc.wait(timeout=10)
            if os.path.ismount(self.mnt):
                fusermount_u(self.mnt, lazy=True)
            pytest.fail(f"mount process did not exit after unmount:\n{self.stderr()}")
        if proc.returncode != 0:
            pytest.fail(f"mount process exited with {proc.returncode}:\n{self.stderr()}")

    def check_log(self) -> None:
        problems = log_problems(self.log_file, self.expected)
        if problems:
            pytest.fail("mount log has unexpected errors:\n" + "\n---\n".join(problems[:5]))


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes: a misplaced chunk can never compare equal."""
    return random.Random(seed).randbytes(size)


def upload(client: Any, name: str, data: bytes, parent: str | None = None) -> dict[str, Any]:
    return client.upload_stream(io.BytesIO(data), name, parent=parent)
