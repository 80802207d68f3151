"""The embedded default: `acdfuse mount MNT` with no account starts the bundled server, mounts it in the
background, `acdfuse umount MNT` stops both, and the next mount finds the same data. Several mounts share
one server: it runs while any of them (a killed one not counted) uses it, and the last one stops it."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
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
from mount_helpers import fusermount_u, log_problems, require_fuse

from acdfuse.api.client import ACDClient
from acdfuse.runtime.daemon import is_mounted

pytestmark = pytest.mark.mount

# what `acdfuse umount` says about the bundled server
LEFT_RUNNING = "acdfuse: left the local drive's server running"
STOPPED = "acdfuse: stopped the local drive's server (no other mount uses it)"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@pytest.fixture
def xdg(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    for var, sub in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache"),
                     ("XDG_CONFIG_HOME", "config"), ("XDG_RUNTIME_DIR", "run")):
        (tmp_path / sub).mkdir(mode=0o700)
        env[var] = str(tmp_path / sub)
    yield env
    # whatever a failed test left behind: our mounts, our servers (pids from our own state file, or
    # `acdfuse serve` processes on this test's own data dir, which only our mounts started)
    for name in ("mnt", "mnt2"):
        if is_mounted(tmp_path / name):
            fusermount_u(tmp_path / name, lazy=True)
    data_root = tmp_path / "data" / "acdfuse"
    pids = set(serve_pids(data_root))
    with contextlib.suppress(OSError, ValueError, KeyError):
        pids.add(int(json.loads((data_root / "server.json").read_text())["pid"]))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def serve_pids(data_root: Path) -> list[int]:
    """Live ``acdfuse serve`` processes on the bundled drive's data dir under data_root."""
    drive = str(data_root / "drive").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmdline and drive in cmdline and alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


def acdfuse(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "acdfuse", *args], env=env, capture_output=True,
                          text=True, timeout=180, check=False)


