"""``DriveServer``: wires the database, blobs, auth, drive and HTTP threads of one server instance.

The constructor does no I/O; ``start()`` opens (or creates) the data dir and serves in daemon
threads; ``close()`` stops serving, cuts idle keep-alive connections and closes the database.
In-process extras for tests and benchmarks: ``write_credentials``, ``generate_tree``, ``purge``,
``forget_purged``, ``sweep_trash``, ``access_token``, ``revoke_tokens``, ``account``,
``open_connections``.

Data dir layout (private: dirs 0700, files 0600): ``drive.sqlite3`` (+ WAL) metadata,
``blobs/<xx>/<blob id>`` contents, ``tmp/`` uploads in flight (wiped at start), ``server.lock`` (flock:
one server per data dir; holds ``{"pid", "base_url"}`` of the server holding it, which
``acdfuse serve --credentials-only`` writes into the credentials it provisions, see provision.py);
``server.pid`` and ``server.log`` of an ``acdfuse serve --background`` (command.py).

At start a background sweep removes blob files that no node references and that predate the start
(left by a kill between a blob's rename and its transaction's commit), see ``blobs.BlobStore.orphans``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

from acdfuse.common.locks import take_lock
from acdfuse.common.privdir import make_private_dir
from acdfuse.server.auth import Auth, TokenSet
from acdfuse.server.blobs import BlobStore
from acdfuse.server.config import ServerConfig
from acdfuse.server.db import Database
from acdfuse.server.drive import Account, Drive
from acdfuse.server.faults import Faults, FaultSettings, Stats
from acdfuse.server.generate import GeneratedTree, generate_tree
from acdfuse.server.handler import HTTPServer
from acdfuse.server.oauth import OAuthPages
from acdfuse.server.routes import Api

log = logging.getLogger(__name__)

ENDPOINT_VALIDITY = 259200  # 3 days, as acd_cli caches endpoints
LOCK_FILE = "server.lock"


class DataDirBusy(OSError):
    """Another server (process or instance) already serves this data dir."""


class DriveServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.faults = Faults(
            FaultSettings(
                latency_ms=config.latency_ms,
                bandwidth=config.bandwidth,
                error_rate=config.error_rate,
                cut_rate=config.cut_rate,
                seed=config.fault_seed,
            )
        )
        self.stats = Stats()
        data = Path(config.data_dir)
        self.db = Database(data / "drive.sqlite3")
        self.blobs = BlobStore(data)
        self.auth = Auth(self.db, config.token_lifetime)
        self.drive = Drive(
            self.db,
            self.blobs,
            quota=config.quota,
            next_token_lifetime=config.next_token_lifetime,
            allow_cycles=config.allow_cycles,
        )
        self.api = Api(config, self.drive, self.blobs, self.auth, self.stats, self.url_for)
        self.oauth = OAuthPages(config, self.auth, self.drive, self.url_for)
        self._httpd: HTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._port = 0
        self._lock_fd = -1
        self.blob_sweep_done = threading.Event()  # set when the start-up orphan blob sweep has ended

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._httpd is not None:
            raise RuntimeError("server already started")
        data = Path(self.config.data_dir)
        make_data_dir(data)
        # One server per data dir: the change counter lives in memory, so a second writer would
        # hand out the same numbers. flock is released by the kernel even after kill -9.
        try:
            self._lock_fd = take_lock(data / LOCK_FILE)
        except BlockingIOError:
            holder = read_lock_info(data)
            where = f" (pid {holder.get('pid')}, {holder.get('base_url')})" if holder else ""
            raise DataDirBusy(f"{data} is in use by another acdfuse server{where}") from None
        try:
            self.db.open()
            self.blobs.open()
            self.auth.open()
            self.drive.open()
            self._httpd = HTTPServer((self.config.host, self.config.port), self)
        except BaseException:
            self.db.close()
            self._unlock()
            raise
        self._port = int(self._httpd.server_address[1])
        info = json.dumps({"pid": os.getpid(), "base_url": self.base_url}).encode()
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, info, 0)
        t = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name=f"acdfuse-serve-{self._port}",
            daemon=True,
        )
        t.start()
        self._threads.append(t)
        b = threading.Thread(target=self._blob_sweep, name="acdfuse-blob-sweep", daemon=True)
        b.start()
        self._threads.append(b)
        if self.config.trash_retention is not None:
            s = threading.Thread(target=self._sweeper, name="acdfuse-trash-sweeper", daemon=True)
            s.start()
            self._threads.append(s)
        log.info(
            "serving %s (listening on %s port %d, data in %s)",
            self.base_url,
            self.config.host or "*",
            self._port,
            self.config.data_dir,
        )

    def close(self) -> None:
        self._stop.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            for conn in list(httpd.open_connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    log.debug("connection already closed")
            httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []
        self.db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = -1

    def __enter__(self) -> DriveServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sweeper(self) -> None:
        retention = self.config.trash_retention
        assert retention is not None
        try:
            # first sweep at start: trash may have expired while the server was down
            while True:
                try:
                    self.sweep_trash()
                    self.auth.purge_expired()
                except Exception:
                    log.exception("trash sweeper failed")
                if self._stop.wait(self.sweep_interval):
                    break
        finally:
            self.db.release_thread()

    @property
    def sweep_interval(self) -> float:
        """Seconds between trash sweeps: ``purge_interval``, or the retention if that is shorter (an
        expired node then waits at most one more retention, not an hour), but at least 0.1 s."""
        retention = self.config.trash_retention
        interval = self.config.purge_interval
        if retention is not None:
            interval = min(interval, retention)
        return max(interval, 0.1)

    def _blob_sweep(self) -> None:
        try:
            self.sweep_orphan_blobs()
        except Exception:
            log.exception("orphan blob sweep failed")
        finally:
            self.db.release_thread()
            self.blob_sweep_done.set()

    def sweep_orphan_blobs(self) -> int:
        """Remove blob files that predate this start and that no node references; returns how many."""
        removed = 0
        for blob_id in self.blobs.orphans(self.drive.blobs_with_prefix):
            if self._stop.is_set():
                break
            log.info("removing orphan blob %s (no node references it)", blob_id)
            try:
                self.blobs.path(blob_id).unlink()
            except FileNotFoundError:
                continue
            removed += 1
        if removed:
            log.warning("removed %d orphan blob file(s) left by an interrupted upload or overwrite", removed)
        return removed

    @property
    def open_connections(self) -> int:
        """HTTP connections currently served (keep-alive ones included)."""
        return len(self._httpd.open_connections) if self._httpd is not None else 0

    @property
    def closing(self) -> bool:
        return self._stop.is_set()

    # -- addresses --------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """The URL this server advertises when no request tells otherwise (credentials, the log).

        ``public_url`` if set; else built from the bound address, with a wildcard bind (0.0.0.0, ::)
        replaced by loopback: the server cannot know which of its addresses a client will use.
        """
        return advertised_url(self.config, self._port)

    def url_for(self, host_header: str | None) -> str:
        """The base URL to put in an answer to a request that carried ``Host: host_header``.

        Decision: bound to a wildcard address without ``public_url``, the server answers discovery
        (and tempLinks, property locations, the login form) with ``http://<Host header>``: the client
        reached us under that name, so it can reach the URLs we hand out under it too; loopback would
        send a client on another machine to itself. A missing or malformed Host falls back to
        ``base_url``. With ``public_url`` set, or a specific bind address, the answer never depends
        on a request header.
        """
        if self.config.public_url or not is_wildcard(self.config.host):
            return self.base_url
        if host_header and _HOST_RE.fullmatch(host_header.strip()):
            return f"http://{host_header.strip()}"
        return self.base_url

    @property
    def exposed(self) -> bool:
        """Whether the listening socket is reachable from other machines (not bound to loopback)."""
        return not is_loopback(self.config.host)

    # -- in-process helpers -----------------------------------------------------------------------
    def account(self, name: str = "default") -> Account:
        """The account with this name, created (with its root folder) if it does not exist."""
        return self.drive.ensure_account(name)

    def access_token(self, account: str = "default", token_lifetime: float | None = None) -> str:
        """A fresh bearer token for ``account`` (tests that talk raw HTTP)."""
        return self.auth.issue(self.account(account).id, token_lifetime).access_token

    def write_credentials(
        self, cdir: Path, account: str = "default", token_lifetime: float | None = None
    ) -> None:
        """Write Contract 2's client files (endpoint_data, oauth_data, client_data, acdfuse_server), 0600."""
        acc = self.account(account)
        tokens = self.auth.issue(acc.id, token_lifetime)
        write_client_files(Path(cdir), self.base_url, tokens, self.auth.client_id, self.auth.client_secret)

    def generate_tree(
        self,
        account: str = "default",
        *,
        n_nodes: int = 100_000,
        fanout: int = 10,
        folders_per_folder: int = 3,
        file_size: int = 0,
        parent: str | None = None,
        prefix: str = "",
    ) -> GeneratedTree:
        """Write a synthetic tree straight into the database (no HTTP); see ``generate.py``."""
        return generate_tree(
            self.drive,
            self.account(account),
            n_nodes=n_nodes,
            fanout=fanout,
            folders_per_folder=folders_per_folder,
            file_size=file_size,
            parent=parent,
            prefix=prefix,
        )

    def revoke_tokens(self, account: str = "default", token: str | None = None) -> int:
        """Revoke the account's tokens (or one of them): requests with them get 401 from now on."""
        return self.auth.revoke(self.account(account).id, token)

    def purge(self, node_id: str, account: str = "default") -> int:
        """Purge a node (and what is reachable only through it) as the trash sweeper would."""
        return self.drive.purge(self.account(account), node_id)

    def forget_purged(self, account: str = "default") -> int:
        """Drop PURGED tombstones; older checkpoints then get ``reset: true``."""
        return self.drive.forget_purged(self.account(account))

    def sweep_trash(self, now: float | None = None) -> int:
        """Purge trash older than ``trash_retention`` (relative to ``now``, epoch seconds)."""
        retention = self.config.trash_retention
        if retention is None:
            return 0
        cutoff = ((time.time() if now is None else now) - retention) * 1000
        return self.drive.sweep_trash(int(cutoff))


