"""fstab and systemd: the mount.acdfuse helper called the way mount(8) calls it, a real
`mount -t fuse.acdfuse` through fuse3's stock mount.fuse, and the shipped Type=notify unit's command
telling a (fake) service manager READY=1 only once the drive is mounted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import fusermount_u, require_fuse

from acdfuse.cli import helper_argv

pytestmark = pytest.mark.mount

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = os.environ.copy()
    for var, name in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache-home"),
                      ("XDG_CONFIG_HOME", "config"), ("XDG_RUNTIME_DIR", "run")):
        env[var] = str(tmp_path / name)
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=120, check=False)


def status(env: dict[str, str], mnt: Path) -> dict[str, Any]:
    done = run(env, sys.executable, "-m", "acdfuse", "status", str(mnt), "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)[0])


def test_helper_argv() -> None:
    assert helper_argv(["acdfuse", "/m", "-o", "rw,_netdev,interval=60"]) == [
        "mount", "/m", "-o", "rw,_netdev,interval=60"]
    assert helper_argv(["/home/me/work", "/m", "-n", "-o", "ro"]) == [
        "mount", "/m", "-o", "config_dir=/home/me/work", "-o", "ro"]
    # mount(8) made `acdfuse` absolute because the cwd holds an `acdfuse` dir: still the default drive
    assert helper_argv(["/src/acdfuse", "/m"]) == ["mount", "/m"]
    assert helper_argv(["acdfuse", "/m", "-t", "fuse.acdfuse", "-o", "a", "-o", "b"]) == [
        "mount", "/m", "-o", "a", "-o", "b"]
    # a mistyped sub-command is not a mount helper call
    assert helper_argv(["moutn", "/m"]) is None
    assert helper_argv(["acdfuse"]) is None


def test_mount_helper_as_mount_8_calls_it(cdir: Path, env: dict[str, str], tmp_path: Path) -> None:
    require_fuse()
    mnt, cache = tmp_path / "drive", tmp_path / "cache"
    mnt.mkdir()
    done = run(env, str(BIN / "mount.acdfuse"), "acdfuse", str(mnt), "-o",
               f"rw,defaults,_netdev,noauto,interval=60,cache_dir={cache},config_dir={cdir}")
    try:
        assert done.returncode == 0, done.stderr
        assert os.path.ismount(mnt)
        opts = status(env, mnt)["options"]
        assert opts["interval"] == 60 and opts["cache_dir"] == str(cache)
        assert opts["config_dir"] == str(cdir) and opts["fuse_options"] == []
    finally:
        done = run(env, sys.executable, "-m", "acdfuse", "umount", str(mnt))
    assert done.returncode == 0, done.stderr
    assert not os.path.ismount(mnt)


def test_real_mount_t_fuse_acdfuse(cdir: Path, env: dict[str, str], tmp_path: Path) -> None:
    """`mount -t fuse.acdfuse` as root: mount(8) finds no mount.fuse.acdfuse and runs fuse3's
    mount.fuse, which runs `acdfuse SOURCE MNT -o OPTS` through /bin/sh, with PATH dropped by mount(8)
    (so sh's default path, /usr/local/bin first). In a private mount namespace, /usr/local/bin is a dir
    holding just our `acdfuse`; the mount, its status and its unmount all happen in there."""
    require_fuse()
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.fail("this test mounts with mount(8) as root in a private mount namespace (unshare)")
    mnt, cache, fake_bin = tmp_path / "drive", tmp_path / "cache", tmp_path / "bin"
    mnt.mkdir()
    fake_bin.mkdir()
    (fake_bin / "acdfuse").symlink_to(BIN / "acdfuse")
    script = f"""set -e
mount --bind {fake_bin} /usr/local/bin
mount -t fuse.acdfuse -o _netdev,interval=61,cache_dir={cache},config_dir={cdir} acdfuse {mnt}
findmnt -n -o FSTYPE {mnt}
acdfuse status {mnt} --json
acdfuse umount {mnt}
"""
    done = run(env, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    fstype, _, status_json = done.stdout.partition("\n")
    assert fstype.startswith("fuse")
    [status] = json.loads(status_json)
    assert status["options"]["interval"] == 61 and status["options"]["cache_dir"] == str(cache)
    # mount.fuse adds "dev,suid" for root: they reach libfuse as given
    assert set(status["options"]["fuse_options"]) <= {"dev", "suid"}
    assert not os.path.ismount(mnt)


def unit_exec_start() -> list[str]:
    unit = (ROOT / "contrib" / "systemd" / "acdfuse@.service").read_text()
    assert "\nType=notify\n" in unit
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    return line.removeprefix("ExecStart=").split()


def test_systemd_unit_notifies_ready_once_mounted(cdir: Path, env: dict[str, str], tmp_path: Path) -> None:
    require_fuse()
    mnt = tmp_path / "drive"
    mnt.mkdir()
    (tmp_path / "config" / "acdfuse").mkdir(parents=True)
    (tmp_path / "config" / "acdfuse" / "config.toml").write_text(
        f'config_dir = "{cdir}"\ncache_dir = "{tmp_path / "cache"}"\n')
    notify_path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(60)
    argv = [a.replace("%f", str(mnt)) for a in unit_exec_start()]
    proc = subprocess.Popen(argv, env={**env, "NOTIFY_SOCKET": str(notify_path)},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        message = listener.recv(4096).decode()
        # READY only once the mount is there
        assert os.path.ismount(mnt)
        fields = dict(line.split("=", 1) for line in message.splitlines())
        assert fields["READY"] == "1" and fields["MAINPID"] == str(proc.pid)
        assert fields["STATUS"] == f"mounted at {mnt}"
        # systemctl stop: SIGTERM, a clean unmount, exit 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not os.path.ismount(mnt)
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()     # our own child
            proc.wait(timeout=10)
        if os.path.ismount(mnt):
            fusermount_u(mnt, lazy=True)
