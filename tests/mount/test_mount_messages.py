"""Every error a user can meet with `acdfuse mount` is one line on stderr that names the way out, with
no traceback unless --debug (issue 11, "Messages and docs"): a missing libfuse, a mount point in use or
not empty, an unreachable server, refused credentials, a full disk, a wrong option; and the one-line
net under an unexpected error. Each runs the real command line as a subprocess against the test server.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import fusermount_u, require_fuse

from acdfuse.server import DriveServer

pytestmark = pytest.mark.mount


def acdfuse(tmp_path: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "xcache"),
                     ("XDG_CONFIG_HOME", "config"), ("XDG_RUNTIME_DIR", "run")):
        (tmp_path / sub).mkdir(mode=0o700, exist_ok=True)
        env[var] = str(tmp_path / sub)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "acdfuse", *args], env=env, capture_output=True,
                          text=True, timeout=180, check=False)


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    if os.path.ismount(path):
        acdfuse(tmp_path, "umount", str(path))
    if os.path.ismount(path):
        fusermount_u(path, lazy=True)


def mount_args(mnt: Path, cdir: Path, cache: Path, *extra: str) -> list[str]:
    return ["mount", str(mnt), "--config-dir", str(cdir), "--cache-dir", str(cache), "--timeout", "5", *extra]


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The only line on stderr (and the command failed, with no traceback)."""
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr[:-1]


def test_missing_libfuse_names_the_package(tmp_path: Path, cdir: Path, mnt: Path) -> None:
    missing = tmp_path / "nowhere" / "libfuse3.so.3"
    proc = acdfuse(tmp_path, *mount_args(mnt, cdir, tmp_path / "c"), FUSE_LIBRARY_PATH=str(missing))
    assert one_line(proc) == (
        f"acdfuse mount: cannot mount {mnt}: libfuse cannot be loaded ({missing}: cannot open shared object "
        f"file: No such file or directory); FUSE_LIBRARY_PATH={missing} names no loadable library; unset "
        f"it, or install it with `sudo apt-get install fuse3`")
    assert not os.path.ismount(mnt)


def test_debug_adds_the_traceback_before_the_same_line(tmp_path: Path, cdir: Path, mnt: Path) -> None:
    missing = tmp_path / "nowhere" / "libfuse3.so.3"
    quiet = acdfuse(tmp_path, *mount_args(mnt, cdir, tmp_path / "c"), FUSE_LIBRARY_PATH=str(missing))
    loud = acdfuse(tmp_path, *mount_args(mnt, cdir, tmp_path / "c", "--debug"),
                   FUSE_LIBRARY_PATH=str(missing))
    assert loud.returncode == 1
    lines = loud.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "LibfuseMissing" in loud.stderr and "OSError" in loud.stderr
    assert lines[-1] == one_line(quiet)


def test_a_mount_point_in_use(tmp_path: Path, cdir: Path, mnt: Path) -> None:
    require_fuse()
    up = acdfuse(tmp_path, *mount_args(mnt, cdir, tmp_path / "c"))
    assert up.returncode == 0, up.stderr
    again = acdfuse(tmp_path, *mount_args(mnt, cdir, tmp_path / "c2"))
    assert one_line(again) == f"acdfuse mount: {mnt} is already a mount point (`acdfuse umount {mnt}` first)"
    down = acdfuse(tmp_path, "umount", str(mnt))
    assert down.returncode == 0, down.stderr


def test_a_mount_point_with_files_is_refused_unless_nonempty(tmp_path: Path, cdir: Path, mnt: Path,
                                                             client: Any) -> None:
    require_fuse()
    client.upload_stream(io.BytesIO(b"on the drive\n"), "remote.txt")
    (mnt / "local.txt").write_text("hidden while mounted\n")
    refused = acdfuse(tmp_path, *mount_args(mnt, cdir, tmp_path / "c"))
    assert one_line(refused) == (
        f"acdfuse mount: {mnt} is not empty; its files would be hidden while the drive is mounted there: "
        f"choose an empty folder, or add -o nonempty to mount over it anyway")
    assert not os.path.ismount(mnt)

    up = acdfuse(tmp_path, *mount_args(mnt, cdir, tmp_path / "c", "-o", "nonempty"))
    assert up.returncode == 0, up.stderr
    try:
        assert sorted(os.listdir(mnt)) == ["remote.txt"]
    finally:
        down = acdfuse(tmp_path, "umount", str(mnt))
    assert down.returncode == 0, down.stderr
    assert (mnt / "local.txt").read_text() == "hidden while mounted\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server(tmp_path: Path, cdir: Path, mnt: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(cdir, moved)
    endpoints = json.loads((moved / "endpoint_data").read_text())
    port = _free_port()          # nothing listens there
    for key in ("metadataUrl", "contentUrl"):
        endpoints[key] = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", endpoints[key])
    (moved / "endpoint_data").write_text(json.dumps(endpoints))
    proc = acdfuse(tmp_path, *mount_args(mnt, moved, tmp_path / "c"))
    assert one_line(proc) == (
        f"acdfuse mount: cannot mount {mnt}: the server at http://127.0.0.1:{port} does not answer "
        f"(Connection refused) and the local mirror is empty, so there is nothing to serve offline: start "
        f"the server (or correct its address in {moved / 'endpoint_data'}) and mount again")


