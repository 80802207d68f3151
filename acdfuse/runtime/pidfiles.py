"""Each mount's pid file and mount point lock in the run dir, and whether a process still lives.

Each mount process leaves a pid file named after its mount point, so ``umount`` can wait for it to
finish its shutdown (and give up the bundled server, stopping it when it was the last user) before
returning, and can tell whether it was a mount of the bundled server. It also holds a lock file named
after its mount point for its whole life (flock; the kernel drops it however the process ends): two
mounts started at once on one mount point cannot both mount there, and a mount listed by the kernel
whose lock is free has lost its process, which a stat cannot tell while the kernel's attribute cache
still answers for the dead mount.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from pathlib import Path

from acdfuse.common.locks import lock_held, take_lock

# how often wait_for_exit looks: a process that is not our child cannot be waited for by pid
_EXIT_POLL = 0.05


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); its /proc state says Z
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields and fields[0] == "Z":
            return False
    return True


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Whether the process ended within ``timeout`` seconds (polled: it is not our child)."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_EXIT_POLL)
    return True


class MountRecord:
    """The pid file and the lock file of the mount at one mount point, in the run dir."""

    def __init__(self, run_dir: Path, mountpoint: Path) -> None:
        self._run_dir = run_dir
        self.mountpoint = mountpoint
        # a file name, not a secret
        digest = hashlib.sha1(str(mountpoint.resolve()).encode(), usedforsecurity=False).hexdigest()[:16]
        self.pid_file = run_dir / f"mount-{digest}.pid"
        self.lock_file = run_dir / f"mount-{digest}.lock"
        # the mount's control socket (runtime/control.py): `acdfuse status` and `acdfuse sync`
        self.control_socket = run_dir / f"mount-{digest}.sock"

    @classmethod
    def all(cls, run_dir: Path) -> list[MountRecord]:
        """The mounts of this user that left a pid file in the run dir, by mount point."""
        records = []
        for pid_file in sorted(run_dir.glob("mount-*.pid")):
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                continue        # removed meanwhile: that mount ended
            if len(lines) > 1 and lines[1].strip():
                records.append(cls(run_dir, Path(lines[1].strip())))
        return sorted(records, key=lambda r: str(r.mountpoint))

    def _make_run_dir(self) -> None:
        self._run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Without XDG_RUNTIME_DIR the run dir lies under /tmp, where another user could have made it
        # (or its parent) first and so control our pid and lock files: refuse any dir not ours alone.
        for d in (self._run_dir, self._run_dir.parent):
            st = d.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise PermissionError(
                    f"the run dir {d} is not a directory that only this user may change "
                    f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); remove it or set "
                    f"XDG_RUNTIME_DIR")

    def lock(self) -> int:
        """Hold the mount point's lock for this process's life (returns its fd); BlockingIOError when
        another acdfuse process holds it (mounted there, or mounting there right now)."""
        self._make_run_dir()
        return take_lock(self.lock_file)

    def in_use(self) -> bool:
        """Whether a live acdfuse process holds the mount point's lock."""
        return lock_held(self.lock_file)

    def write_pid(self, embedded: bool = False, cache_dir: Path | None = None) -> None:
        """pid, mount point, (for `umount`'s report) whether the mount uses the bundled server, and
        (for `umount` to wait for its uploads) its cache dir."""
        self._make_run_dir()
        kind = "embedded" if embedded else "account"
        cache = "" if cache_dir is None else str(cache_dir.resolve())
        self.pid_file.write_text(f"{os.getpid()}\n{self.mountpoint.resolve()}\n{kind}\n{cache}\n")

    def read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def uses_bundled_server(self) -> bool:
        """Whether the mount said it uses the bundled server (its pid file's third line)."""
        try:
            lines = self.pid_file.read_text().splitlines()
        except OSError:
            return False
        return len(lines) > 2 and lines[2].strip() == "embedded"

    def cache_dir(self) -> Path | None:
        """The cache dir the mount said it uses (its pid file's fourth line), if it said one."""
        try:
            lines = self.pid_file.read_text().splitlines()
        except OSError:
            return None
        return Path(lines[3].strip()) if len(lines) > 3 and lines[3].strip() else None

    def forget(self) -> None:
        """Remove the pid file of a mount found dead (its process cannot remove it any more)."""
        pid = self.read_pid()
        if pid is not None and not pid_alive(pid):
            with contextlib.suppress(OSError):
                self.pid_file.unlink()

    def remove(self) -> None:
        """Remove our own pid file (another process's is left alone)."""
        if self.read_pid() == os.getpid():
            with contextlib.suppress(OSError):
                self.pid_file.unlink()
