"""The mount's own security (issue 12, "Client"): private by default, ``--allow-other`` with the kernel
checking modes, and no secret in the mount's log or stderr even with ``--debug``.

"Another user" is a child process that drops to uid/gid 65534 (nobody) and works on the mount's root
through a descriptor the owner opened (the path to the mount point runs through pytest's 0700
folders). The tests run as root, and root owns the mount, so the other user must be another uid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from mount_helpers import Mount

NOBODY = 65534

# run by the other user: try each operation, print one line of JSON with the errno of each (0: it worked)
_PROBE = r"""
import json, os, sys
fd = int(sys.argv[1])       # the mount's root, opened by the owner: the test's folders are 0700
os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = 0
    except OSError as exc:
        out[name] = exc.errno
def read(name):
    f = os.open(name, os.O_RDONLY, dir_fd=fd)
    try:
        os.read(f, 100)
    finally:
        os.close(f)
attempt("stat", lambda: os.stat(fd))
attempt("list", lambda: os.listdir(fd))
attempt("read_public", lambda: read("public.txt"))
attempt("read_private", lambda: read("private.txt"))
attempt("create", lambda: os.close(os.open("by-nobody.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)))
print(json.dumps(out))
"""


def _as_nobody(mnt: Path) -> dict[str, int]:
    fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(fd)], capture_output=True, text=True,
                              timeout=120, check=False, pass_fds=(fd,))
    finally:
        os.close(fd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _mount_options(mnt: Path) -> set[str]:
    """The mount's options as /proc/self/mountinfo shows them (per-mount and per-superblock)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mnt):
            sep = fields.index("-")
            return set(fields[5].split(",")) | set(fields[sep + 3].split(","))
    raise AssertionError(f"{mnt} is not in the mount table")


def _files(mnt: Path) -> None:
    (mnt / "public.txt").write_bytes(b"for everyone")
    (mnt / "private.txt").write_bytes(b"for the owner")
    os.chmod(mnt / "public.txt", 0o644)
    os.chmod(mnt / "private.txt", 0o600)


def test_the_mount_is_private_by_default(mount: Mount) -> None:
    mount.start()
    _files(mount.mnt)
    options = _mount_options(mount.mnt)
    assert "allow_other" not in options and "default_permissions" not in options, options
    seen = _as_nobody(mount.mnt)
    # FUSE refuses every user but the mount's owner before the file system is asked
    assert seen["stat"] == 13 and seen["list"] == 13 and seen["read_public"] == 13, seen
    assert seen["create"] == 13, seen


def test_allow_other_lets_the_kernel_check_the_modes(mount: Mount) -> None:
    mount.start("--allow-other")
    _files(mount.mnt)
    options = _mount_options(mount.mnt)
    assert {"allow_other", "default_permissions"} <= options, options
    seen = _as_nobody(mount.mnt)
    assert seen["stat"] == 0 and seen["list"] == 0 and seen["read_public"] == 0, seen
    assert seen["read_private"] == 13, seen          # 0600, owned by root: EACCES
    assert seen["create"] == 13, seen                # the root folder is 0755, owned by root
    assert not (mount.mnt / "by-nobody.txt").exists()


def _secrets(cdir: Path) -> list[str]:
    """Every token and client secret of the client config, as the mount could have logged them."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, str) and any(w in key.lower() for w in ("token", "secret")):
                    found.append(item)
                walk(item)

    for path in cdir.iterdir():
        try:
            walk(json.loads(path.read_text()))
        except (ValueError, UnicodeDecodeError, IsADirectoryError):
            continue
    return [s for s in found if len(s) >= 8]


def test_no_secret_in_the_mount_log_with_debug(mount: Mount, cdir: Path) -> None:
    secrets = _secrets(cdir)
    assert secrets, "the test's client config holds no token: nothing would be checked"
    mount.start("--debug")
    # operations that authenticate: list, write (upload), read back after a sync, and a refresh of the
    # access token (the server accepts the refresh token whenever it is sent)
    (mount.mnt / "a.txt").write_bytes(b"x" * 1000)
    fd = os.open(mount.mnt / "a.txt", os.O_RDONLY)
    try:
        os.fsync(fd)        # waits for the upload
    finally:
        os.close(fd)
    os.listdir(mount.mnt)
    mount.sync()
    mount.stop()
    log = mount.log_file.read_text(errors="replace") + mount.stderr()
    assert "DEBUG" in log, "the mount logged nothing at DEBUG: --debug was not in effect"
    leaked = [s[:6] + "..." for s in secrets if s in log]
    assert not leaked, f"secrets in the mount's log or stderr: {leaked}"
