"""Running the mount in the background, waiting for it to answer, and unmounting it.

The background mode starts the same command with ``--foreground`` as a detached child (no fork of a
threaded process) and returns once the mount point answers a stat, or reports why the child died.
Each mount process leaves a pid file named after its mount point, so ``umount`` can wait for it to
finish its shutdown (and give up the bundled server, stopping it when it was the last user) before
returning, and can tell whether it was a mount of the bundled server.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from acdfuse.fs.embedded import pid_alive


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/acdfuse-{os.getuid()}"
    path = Path(base) / "acdfuse"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def pid_file(mountpoint: Path) -> Path:
    digest = hashlib.sha1(str(mountpoint.resolve()).encode()).hexdigest()[:16]
    return runtime_dir() / f"mount-{digest}.pid"


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


def is_mounted(mountpoint: Path) -> bool:
    """Whether the kernel lists mountpoint as a mount, even a dead FUSE mount that no longer answers
    (where os.path.ismount fails with ENOTCONN and says no)."""
    target = mount_target(mountpoint)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return os.path.ismount(mountpoint)
    return any(len(f := line.split()) > 4 and _unescape(f[4]) == target for line in lines)


def is_dead_mount(mountpoint: Path) -> bool:
    """A mount the kernel still lists whose FUSE process is gone: its root fails with ENOTCONN."""
    if not is_mounted(mountpoint):
        return False
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
    with open(stderr_path, "wb") as errf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            detail = _tail(stderr_path)
            return (code or 1), detail or f"the mount process exited with status {code}"
        if mount_answers(mountpoint):
            return 0, ""
        time.sleep(0.05)
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    return 1, f"the mount did not answer within {timeout:.0f}s; see {stderr_path}"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip()
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
