"""Running the mount in the background, waiting for it to answer, the kernel's mount table, unmounting.

The background mode starts the same command with ``--foreground`` as a detached child (no fork of a
threaded process) and returns once the mount point answers a stat, or reports why the child died.
The pid and lock files that tell a live mount from a dead one are in pidfiles.py.

While it waits, the parent can follow the child's first sync through a pipe: the child writes one
decimal node count per line and closes its end when the sync is over (cli_mount's ``ProgressPipe``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from acdfuse.runtime.pidfiles import MountRecord, pid_alive

FSTYPE = "fuse.acdfuse"   # what /proc/self/mountinfo lists for our mounts (subtype acdfuse)


def _unescape(field: str) -> str:
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo octal
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_target(mountpoint: Path) -> str:
    """The absolute path the kernel lists for mountpoint, without touching mountpoint itself.

    A dead FUSE mount answers every stat of its root with ENOTCONN, so only the parent is resolved.
    """
    path = Path(os.path.abspath(mountpoint))
    with contextlib.suppress(OSError):
        path = path.parent.resolve() / path.name
    return str(path)


def mount_fstype(mountpoint: Path) -> str | None:
    """The file system type the kernel lists for the topmost mount at mountpoint, or None if none is
    listed (a dead FUSE mount is still listed: os.path.ismount fails on it with ENOTCONN)."""
    target = mount_target(mountpoint)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return "unknown" if os.path.ismount(mountpoint) else None
    fstype = None
    for line in lines:
        # "<id> <parent> <dev> <root> <mount point> <options> [optional fields...] - <fstype> ..."
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if len(fields) > 4 and _unescape(fields[4]) == target:
            fstype = tail.split()[0] if sep and tail.split() else "unknown"  # the last one is on top
    return fstype


def is_mounted(mountpoint: Path) -> bool:
    """Whether the kernel lists mountpoint as a mount, even a dead FUSE mount that no longer answers."""
    return mount_fstype(mountpoint) is not None


def is_dead_mount(record: MountRecord) -> bool:
    """A mount the kernel still lists whose FUSE process is gone.

    An acdfuse mount is dead at once when its pid file (in this runtime dir) names a process that is
    gone and nobody holds its mount point lock (see pidfiles.py). Without such a pid file
    the lock proves nothing (a mount started with another XDG_RUNTIME_DIR keeps its lock elsewhere),
    so then, as for any other mount, only a root that fails with ENOTCONN says it is dead. Asked with
    statfs: the kernel may answer a stat from its attribute cache for as long as the mount's timeout
    (an hour), dead process or not, but it always sends a statfs to the FUSE process.
    """
    mountpoint = record.mountpoint
    fstype = mount_fstype(mountpoint)
    if fstype is None:
        return False
    if fstype == FSTYPE:
        pid = record.read_pid()
        if pid is not None and not pid_alive(pid) and not record.in_use():
            return True
    try:
        os.statvfs(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def mount_answers(mountpoint: Path) -> bool:
    """A live FUSE mount: the kernel says it is a mount point and its FUSE process answers a statfs
    (a stat may come from the kernel's attribute cache, see is_dead_mount)."""
    try:
        if not os.path.ismount(mountpoint):
            return False
        os.statvfs(mountpoint)
    except OSError:
        return False
    return True


class ProgressReader:
    """The parent's end of a progress pipe: ``poll`` waits up to a timeout for lines and hands the last
    count to ``on_count``; it reports False once the child closed its end (or died)."""

    def __init__(self, fd: int, on_count: Callable[[int], None]) -> None:
        self.fd: int | None = fd
        self._on_count = on_count
        self._partial = b""

    def poll(self, timeout: float) -> bool:
        if self.fd is None:
            return False
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        data = os.read(self.fd, 4096)
        if not data:
            self.close()
            return False
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        counts = [line for line in lines if line.strip().isdigit()]
        if counts:
            self._on_count(int(counts[-1]))
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def spawn_and_wait(argv: list[str], record: MountRecord, stderr_path: Path,
                   timeout: float, *, detail_lines: int = 15,
                   progress: tuple[int, ProgressReader] | None = None) -> tuple[int, str]:
    """Start argv detached and wait until its mount point answers; returns (status, message for the user:
    the last ``detail_lines`` lines of what the child printed when it failed).

    ``progress``: (the write end, passed to the child and closed here; the reader of the read end).
    """
    stderr_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # appended to: a refused mount must not wipe the log of the mount that runs on this cache dir;
    # what this child says starts at ``start``
    with open(stderr_path, "ab") as errf:
        start = errf.tell()
        # argv is this interpreter and our own flags, never a shell string
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # noqa: S603
                                stderr=errf, start_new_session=True,
                                pass_fds=() if progress is None else (progress[0],))
    reader = None
    if progress is not None:
        os.close(progress[0])          # the child's now: its close is our end of file
        reader = progress[1]
    try:
        return _wait_for_mount(proc, record, stderr_path, start, timeout=timeout,
                               detail_lines=detail_lines, reader=reader)
    finally:
        if reader is not None:
            reader.close()


def _wait_for_mount(proc: subprocess.Popen[bytes], record: MountRecord, stderr_path: Path, start: int, *,
                    timeout: float, detail_lines: int,
                    reader: ProgressReader | None) -> tuple[int, str]:
    mountpoint = record.mountpoint
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            detail = _tail(stderr_path, start, detail_lines)
            return (code or 1), detail or f"the mount process exited with status {code}"
        # our child's mount, not one another process made there meanwhile (its pid file names it)
        if mount_answers(mountpoint) and record.read_pid() == proc.pid:
            return 0, ""
        # the child is another process: nothing to wait on but its progress pipe, or time
        if reader is None or not reader.poll(0.05):
            reader = None
            time.sleep(0.05)
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    return 1, f"the mount did not answer within {timeout:.0f}s; see {stderr_path}"


def _tail(path: Path, start: int = 0, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            text = f.read().decode(errors="replace").strip()
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def unmount(mountpoint: Path, lazy: bool = False) -> tuple[bool, str]:
    """Unmount with fusermount -u (fusermount3, then umount as fallbacks); returns (ok, error text).

    ``lazy`` adds a last try with ``-z``: a dead mount some process still has open (a shell sitting in
    it) is detached now and goes away when the last user leaves.
    """
    errors = []
    target = mount_target(mountpoint)
    flags = [["-u"], ["-u", "-z"]] if lazy else [["-u"]]
    for flag in flags:
        for tool in ("fusermount", "fusermount3"):
            exe = shutil.which(tool)
            if exe is None:
                continue
            proc = subprocess.run([exe, *flag, target],  # noqa: S603 (a full path from which(); no shell)
                                  capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                return True, ""
            errors.append(proc.stderr.strip() or f"{tool} exited with {proc.returncode}")
    umount = shutil.which("umount")
    if os.geteuid() == 0 and umount:
        proc = subprocess.run([umount, target],  # noqa: S603 (a full path from which(); no shell)
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return True, ""
        errors.append(proc.stderr.strip())
    return False, "; ".join(e for e in errors if e) or "no fusermount found"
