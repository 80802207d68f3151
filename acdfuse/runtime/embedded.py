"""The embedded default drive: the bundled server run as a child process on a loopback port.

A mount with no config dir and no configured account starts ``acdfuse serve`` with its data under the
user's data dir, asks it for credentials (``--credentials-out``) and uses those. A state file records
the server's pid and port, so a second mount reuses a running server. The next start finds the same data.

Who uses the server is kept with file locks, not pids or timing, so it survives kill -9:

- ``server.lock`` (the control lock, flock LOCK_EX) is held by whoever starts, stops or joins the server
  or counts its users. Two mounts starting at once, or an unmount racing a mount, take turns on it.
- ``users/`` holds one file per mount that uses the server, locked LOCK_EX by that mount for its whole
  life. The kernel drops the lock when the mount process dies however it dies, so under the control lock
  a user file that can be locked belongs to a dead mount and is removed.
- A mount that ends drops its own user file and, when no live user is left, stops the server; ``umount``
  does the same for a server whose mounts were all killed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from acdfuse.common.locks import LockTimeout, hold_lock, lock_fd, lock_held
from acdfuse.runtime.paths import EmbeddedPaths
from acdfuse.runtime.pidfiles import pid_alive

log = logging.getLogger(__name__)

# The embedded drive is local and single-user; a long-lived token spares refresh round trips and lets
# acd_cli (which can only refresh against Amazon) use the same credentials.
TOKEN_LIFETIME = 10 * 365 * 86400
START_TIMEOUT = 30.0
# how long to wait for another acdfuse process that holds the control lock: a start tries up to 3 ports
# of START_TIMEOUT each, a stop takes ~10 s; only a stopped (SIGSTOP) holder makes us give up
LOCK_TIMEOUT = 4 * START_TIMEOUT


class EmbeddedError(RuntimeError):
    """The bundled server could not be started."""


@dataclass(frozen=True)
class ServerState:
    pid: int
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def is_server_process(pid: int) -> bool:
    """True when pid is an ``acdfuse serve`` process (guards against a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in cmdline and any(b"acdfuse" in part for part in cmdline)


def read_state(paths: EmbeddedPaths) -> ServerState | None:
    try:
        raw = json.loads(paths.state.read_text())
        return ServerState(int(raw["pid"]), int(raw["port"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable embedded server state %s: %s", paths.state, exc)
        return None


def write_state(paths: EmbeddedPaths, state: ServerState) -> None:
    tmp = paths.state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": state.pid, "port": state.port}))
    os.replace(tmp, paths.state)


def answers(base_url: str, timeout: float = 1.0) -> bool:
    """Whether an HTTP server answers at base_url (any status counts: 401 means it is up)."""
    try:
        # base_url is the http://127.0.0.1:PORT we started the server on, never user input
        with urllib.request.urlopen(f"{base_url}/drive/v1/account/endpoint", timeout=timeout):  # noqa: S310
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def credentials_for(paths: EmbeddedPaths, base_url: str) -> bool:
    """Whether the credentials dir is written and points at base_url."""
    try:
        raw = json.loads((paths.cdir / "acdfuse_server").read_text())
    except (OSError, ValueError):
        return False
    return raw.get("base_url", "").rstrip("/") == base_url and (paths.cdir / "oauth_data").exists()


def remembered_port(paths: EmbeddedPaths) -> int | None:
    """The port the bundled server had last time, when it is free now."""
    try:
        port = int(paths.port_file.read_text().strip())
    except (OSError, ValueError):
        return None
    if not 0 < port < 65536:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the server binds (allow_reuse_address): a port with connections in TIME_WAIT is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            log.info("the bundled server's last port %d is taken; using another", port)
            return None
    return port


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_process(paths: EmbeddedPaths) -> ServerState | None:
    """The state file's server when its process still runs (answering or not)."""
    state = read_state(paths)
    if state is None or not pid_alive(state.pid) or not is_server_process(state.pid):
        return None
    return state


def running_server(paths: EmbeddedPaths, timeout: float = 5.0) -> ServerState | None:
    """The state file's server when it runs, answers and the credentials dir points at it."""
    state = server_process(paths)
    if state is None:
        return None
    # a generous timeout: a busy server that is slow to answer must not be replaced under its mounts
    if not answers(state.base_url, timeout) or not credentials_for(paths, state.base_url):
        return None
    return state


def start_server(paths: EmbeddedPaths, attempts: int = 3) -> ServerState:
    """Start ``acdfuse serve`` on a loopback port and wait until it answers with credentials.

    The port of the last start is used again when it is free, else a free one. The port is picked
    here and bound by the child, so another program can take it in between; a
    server that exits at once is then retried on a new port. Mounts call it through ``join`` (under the
    control lock), never directly.
    """
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.cdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    first = remembered_port(paths)
    for attempt in range(1, attempts + 1):
        port = first if attempt == 1 and first is not None else free_port()
        try:
            return _start_once(paths, port)
        except _ExitedEarly as exc:
            if attempt == attempts:
                raise EmbeddedError(str(exc)) from None
            log.warning("%s; retrying on another port", exc)
    raise AssertionError("unreachable")


class _ExitedEarly(Exception):
    pass


def _start_once(paths: EmbeddedPaths, port: int) -> ServerState:
    argv = [
        sys.executable, "-m", "acdfuse", "serve",
        "--data", str(paths.data), "--host", "127.0.0.1", "--port", str(port),
        "--token-lifetime", str(TOKEN_LIFETIME), "--credentials-out", str(paths.cdir),
    ]
    with open(paths.log, "ab") as logf:
        # own session: a Ctrl-C meant for the mount's terminal must not kill the drive under it
        # argv is this interpreter and our own flags, never a shell string
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,  # noqa: S603
                                start_new_session=True)
    state = ServerState(proc.pid, port)
    # recorded at once, not when it answers: if this process is killed while it waits, the next one to
    # take the control lock finds the half-started server and stops it rather than start a second
    # server on the same data dir
    write_state(paths, state)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _forget(paths, state)
            raise _ExitedEarly(f"the bundled server exited with status {proc.returncode}; see {paths.log}")
        if answers(state.base_url, timeout=0.5) and credentials_for(paths, state.base_url):
            try:
                paths.port_file.write_text(f"{port}\n")
            except OSError as exc:
                log.warning("cannot remember the bundled server's port in %s: %s", paths.port_file, exc)
            log.info("embedded server pid %d on %s, data in %s", proc.pid, state.base_url, paths.data)
            return state
        time.sleep(0.1)
    stop_server(paths, state)
    raise EmbeddedError(f"the bundled server did not answer within {START_TIMEOUT:.0f}s; see {paths.log}")


def stop_server(paths: EmbeddedPaths, state: ServerState, wait: float = 10.0) -> None:
    """Stop the server (SIGTERM, then SIGKILL) and remove the state file if it still names it."""
    if pid_alive(state.pid) and is_server_process(state.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while pid_alive(state.pid) and time.monotonic() < deadline:
            _reap(state.pid)
            time.sleep(0.05)
        if pid_alive(state.pid):
            log.warning("embedded server pid %d ignored SIGTERM; killing it", state.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, signal.SIGKILL)
        _reap(state.pid)
    _forget(paths, state)
    log.info("embedded server pid %d stopped", state.pid)


def _forget(paths: EmbeddedPaths, state: ServerState) -> None:
    """Remove the state file if it still names this server."""
    current = read_state(paths)
    if current is not None and current.pid == state.pid:
        with contextlib.suppress(FileNotFoundError):
            paths.state.unlink()


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


# ----- who uses the server: the control lock and one locked file per mount ----------------------------

@contextlib.contextmanager
def control_lock(paths: EmbeddedPaths, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold ``server.lock`` exclusively: starting, joining, leaving and stopping take turns on it.

    Waits for another holder (which may be starting the server); raises EmbeddedError when it is still
    held after ``timeout``, which only a stopped process can cause. A killed holder frees it at once.
    """
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def say_why() -> None:
        log.info("waiting for another acdfuse process to start or stop the bundled server")

    try:
        with hold_lock(paths.lock, timeout, on_wait=say_why):
            yield
    except LockTimeout:
        raise EmbeddedError(f"another acdfuse process holds {paths.lock} for more than "
                            f"{timeout:.0f}s (is one stopped?)") from None


def live_users(paths: EmbeddedPaths) -> list[str]:
    """The mount points of the mounts that use the server now; call with the control lock held.

    A user file that can be locked belongs to a mount process that is gone (the kernel dropped its
    lock), so it is removed here. Under the control lock nobody registers meanwhile, so removing it
    cannot race a new user taking it.
    """
    try:
        entries = sorted(paths.users.iterdir())
    except FileNotFoundError:
        return []
    users = []
    for entry in entries:
        if lock_held(entry):
            users.append(entry.read_text(errors="replace").strip() or entry.name)
        elif entry.exists():
            log.info("removing the embedded server user %s left by a dead mount", entry.name)
            entry.unlink(missing_ok=True)
    return users


@dataclass
class Lease:
    """One mount's use of the bundled server: its user file stays locked until ``leave``."""

    paths: EmbeddedPaths
    state: ServerState
    user_file: Path
    fd: int | None = field(default=None, repr=False)

    def leave(self) -> bool:
        """Give the server up; stop it when no other mount uses it. True when it was stopped."""
        if self.fd is None:
            return False
        with control_lock(self.paths):
            _drop_user(self.user_file, self.fd)
            self.fd = None
            others = live_users(self.paths)
            if others:
                log.info("left the embedded server pid %d running for %d other mount(s): %s",
                         self.state.pid, len(others), ", ".join(others))
                return False
            current = server_process(self.paths)
            if current is None:
                return False
            stop_server(self.paths, current)
            return True


def join(paths: EmbeddedPaths, mountpoint: Path) -> Lease:
    """Use the bundled server for mountpoint: the running one, or one started now.

    The mount is registered as a user before the control lock is let go, so no one stops the server
    between this check and the mount's first request.
    """
    with control_lock(paths):
        paths.users.mkdir(exist_ok=True, mode=0o700)
        user_file, fd = _add_user(paths, mountpoint)
        try:
            state = running_server(paths)
            if state is None:
                stale = server_process(paths)
                if stale is not None:
                    # running but not answering or its credentials are gone: two servers must never
                    # share one data dir, so the old one goes first
                    log.warning("the bundled server pid %d does not answer or its credentials are "
                                "gone; restarting it", stale.pid)
                    stop_server(paths, stale)
                state = start_server(paths)
            else:
                log.info("joined the embedded server pid %d", state.pid)
        except BaseException:
            _drop_user(user_file, fd)
            raise
    return Lease(paths, state, user_file, fd)


@dataclass(frozen=True)
class Settled:
    """What ``settle`` found: the server it stopped, or the one still running and its users."""

    stopped: ServerState | None
    running: ServerState | None
    users: list[str]


def settle(paths: EmbeddedPaths) -> Settled:
    """Stop the bundled server when no live mount uses it (its mounts were killed); say what is left."""
    if read_state(paths) is None:
        return Settled(None, None, [])      # none started (a start in progress registers its user first)
    with control_lock(paths):
        users = live_users(paths)
        state = server_process(paths)
        if state is None or users:
            return Settled(None, state, users)
        log.info("stopping the embedded server pid %d: no mount uses it any more", state.pid)
        stop_server(paths, state)
        return Settled(state, None, [])


def _add_user(paths: EmbeddedPaths, mountpoint: Path) -> tuple[Path, int]:
    fd, name = tempfile.mkstemp(dir=paths.users, prefix=f"{os.getpid()}-", suffix=".user")
    try:
        # nobody else can hold it: the name is new and only we have it open
        lock_fd(fd)
        os.write(fd, f"{mountpoint}\n".encode())
    except BaseException:
        os.close(fd)
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name), fd


def _drop_user(user_file: Path, fd: int) -> None:
    # called with the control lock held, so no live_users() sees the file between unlink and unlock
    user_file.unlink(missing_ok=True)
    os.close(fd)