def wait_until(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_embedded_mount_umount_cycle(tmp_path: Path, xdg: dict[str, str], expect_errors: list[str]) -> None:
    require_fuse()
    mnt = tmp_path / "mnt"           # not there yet: the README's first command makes it
    data_root = tmp_path / "data" / "acdfuse"

    first = acdfuse(xdg, "mount", str(mnt))
    assert first.returncode == 0, first.stderr
    assert "local drive" in first.stdout and str(mnt) in first.stdout
    assert len(first.stdout.strip().splitlines()) == 1       # one short message
    assert str(data_root / "credentials") in first.stdout     # where a client config for it lives
    assert os.path.ismount(mnt)
    assert os.listdir(mnt) == []
    state = json.loads((data_root / "server.json").read_text())
    server_pid = state["pid"]
    assert alive(server_pid)
    assert (data_root / "drive").is_dir()

    # someone else writes to the drive; the mount sees it after a sync
    copied = tmp_path / "copied-config"      # a client config taken from this first mount
    shutil.copytree(data_root / "credentials", copied)
    client = ACDClient(str(data_root / "credentials"))
    client.upload_stream(io.BytesIO(b"persisted\n"), "hello.txt")
    mount_pid = int(next((tmp_path / "run" / "acdfuse").glob("mount-*.pid")).read_text().split()[0])
    os.kill(mount_pid, signal.SIGUSR1)
    wait_until(lambda: os.listdir(mnt) == ["hello.txt"], "the synced file")
    assert (mnt / "hello.txt").read_bytes() == b"persisted\n"

    down = acdfuse(xdg, "umount", str(mnt))
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == STOPPED
    assert not os.path.ismount(mnt)
    assert not alive(mount_pid)
    assert not alive(server_pid)
    assert not (data_root / "server.json").exists()

    # the next mount finds the same data (a new server process on the same data dir)
    second = acdfuse(xdg, "mount", str(mnt))
    assert second.returncode == 0, second.stderr
    try:
        assert os.listdir(mnt) == ["hello.txt"]
        assert (mnt / "hello.txt").read_bytes() == b"persisted\n"
        second_state = json.loads((data_root / "server.json").read_text())
        assert second_state["pid"] != server_pid
        # the same port as before (QA F10): a client config copied from credentials/ keeps working
        assert second_state["port"] == state["port"]
        assert ACDClient(str(copied)).get_root_id()
    finally:
        down = acdfuse(xdg, "umount", str(mnt))
    assert down.returncode == 0, down.stderr
    assert not os.path.ismount(mnt)

    log = tmp_path / "cache" / "acdfuse" / "embedded" / "acdfuse.log"
    assert log.exists()
    assert not log_problems(log, expect_errors)


def test_umount_of_something_not_mounted(tmp_path: Path, xdg: dict[str, str]) -> None:
    (tmp_path / "mnt").mkdir()
    result = acdfuse(xdg, "umount", str(tmp_path / "mnt"))
    assert result.returncode != 0
    assert "not mounted" in result.stderr


def test_background_mount_reports_failures(tmp_path: Path, xdg: dict[str, str]) -> None:
    missing = acdfuse(xdg, "mount", str(tmp_path / "no-parent" / "mnt"))
    assert missing.returncode != 0 and "does not exist, nor does its parent folder" in missing.stderr
    (tmp_path / "a-file").write_text("x")
    a_file = acdfuse(xdg, "mount", str(tmp_path / "a-file"))
    assert a_file.returncode != 0 and "not a directory" in a_file.stderr
    empty_cdir = tmp_path / "nocreds"
    empty_cdir.mkdir()
    (tmp_path / "mnt").mkdir()
    nocreds = acdfuse(xdg, "mount", str(tmp_path / "mnt"), "--config-dir", str(empty_cdir))
    assert nocreds.returncode != 0 and "credentials" in nocreds.stderr
    assert not os.path.ismount(tmp_path / "mnt")


def test_umount_cleans_up_after_a_killed_mount(mounts: Any, cdir: Path, tmp_path: Path) -> None:
    m = mounts(cdir).start()
    assert m.proc is not None
    m.proc.kill()                   # our own child: the kernel keeps a dead mount behind
    m.proc.wait(timeout=30)
    m.proc = None
    assert is_mounted(m.mnt)
    with pytest.raises(OSError):
        os.listdir(m.mnt)           # "Transport endpoint is not connected"
    down = acdfuse(dict(os.environ), "umount", str(m.mnt))
    assert down.returncode == 0, down.stderr
    assert not is_mounted(m.mnt)
    m.start()                       # and the mount point is usable again
    assert os.listdir(m.mnt) == []


def test_background_mount_of_an_account(tmp_path: Path, xdg: dict[str, str], cdir: Path,
                                        client: ACDClient) -> None:
    client.upload_stream(io.BytesIO(b"in the background\n"), "bg.txt")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    up = acdfuse(xdg, "mount", str(mnt), "--config-dir", str(cdir), "--cache-dir", str(tmp_path / "c"))
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout == ""              # quiet unless it is the embedded drive
        assert (mnt / "bg.txt").read_bytes() == b"in the background\n"   # answered when it returned
        again = acdfuse(xdg, "mount", str(mnt), "--config-dir", str(cdir))
        assert again.returncode != 0 and "already a mount point" in again.stderr
        pid = int(next((tmp_path / "run" / "acdfuse").glob("mount-*.pid")).read_text().split()[0])
    finally:
        down = acdfuse(xdg, "umount", str(mnt))
    assert down.returncode == 0, down.stderr
    assert not os.path.ismount(mnt)
    assert not alive(pid)
    assert not log_problems(tmp_path / "c" / "acdfuse.log", [])


def test_sigterm_unmounts_cleanly(mounts: Any, cdir: Path) -> None:
    m = mounts(cdir).start()
    assert m.proc is not None
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(timeout=30) == 0
    m.proc = None
    assert not os.path.ismount(m.mnt)
    assert "unmounted" in m.log_file.read_text()


def test_embedded_server_retries_when_its_port_is_taken(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from acdfuse.runtime import embedded  # noqa: PLC0415

    paths = embedded.EmbeddedPaths(tmp_path / "data")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = [busy]
        real = embedded.free_port
        monkeypatch.setattr(embedded, "free_port", lambda: ports.pop() if ports else real())
        state = embedded.start_server(paths)
    try:
        assert state.port != busy and not ports
        assert embedded.running_server(paths) == state
        assert ACDClient(str(paths.cdir)).get_root_id()
    finally:
        embedded.stop_server(paths, state)
    assert not alive(state.pid)
    assert embedded.read_state(paths) is None


def kill_mount_and_wait_dead(tmp_path: Path, mnt: Path) -> None:
    """kill -9 the mount process (started by this test's `acdfuse mount`), until its root fails."""
    mount_pid = int(next((tmp_path / "run" / "acdfuse").glob("mount-*.pid")).read_text().split()[0])
    os.kill(mount_pid, signal.SIGKILL)
    wait_until(lambda: not alive(mount_pid), "the killed mount process to go")

    def dead() -> bool:
        try:
            os.statvfs(mnt)     # a stat would be answered from the kernel's attribute cache
        except OSError as exc:
            return exc.errno == errno.ENOTCONN
        return False

    wait_until(dead, "the dead mount to answer ENOTCONN")


def test_killed_embedded_mount_is_cleaned_by_mount_and_umount(tmp_path: Path, xdg: dict[str, str],
                                                              expect_errors: list[str]) -> None:
    # QA F8: after kill -9 of the mount, `acdfuse umount`/`mount` crashed on ENOTCONN and the bundled
    # server was left running.
    require_fuse()
    mnt = tmp_path / "mnt"
    data_root = tmp_path / "data" / "acdfuse"
    first = acdfuse(xdg, "mount", str(mnt))
    assert first.returncode == 0, first.stderr
    server_pid = json.loads((data_root / "server.json").read_text())["pid"]
    kill_mount_and_wait_dead(tmp_path, mnt)

    # mount again on the dead mount: it is detached, the orphaned server taken over
    again = acdfuse(xdg, "mount", str(mnt))
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr and "dead mount" in again.stderr
    assert os.listdir(mnt) == []
    assert json.loads((data_root / "server.json").read_text())["pid"] == server_pid
    kill_mount_and_wait_dead(tmp_path, mnt)

    down = acdfuse(xdg, "umount", str(mnt))
    assert down.returncode == 0, down.stderr
    assert "Traceback" not in down.stderr
    assert not os.path.ismount(mnt)
    assert not is_mounted(mnt)
    wait_until(lambda: not alive(server_pid), "the orphaned server to stop")
    assert not (data_root / "server.json").exists()


# ----- one bundled server shared by several mounts -------------------------------------------------

def embedded_mount(mounts: Any, xdg: dict[str, str], name: str) -> Any:
    """A foreground mount of the bundled drive (no --config-dir) with its own cache dir."""
    return mounts(None, name, f"cache-{name}", env=xdg).start()


def server_state(tmp_path: Path) -> dict[str, int]:
    return json.loads((tmp_path / "data" / "acdfuse" / "server.json").read_text())


def live_user_files(tmp_path: Path) -> list[str]:
    from acdfuse.runtime import embedded  # noqa: PLC0415

    paths = embedded.EmbeddedPaths(tmp_path / "data" / "acdfuse")
    with embedded.control_lock(paths):
        return embedded.live_users(paths)


def test_umount_of_the_first_of_two_embedded_mounts_leaves_the_server_to_the_second(
        tmp_path: Path, xdg: dict[str, str], mounts: Any) -> None:
    data_root = tmp_path / "data" / "acdfuse"
    first = embedded_mount(mounts, xdg, "mnt")            # starts the server
    state = server_state(tmp_path)
    client = ACDClient(str(data_root / "credentials"))
    client.upload_stream(io.BytesIO(b"shared\n"), "shared.txt")
    second = embedded_mount(mounts, xdg, "mnt2")          # joins it
    assert server_state(tmp_path) == state
    assert serve_pids(data_root) == [state["pid"]]
    assert sorted(live_user_files(tmp_path)) == sorted([str(first.mnt), str(second.mnt)])

    down = acdfuse(xdg, "umount", str(first.mnt))
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == f"{LEFT_RUNNING} for 1 other mount ({second.mnt})"
    assert not is_mounted(first.mnt)
    assert alive(state["pid"]) and not port_closed(state["port"])
    # the second mount still reads (a file it never read: fetched from the server now) and lists
    assert (second.mnt / "shared.txt").read_bytes() == b"shared\n"
    client.upload_stream(io.BytesIO(b"after\n"), "after.txt")
    second.sync(check=lambda: sorted(os.listdir(second.mnt)) == ["after.txt", "shared.txt"])
    assert (second.mnt / "after.txt").read_bytes() == b"after\n"
    assert live_user_files(tmp_path) == [str(second.mnt)]

    # the last mount to go stops it
    down = acdfuse(xdg, "umount", str(second.mnt))
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == STOPPED
    assert not is_mounted(second.mnt)
    assert not alive(state["pid"])
    assert port_closed(state["port"])
    assert serve_pids(data_root) == []
    assert not (data_root / "server.json").exists()
    assert live_user_files(tmp_path) == []


def test_a_killed_embedded_mount_does_not_keep_the_server_alive(
        tmp_path: Path, xdg: dict[str, str], mounts: Any, expect_errors: list[str]) -> None:
    data_root = tmp_path / "data" / "acdfuse"
    first = embedded_mount(mounts, xdg, "mnt")
    state = server_state(tmp_path)
    second = embedded_mount(mounts, xdg, "mnt2")
    assert second.proc is not None
    second.proc.kill()              # kill -9 of our own child: it never gives the server up itself
    second.proc.wait(timeout=30)
    second.proc = None
    assert is_mounted(second.mnt)   # a dead mount is left behind
    assert live_user_files(tmp_path) == [str(first.mnt)]

    down = acdfuse(xdg, "umount", str(first.mnt))
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == STOPPED
    assert not alive(state["pid"])
    assert port_closed(state["port"])
    assert serve_pids(data_root) == []

    # the dead mount is detached; nothing is left to stop
    down = acdfuse(xdg, "umount", str(second.mnt))
    assert down.returncode == 0, down.stderr
    assert "Traceback" not in down.stderr and down.stdout == ""
    assert not is_mounted(second.mnt)
    assert live_user_files(tmp_path) == []


def test_umount_of_a_killed_mount_leaves_the_server_to_a_live_one(
        tmp_path: Path, xdg: dict[str, str], mounts: Any) -> None:
    # the mount that started the server is killed; the server stays for the other, which stops it
    data_root = tmp_path / "data" / "acdfuse"
    first = embedded_mount(mounts, xdg, "mnt")
    state = server_state(tmp_path)
    second = embedded_mount(mounts, xdg, "mnt2")
    assert first.proc is not None
    first.proc.kill()
    first.proc.wait(timeout=30)
    first.proc = None

    down = acdfuse(xdg, "umount", str(first.mnt))
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == f"{LEFT_RUNNING} for 1 other mount ({second.mnt})"
    assert not is_mounted(first.mnt)
    assert alive(state["pid"])
    assert os.listdir(second.mnt) == []

    down = acdfuse(xdg, "umount", str(second.mnt))
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == STOPPED
    assert not alive(state["pid"]) and port_closed(state["port"])
    assert serve_pids(data_root) == []


def test_two_embedded_mounts_started_at_once_share_one_server(tmp_path: Path, xdg: dict[str, str]) -> None:
    require_fuse()
    data_root = tmp_path / "data" / "acdfuse"
    mnts = [tmp_path / "mnt", tmp_path / "mnt2"]
    argvs = [[sys.executable, "-m", "acdfuse", "mount", str(mnts[0])],
             [sys.executable, "-m", "acdfuse", "mount", str(mnts[1]), "--cache-dir", str(tmp_path / "c2")]]
    procs = [subprocess.Popen(argv, env=xdg, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in argvs]
    outs = [proc.communicate(timeout=180) for proc in procs]
    try:
        for proc, (_, err) in zip(procs, outs, strict=True):
            assert proc.returncode == 0, err
        state = server_state(tmp_path)
        assert serve_pids(data_root) == [state["pid"]]      # one server, not one each
        assert sorted(live_user_files(tmp_path)) == sorted(str(m) for m in mnts)
        ACDClient(str(data_root / "credentials")).upload_stream(io.BytesIO(b"both\n"), "both.txt")
    finally:
        downs = [acdfuse(xdg, "umount", str(m)) for m in mnts]
    for down in downs:
        assert down.returncode == 0, down.stderr
    assert downs[0].stdout.strip() == f"{LEFT_RUNNING} for 1 other mount ({mnts[1]})"
    assert downs[1].stdout.strip() == STOPPED
    assert serve_pids(data_root) == [] and port_closed(state["port"])


def test_umount_racing_a_mount_never_stops_the_server_under_it(tmp_path: Path, xdg: dict[str, str],
                                                               mounts: Any) -> None:
    """The last mount leaving and a new one joining both wait for the control lock (held here); in
    either order the new mount ends up on a running server and its unmount stops it."""
    from acdfuse.runtime import embedded  # noqa: PLC0415

    require_fuse()
    data_root = tmp_path / "data" / "acdfuse"
    paths = embedded.EmbeddedPaths(data_root)
    first = embedded_mount(mounts, xdg, "mnt")
    ACDClient(str(paths.cdir)).upload_stream(io.BytesIO(b"raced\n"), "raced.txt")
    with embedded.control_lock(paths):
        umount = subprocess.Popen([sys.executable, "-m", "acdfuse", "umount", str(first.mnt)], env=xdg,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        mount = subprocess.Popen([sys.executable, "-m", "acdfuse", "mount", str(tmp_path / "mnt2"),
                                  "--cache-dir", str(tmp_path / "c2")], env=xdg,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = "waiting for another acdfuse process"
        wait_until(lambda: waiting in first.log_file.read_text(), "the leaving mount to wait for the lock")
        second_log = tmp_path / "c2" / "acdfuse.log"
        wait_until(lambda: second_log.exists() and waiting in second_log.read_text(),
                   "the new mount to wait for the lock")
    _, up_err = mount.communicate(timeout=180)
    down_out, down_err = umount.communicate(timeout=180)
    try:
        assert mount.returncode == 0, up_err
        assert umount.returncode == 0, down_err
        # either order is right: the leaving mount went first and stopped the server (the new one
        # started another), or the new one joined first and the leaving one left it running
        assert down_out.strip() in (STOPPED, f"{LEFT_RUNNING} for 1 other mount ({tmp_path / 'mnt2'})")
        state = server_state(tmp_path)
        assert serve_pids(data_root) == [state["pid"]]
        assert (tmp_path / "mnt2" / "raced.txt").read_bytes() == b"raced\n"
    finally:
        down = acdfuse(xdg, "umount", str(tmp_path / "mnt2"))
    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == STOPPED
    assert serve_pids(data_root) == [] and port_closed(state["port"])


def test_join_replaces_a_server_that_runs_without_working_credentials(tmp_path: Path) -> None:
    # e.g. a mount killed while its server was starting: the state names a server that is no use.
    # The next one to join stops it before it starts another, so one data dir never has two servers.
    from acdfuse.runtime import embedded  # noqa: PLC0415

    paths = embedded.EmbeddedPaths(tmp_path / "data")
    first = embedded.join(paths, tmp_path / "a")
    try:
        (paths.cdir / "acdfuse_server").unlink()
        second = embedded.join(paths, tmp_path / "b")
        try:
            assert second.state.pid != first.state.pid
            assert not alive(first.state.pid)
            assert serve_pids(paths.root) == [second.state.pid]
            assert ACDClient(str(paths.cdir)).get_root_id()
        finally:
            assert second.leave() is False          # the first lease still uses the drive
        assert alive(second.state.pid)
    finally:
        assert first.leave() is True                # the last one stops it
    assert not alive(second.state.pid)
    assert embedded.read_state(paths) is None
    assert list(paths.users.iterdir()) == []


def test_a_second_mount_on_the_default_cache_dir_says_how_to_get_one(tmp_path: Path,
                                                                    xdg: dict[str, str]) -> None:
    """The default cache dir is one per drive: a second mount of the same drive is refused with a
    message naming the fix, and the first mount is not disturbed."""
    require_fuse()
    first, second = tmp_path / "mnt1", tmp_path / "mnt2"
    up = acdfuse(xdg, "mount", str(first))
    assert up.returncode == 0, up.stderr
    try:
        cache = tmp_path / "cache" / "acdfuse" / "embedded"
        log_before = (cache / "mount-stderr.log").read_bytes()
        refused = acdfuse(xdg, "mount", str(second))
        assert refused.returncode != 0
        assert "in use by another mount" in refused.stderr and "--cache-dir" in refused.stderr
        assert not second.exists()      # refused before it made the mount point
        assert (cache / "mount-stderr.log").read_bytes() == log_before   # the running mount's file
        assert os.path.ismount(first) and os.listdir(first) == []
    finally:
        down = acdfuse(xdg, "umount", str(first))
    assert down.returncode == 0, down.stderr


def test_two_mounts_started_at_once_on_one_mount_point_do_not_stack(tmp_path: Path,
                                                                   xdg: dict[str, str]) -> None:
    """QA: both used to succeed and stack two acdfuse mounts on one directory. The mount point's lock
    lets one of them mount; the other is told why, whichever message the race gives it."""
    require_fuse()
    mnt = tmp_path / "mnt"
    argvs = [[sys.executable, "-m", "acdfuse", "mount", str(mnt), "--cache-dir", str(tmp_path / name)]
             for name in ("c1", "c2")]
    procs = [subprocess.Popen(argv, env=xdg, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in argvs]
    outputs = [p.communicate(timeout=180) for p in procs]
    results = [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]
    try:
        assert sorted(code for code, _, _ in results) == [0, 1], results
        loser = next(err for code, _, err in results if code != 0)
        assert "another acdfuse process is mounting" in loser or "already a mount point" in loser, loser
        listed = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if f" {mnt} " in line]
        assert len(listed) == 1, listed
        assert os.listdir(mnt) == []
    finally:
        down = acdfuse(xdg, "umount", str(mnt))
    assert down.returncode == 0, down.stderr
    assert not is_mounted(mnt)


def test_a_mount_right_after_kill_9_detaches_the_dead_mount_at_once(tmp_path: Path,
                                                                   xdg: dict[str, str]) -> None:
    """QA: for about a second after kill -9 the kernel's attribute cache still answered for the dead
    mount, so a new mount was refused as "already a mount point". The free mount point lock says it
    is dead at once."""
    require_fuse()
    mnt = tmp_path / "mnt"
    up = acdfuse(xdg, "mount", str(mnt), "--interval", "3600")
    assert up.returncode == 0, up.stderr
    os.stat(mnt)                                   # the root's attributes are in the kernel's cache now
    mount_pid = int(next((tmp_path / "run" / "acdfuse").glob("mount-*.pid")).read_text().split()[0])
    os.kill(mount_pid, signal.SIGKILL)
    wait_until(lambda: not alive(mount_pid), "the killed mount process to go")
    again = acdfuse(xdg, "mount", str(mnt))         # at once, no wait for ENOTCONN
    try:
        assert again.returncode == 0, again.stderr
        assert "dead mount" in again.stderr
        assert os.listdir(mnt) == []
    finally:
        down = acdfuse(xdg, "umount", str(mnt))
    assert down.returncode == 0, down.stderr


def test_the_bundled_drives_own_client_config_counts_as_a_user_of_its_server(
        tmp_path: Path, xdg: dict[str, str]) -> None:
    """QA: a mount with --config-dir naming the bundled drive's client config (the path `mount` prints)
    was not counted, so unmounting the embedded mount stopped the server under it."""
    require_fuse()
    first, second = tmp_path / "mnt", tmp_path / "mnt2"
    cdir = tmp_path / "data" / "acdfuse" / "credentials"
    up = acdfuse(xdg, "mount", str(first))
    assert up.returncode == 0, up.stderr
    ACDClient(str(cdir)).upload_stream(io.BytesIO(b"shared\n"), "shared.txt")
    up2 = acdfuse(xdg, "mount", str(second), "--config-dir", str(cdir), "--cache-dir", str(tmp_path / "c2"))
    try:
        assert up2.returncode == 0, up2.stderr
        down = acdfuse(xdg, "umount", str(first))
        assert down.returncode == 0, down.stderr
        assert "running for 1 other mount" in down.stdout
        assert (second / "shared.txt").read_bytes() == b"shared\n"   # not cached: the server still answers
    finally:
        down2 = acdfuse(xdg, "umount", str(second))
        if is_mounted(first):
            acdfuse(xdg, "umount", str(first))
    assert down2.returncode == 0, down2.stderr
    assert down2.stdout.strip() == STOPPED


def test_a_live_mount_from_another_runtime_dir_is_never_taken_for_dead(tmp_path: Path,
                                                                      xdg: dict[str, str]) -> None:
    """The mount point lock lives in $XDG_RUNTIME_DIR: seen from a shell with another one (no pid file
    there), a free lock proves nothing, and a live mount must not be detached as dead."""
    require_fuse()
    mnt = tmp_path / "mnt"
    up = acdfuse(xdg, "mount", str(mnt))
    assert up.returncode == 0, up.stderr
    other = dict(xdg, XDG_RUNTIME_DIR=str(tmp_path / "run2"))
    (tmp_path / "run2").mkdir(mode=0o700)
    try:
        again = acdfuse(other, "mount", str(mnt), "--cache-dir", str(tmp_path / "c2"))
        assert again.returncode != 0
        assert "already a mount point" in again.stderr, again.stderr
        assert os.path.ismount(mnt) and os.listdir(mnt) == []      # still the live mount
    finally:
        down = acdfuse(xdg, "umount", str(mnt))
    assert down.returncode == 0, down.stderr