@pytest.mark.parametrize("how", ["revoked", "expired"])
def test_revoked_or_expired_credentials(tmp_path: Path, drive_server: DriveServer, mnt: Path,
                                        how: str) -> None:
    cdir = tmp_path / "cdir"
    drive_server.write_credentials(cdir)
    if how == "revoked":
        assert drive_server.revoke_tokens() >= 2          # the access and the refresh token
    else:
        # both tokens run out, as a refresh token does after its lifetime (ten years on this server)
        with drive_server.db.write() as c:
            c.execute("UPDATE tokens SET expires = 1")
    proc = acdfuse(tmp_path, *mount_args(mnt, cdir, tmp_path / "c"))
    line = one_line(proc)
    base = drive_server.base_url
    assert re.fullmatch(
        re.escape(f"acdfuse mount: cannot mount {mnt}: the server refused the credentials in {cdir} (")
        + r"refresh token: .*\[HTTP 400, request [0-9a-f-]+\]"
        + re.escape(f"); sign in again with `acdfuse init --server {base} --config-dir {cdir}`, or get "
                    f"new ones with `acdfuse serve --credentials-out {cdir}` where the server runs"),
        line), line


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs on a temp dir, unmounted afterwards."""
    path = tmp_path / "small"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk(tmp_path: Path, cdir: Path, mnt: Path, small_disk: Path) -> None:
    with open(small_disk / "filler", "wb") as f, pytest.raises(OSError, match="No space left"):
        f.write(b"\0" * (2 << 20))
    cache = small_disk / "cache"
    proc = acdfuse(tmp_path, *mount_args(mnt, cdir, cache))
    assert one_line(proc) == (
        f"acdfuse mount: cannot mount {mnt}: the disk of the cache dir {cache} is full (0 KiB free): free "
        f"some space there, or give the mount another --cache-dir")
    assert not os.path.ismount(mnt)


def test_wrong_options_name_what_is_wrong(tmp_path: Path, mnt: Path) -> None:
    assert one_line(acdfuse(tmp_path, "mount", str(mnt), "--intervall", "5")) == (
        "acdfuse mount: unrecognized arguments: --intervall 5 (`acdfuse mount --help` lists the options)")
    assert one_line(acdfuse(tmp_path, "mount", str(mnt), "--interval", "soon")) == (
        "acdfuse mount: argument --interval: not a number: 'soon' (`acdfuse mount --help` lists the options)")
    assert one_line(acdfuse(tmp_path, "mount", str(mnt), "-o", "cache_size=lots")) == (
        "acdfuse mount: -o cache_size=lots: not a size: 'lots' (try 512M, 4G)")
    config = tmp_path / "config" / "acdfuse" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("interval = 30\n\nstreams = 0\n")
    assert one_line(acdfuse(tmp_path, "mount", str(mnt))) == (
        f"acdfuse mount: {config}, line 3: streams: must be at least 1: 0")
    assert one_line(acdfuse(tmp_path, "frobnicate")) == (
        "acdfuse: argument COMMAND: invalid choice: 'frobnicate' (choose from 'serve', 'mount', 'umount', "
        "'status', 'sync', 'cache', 'init') (`acdfuse --help` lists the options)")
    assert one_line(acdfuse(tmp_path, "serve", "account", "add")) == (
        "acdfuse serve account add: the following arguments are required: NAME "
        "(`acdfuse serve account add --help` lists the options)")


def test_an_unexpected_error_is_one_line_unless_debug(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The net under a bug of ours: no command should ever get there, so a stand-in command raises."""
    from acdfuse import cli, cli_control  # noqa: PLC0415

    def broken(args: Any, xdg: Any) -> int:
        raise KeyError("state")

    monkeypatch.setattr(cli_control, "run_status", broken)
    assert cli.main(["status"]) == 1
    assert capsys.readouterr().err == (
        "acdfuse status: unexpected error: KeyError: 'state' (run it again with --debug for the "
        "traceback; please report it)\n")
    assert cli.main(["--debug", "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n") and "in broken" in err
    assert err.endswith("acdfuse status: unexpected error: KeyError: 'state' (the traceback is above; "
                        "please report it)\n")


def test_an_option_libfuse_does_not_know(tmp_path: Path, cdir: Path, mnt: Path) -> None:
    require_fuse()
    proc = acdfuse(tmp_path, *mount_args(mnt, cdir, tmp_path / "c", "-o", "frobnicate=3"))
    assert one_line(proc) == (
        f"acdfuse mount: cannot mount {mnt}: -o frobnicate=3 is an option of neither acdfuse nor libfuse "
        f"(`acdfuse mount --help` lists acdfuse's, `man mount.fuse3` libfuse's)")
    proc = acdfuse(tmp_path, *mount_args(mnt, cdir, tmp_path / "c", "-o", "max_read=lots"))
    assert one_line(proc) == (
        f"acdfuse mount: cannot mount {mnt}: libfuse refused the mount: invalid parameter in option "
        f"`max_read=lots'")
    assert not os.path.ismount(mnt)


def test_other_commands_say_what_is_wrong_in_one_line(tmp_path: Path, cdir: Path) -> None:
    deep = tmp_path / "no" / "such" / "mnt"
    assert one_line(acdfuse(tmp_path, "mount", str(deep), "--config-dir", str(cdir))) == (
        f"acdfuse mount: {deep} does not exist, nor does its parent folder: create them first "
        f"(`mkdir -p {deep}`)")
    assert one_line(acdfuse(tmp_path, "status", str(tmp_path))) == (
        f"acdfuse status: {tmp_path} is not mounted by acdfuse")
    port = _free_port()
    assert one_line(acdfuse(tmp_path, "init", "--server", f"http://127.0.0.1:{port}", "--account", "a",
                            "--password-file", "/dev/null")) == (
        f"acdfuse init: cannot reach 127.0.0.1:{port}: Connection refused: is the server running, and is "
        f"that its address?")
    assert one_line(acdfuse(tmp_path, "serve", "--port", "99999")) == (
        "acdfuse serve: argument --port: not a port number (0 to 65535): 99999 (`acdfuse serve --help` "
        "lists the options)")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert one_line(acdfuse(tmp_path, "serve", "--data", str(not_a_dir / "data"), "--port", "0")) == (
        f"acdfuse serve: cannot use the data dir {not_a_dir / 'data'}: Not a directory: {not_a_dir / 'data'}")


def test_ctrl_c_while_waiting_leaves_the_mount_going_in_the_background(
        tmp_path: Path, cdir: Path, mnt: Path, drive_server: DriveServer) -> None:
    require_fuse()
    drive_server.faults.configure(latency_ms=2000)     # the first sync takes a while: time to interrupt
    cache = tmp_path / "c"
    env = dict(os.environ)
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "xcache"),
                     ("XDG_CONFIG_HOME", "config"), ("XDG_RUNTIME_DIR", "run")):
        (tmp_path / sub).mkdir(mode=0o700, exist_ok=True)
        env[var] = str(tmp_path / sub)
    proc = subprocess.Popen([sys.executable, "-m", "acdfuse", *mount_args(mnt, cdir, cache)], env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (cache / "nodes.db").exists():     # the mount process has begun its first sync
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == (f"acdfuse mount: interrupted; the mount of {mnt} goes on in the background (`acdfuse "
                   f"status` shows it, `acdfuse umount {mnt}` stops it)\n")
    drive_server.faults.configure(latency_ms=0)
    deadline = time.monotonic() + 60
    while not os.path.ismount(mnt):
        assert time.monotonic() < deadline, "the mount did not go on"
        time.sleep(0.1)
    down = acdfuse(tmp_path, "umount", str(mnt))
    assert down.returncode == 0, down.stderr