# host[:port] of a Host header: a DNS name or IPv4 address, or a bracketed IPv6 address
_HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")  # noqa: S104 - tells a wildcard bind apart, binds nothing


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens on loopback only (a name other than localhost counts as not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_client_files(cdir: Path, base: str, tokens: TokenSet, client_id: str, client_secret: str) -> None:
    """Contract 2's client config dir: endpoint_data, oauth_data, client_data, acdfuse_server (0600)."""
    cdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files: dict[str, dict[str, Any]] = {
        "endpoint_data": {
            "customerExists": True,
            "metadataUrl": base + "/drive/v1/",
            "contentUrl": base + "/cdproxy/",
            "exp_time": time.time() + ENDPOINT_VALIDITY,
        },
        "oauth_data": {
            **tokens.as_json(),
            # acd_cli's convention: refresh two minutes before the end
            "exp_time": tokens.issued + tokens.expires_in - 120,
        },
        "client_data": {"CLIENT_ID": client_id, "CLIENT_SECRET": client_secret},
        "acdfuse_server": {"base_url": base},
    }
    for name, content in files.items():
        _write_private(cdir / name, json.dumps(content, indent=4, sort_keys=True))


def advertised_url(config: ServerConfig, port: int) -> str:
    """``DriveServer.base_url`` of a server with this config listening on ``port``."""
    if config.public_url:
        return config.public_url.rstrip("/")
    host = config.host
    if host in ("0.0.0.0", ""):  # noqa: S104 - a wildcard bind is advertised as loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def make_data_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) 0700; warn if an existing one is open to others."""
    mode = make_private_dir(path)
    if mode is not None:
        log.warning(
            "data dir %s is accessible to other users (mode %o); chmod 700 it to keep the drive private",
            path,
            mode,
        )


def read_lock_info(data_dir: Path) -> dict[str, Any]:
    """``{"pid", "base_url"}`` that the server holding ``data_dir`` wrote into its lock file, or {}."""
    try:
        info = json.loads((Path(data_dir) / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
