"""The embedded default drive: the bundled server run as a child process on a loopback port.

A mount with no config dir and no configured account starts ``acdfuse serve`` with its data under the
user's data dir, asks it for credentials (``--credentials-out``) and uses those. A state file records
the server's pid and port, so a second mount reuses a running server and ``umount`` can stop one whose
mount is gone. The next start finds the same data.
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
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The embedded drive is local and single-user; a long-lived token spares refresh round trips and lets
# acd_cli (which can only refresh against Amazon) use the same credentials.
TOKEN_LIFETIME = 10 * 365 * 86400
START_TIMEOUT = 30.0


class EmbeddedError(RuntimeError):
    """The bundled server could not be started."""


def xdg_dir(env: str, fallback: str) -> Path:
    value = os.environ.get(env)
    return Path(value) if value else Path.home() / fallback


def data_root() -> Path:
    return xdg_dir("XDG_DATA_HOME", ".local/share") / "acdfuse"


@dataclass(frozen=True)
class EmbeddedPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "drive"

    @property
    def cdir(self) -> Path:
        return self.root / "credentials"

    @property
    def state(self) -> Path:
        return self.root / "server.json"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def port_file(self) -> Path:
        # outlives server.json (removed when the server stops): the next start reuses the port, so
        # client configs copied from the credentials dir keep working across mounts
        return self.root / "port"


@dataclass(frozen=True)
class ServerState:
    pid: int
    port: int
    owner_pid: int      # the mount process that started it and will stop it

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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
        return ServerState(int(raw["pid"]), int(raw["port"]), int(raw.get("owner_pid", 0)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable embedded server state %s: %s", paths.state, exc)
        return None


def write_state(paths: EmbeddedPaths, state: ServerState) -> None:
    tmp = paths.state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": state.pid, "port": state.port, "owner_pid": state.owner_pid}))
    os.replace(tmp, paths.state)


def answers(base_url: str, timeout: float = 1.0) -> bool:
    """Whether an HTTP server answers at base_url (any status counts: 401 means it is up)."""
    try:
        with urllib.request.urlopen(f"{base_url}/drive/v1/account/endpoint", timeout=timeout):
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


def running_server(paths: EmbeddedPaths) -> ServerState | None:
    state = read_state(paths)
    if state is None or not pid_alive(state.pid) or not is_server_process(state.pid):
        return None
    if not answers(state.base_url) or not credentials_for(paths, state.base_url):
        return None
    return state


def start_server(paths: EmbeddedPaths, owner_pid: int, attempts: int = 3) -> ServerState:
    """Start ``acdfuse serve`` on a loopback port and wait until it answers with credentials.

    The port of the last start is used again when it is free, else a free one. The port is picked
    here and bound by the child, so another program can take it in between; a
    server that exits at once is then retried on a new port.
    """
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.cdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    first = remembered_port(paths)
    for attempt in range(1, attempts + 1):
        port = first if attempt == 1 and first is not None else free_port()
        try:
            return _start_once(paths, owner_pid, port)
        except _ExitedEarly as exc:
            if attempt == attempts:
                raise EmbeddedError(str(exc)) from None
            log.warning("%s; retrying on another port", exc)
    raise AssertionError("unreachable")


class _ExitedEarly(Exception):
    pass


def _start_once(paths: EmbeddedPaths, owner_pid: int, port: int) -> ServerState:
    argv = [
        sys.executable, "-m", "acdfuse", "serve",
        "--data", str(paths.data), "--host", "127.0.0.1", "--port", str(port),
        "--token-lifetime", str(TOKEN_LIFETIME), "--credentials-out", str(paths.cdir),
    ]
    with open(paths.log, "ab") as logf:
        # own session: a Ctrl-C meant for the mount's terminal must not kill the drive under it
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True)
    state = ServerState(proc.pid, port, owner_pid)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _ExitedEarly(f"the bundled server exited with status {proc.returncode}; see {paths.log}")
        if answers(state.base_url, timeout=0.5) and credentials_for(paths, state.base_url):
            write_state(paths, state)
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
    current = read_state(paths)
    if current is not None and current.pid == state.pid:
        with contextlib.suppress(FileNotFoundError):
            paths.state.unlink()
    log.info("embedded server pid %d stopped", state.pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
