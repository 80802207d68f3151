"""Running the mount in the background, waiting for it to answer, and unmounting it.

The background mode starts the same command with ``--foreground`` as a detached child (no fork of a
threaded process) and returns once the mount point answers a stat, or reports why the child died.
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
import errno
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from acdfuse.runtime.embedded import pid_alive


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/acdfuse-{os.getuid()}"
    path = Path(base) / "acdfuse"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


FSTYPE = "fuse.acdfuse"   # what /proc/self/mountinfo lists for our mounts (subtype acdfuse)


def _digest(mountpoint: Path) -> str:
    return hashlib.sha1(str(mountpoint.resolve()).encode()).hexdigest()[:16]


def pid_file(mountpoint: Path) -> Path:
    return runtime_dir() / f"mount-{_digest(mountpoint)}.pid"


def take_lock(path: Path) -> int:
    """An exclusive flock on ``path`` (created 0600), held until its fd is closed or this process
    ends however it ends; BlockingIOError at once when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_held(path: Path) -> bool:
    """Whether another process holds the flock on ``path`` (a probe: taken and let go at once; a
    missing file is nobody's lock and is not created)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _mountpoint_lock(mountpoint: Path) -> Path:
    return runtime_dir() / f"mount-{_digest(mountpoint)}.lock"


def lock_mountpoint(mountpoint: Path) -> int:
    """Hold the mount point's lock for this process's life (returns its fd); BlockingIOError when another
    acdfuse process holds it (mounted there, or mounting there right now)."""
    return take_lock(_mountpoint_lock(mountpoint))


def mountpoint_in_use(mountpoint: Path) -> bool:
    """Whether a live acdfuse process holds the mount point's lock."""
    return lock_held(_mountpoint_lock(mountpoint))


def write_pid_file(mountpoint: Path, embedded: bool = False) -> Path:
    """pid, mount point and (for `umount`'s report) whether the mount uses the bundled server."""
    path = pid_file(mountpoint)
    kind = "embedded" if embedded else "account"
    path.write_text(f"{os.getpid()}\n{mountpoint.resolve()}\n{kind}\n")
    return path


def read_pid_file(mountpoint: Path) -> int | None:
    try:
        return int(pid_file(mountpoint).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pid_file_embedded(mountpoint: Path) -> bool:
    """Whether the mount at mountpoint said it uses the bundled server (its pid file's third line)."""
    try:
        lines = pid_file(mountpoint).read_text().splitlines()
    except OSError:
        return False
    return len(lines) > 2 and lines[2].strip() == "embedded"


def forget_pid_file(mountpoint: Path) -> None:
    """Remove the pid file of a mount found dead (its process cannot remove it any more)."""
    pid = read_pid_file(mountpoint)
    if pid is not None and not pid_alive(pid):
        with contextlib.suppress(OSError):
            pid_file(mountpoint).unlink()


def remove_pid_file(mountpoint: Path) -> None:
    path = pid_file(mountpoint)
    with contextlib.suppress(OSError, ValueError, IndexError):
        if int(path.read_text().split()[0]) == os.getpid():
            path.unlink()


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


def is_dead_mount(mountpoint: Path) -> bool:
    """A mount the kernel still lists whose FUSE process is gone.

    An acdfuse mount is dead at once when its pid file (in this runtime dir) names a process that is
    gone and nobody holds its mount point lock (see the module docstring). Without such a pid file
    the lock proves nothing (a mount started with another XDG_RUNTIME_DIR keeps its lock elsewhere),
    so then, as for any other mount, only a root that fails with ENOTCONN says it is dead.
    """
    fstype = mount_fstype(mountpoint)
    if fstype is None:
        return False
    if fstype == FSTYPE:
        pid = read_pid_file(mountpoint)
        if pid is not None and not pid_alive(pid) and not mountpoint_in_use(mountpoint):
            return True
    try:
        os.stat(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def mount_answers(mountpoint: Path) -> bool:
    """A live FUSE mount: the kernel says it is a mount point and its root answers a stat."""
    try:
        if not os.path.ismount(mountpoint):
            return False
        os.stat(mountpoint)
    except OSError:
        return False
    return True


def spawn_and_wait(argv: list[str], mountpoint: Path, stderr_path: Path, timeout: float) -> tuple[int, str]:
    """Start argv detached and wait until mountpoint answers; returns (status, message for the user)."""
    stderr_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # appended to: a refused mount must not wipe the log of the mount that runs on this cache dir;
    # what this child says starts at ``start``
    with open(stderr_path, "ab") as errf:
        start = errf.tell()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            detail = _tail(stderr_path, start)
            return (code or 1), detail or f"the mount process exited with status {code}"
        # our child's mount, not one another process made there meanwhile (its pid file names it)
        if mount_answers(mountpoint) and read_pid_file(mountpoint) == proc.pid:
            return 0, ""
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
            proc = subprocess.run([exe, *flag, target], capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                return True, ""
            errors.append(proc.stderr.strip() or f"{tool} exited with {proc.returncode}")
    if os.geteuid() == 0 and shutil.which("umount"):
        proc = subprocess.run(["umount", target], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return True, ""
        errors.append(proc.stderr.strip())
    return False, "; ".join(e for e in errors if e) or "no fusermount found"


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
