"""``acdfuse serve``: run the bundled drive server in the foreground until interrupted.

``--credentials-only`` writes a client config and exits instead (see provision.py). ``--background``
starts the same command detached (``--ready-fd``) and returns once it serves and has written the
credentials, so ``acdfuse serve -d ... && acdfuse mount ...`` is scriptable. Console output is
for the self-hoster: a warning when other machines can reach the server, and how to get a client config.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import select
import shlex
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from acdfuse.common.xdg import XdgDirs
from acdfuse.server.config import ServerConfig
from acdfuse.server.db import SchemaError
from acdfuse.server.errors import ApiError
from acdfuse.server.provision import (
    ProvisionError,
    add_account,
    list_accounts,
    revoke_account_tokens,
    write_credentials_only,
)
from acdfuse.server.server import DataDirBusy, DriveServer, is_wildcard, make_data_dir

log = logging.getLogger(__name__)

PID_FILE = "server.pid"  # of a --background server, removed when it stops
LOG_FILE = "server.log"  # console and log of a --background server
BACKGROUND_START_TIMEOUT = 300.0  # a big drive's first start (schema migration) may take a while


def default_data_dir(xdg: XdgDirs) -> Path:
    return xdg.data_home / "acdfuse" / "server"


EPILOG = """\
client config:
  --credentials-out CDIR writes a client config dir (endpoint_data, oauth_data, client_data,
  acdfuse_server; mode 0600) for --account. Use it with:
    acdfuse mount MOUNTPOINT --config-dir CDIR
    python3 -c 'from acdfuse.api.client import ACDClient; ACDClient("CDIR")'
    ACD_CLI_CACHE_PATH=CDIR acd_cli.py sync
  acd_cli cannot refresh its token against this server (it only knows Amazon's hosts): give it a
  long --token-lifetime, e.g. 31536000 (a year).
  While a server runs, add --credentials-only to write a config for it (any --account) without
  stopping it: acdfuse serve --data DIR --credentials-only --credentials-out CDIR
  In a script: acdfuse serve --data DIR --credentials-out CDIR --background &&
    acdfuse mount MOUNTPOINT --config-dir CDIR     (stop the server: kill $(cat DIR/server.pid))

accounts and signing in:
  acdfuse serve --data DIR account add NAME [--password-file F]  adds NAME (or sets its password) for
  the login page; account list shows them; account revoke NAME signs out every client of NAME (a lost
  laptop, a leaked token). All work while the server runs. Clients sign in with
  acdfuse init --server URL (the public client acdfuse-cli, PKCE) instead of --credentials-out.

network:
  By default only this machine can connect (127.0.0.1). With --host 0.0.0.0 (or another non-loopback
  address) give --public-url http://NAME:PORT so discovery answers and written credentials name an
  address other machines reach; without it, a wildcard bind answers discovery with the request's
  Host header and writes loopback URLs into credentials.
"""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {port}")
    return port


def add_arguments(name: str, subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help="serve a Cloud-Drive-compatible drive",
        description="Serve the Amazon Cloud Drive REST API v1 from a data directory.\n"
                    "The drive that `acdfuse mount` starts on its own lives in\n"
                    "$XDG_DATA_HOME/acdfuse/drive; another client config for it, while it runs:\n"
                    "  acdfuse serve --data $XDG_DATA_HOME/acdfuse/drive --credentials-only "
                    "--credentials-out CDIR",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="data directory (default: $XDG_DATA_HOME/acdfuse/server)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s, loopback only)"
    )
    p.add_argument("--port", type=_port, default=8080, help="port, 0: any free port (default: %(default)s)")
    p.add_argument(
        "--public-url",
        default=None,
        metavar="URL",
        help="base URL clients reach this server at, e.g. http://myhost.lan:8080; used in discovery "
        "answers and written credentials (default: derived from --host/--port)",
    )
    p.add_argument(
        "--token-lifetime",
        type=float,
        default=3600,
        metavar="S",
        help="access token lifetime in seconds (default: %(default)s)",
    )
    p.add_argument(
        "--credentials-out",
        type=Path,
        default=None,
        metavar="CDIR",
        help="write a client config dir for --account into CDIR (see below; default: none)",
    )
    p.add_argument(
        "--credentials-only",
        action="store_true",
        help="only write --credentials-out and exit, also while another server runs on --data",
    )
    p.add_argument(
        "--account",
        metavar="NAME",
        default="default",
        help="account for --credentials-out, created if missing (default: %(default)s)",
    )
    p.add_argument(
        "--latency-ms",
        metavar="MS",
        type=float,
        default=0,
        help="fault: latency added to every request (default: %(default)s)",
    )
    p.add_argument(
        "--bandwidth",
        metavar="B",
        type=int,
        default=0,
        help="fault: bytes/s cap per connection, 0: none (default: %(default)s)",
    )
    p.add_argument(
        "--error-rate",
        metavar="P",
        type=float,
        default=0.0,
        help="fault: share of 429/500/503 answers (default: %(default)s)",
    )
    p.add_argument(
        "--cut-rate",
        metavar="P",
        type=float,
        default=0.0,
        help="fault: share of bodies cut mid-stream (default: %(default)s)",
    )
    p.add_argument(
        "--fault-seed",
        metavar="N",
        type=int,
        default=None,
        help="fault: random seed for repeatable runs (default: random)",
    )
    p.add_argument(
        "--trash-retention",
        type=float,
        default=30 * 86400,
        metavar="S",
        help="seconds after which trashed nodes are purged, <0 disables; checked at start, then every "
        "hour or every S seconds if shorter (default: %(default)s, 30 days)",
    )
    p.add_argument(
        "-d",
        "--background",
        action="store_true",
        help="run detached: return once the server answers and --credentials-out is written "
        "(pid in DIR/server.pid, log in DIR/server.log; stop it with kill $(cat DIR/server.pid))",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    # internal: the detached child of --background reports readiness (and its console lines) here
    p.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(run=run, serve_command=None)
    sub = p.add_subparsers(dest="serve_command", metavar="{account}")
    acc = sub.add_parser(
        "account",
        help="manage the drive's accounts (acdfuse serve [--data DIR] account add|list|revoke)",
        description="Accounts of the data dir; works while a server runs on it.",
    )
    acc_sub = acc.add_subparsers(dest="account_command", metavar="{add,list,revoke}", required=True)
    add = acc_sub.add_parser(
        "add",
        help="add an account (or change its password) for the login page",
        description="Add account NAME with a password for the login page (/ap/oa), or set the password "
        "of an existing one. Once any account has a password, the login page creates no new accounts.",
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument(
        "--password-file",
        type=Path,
        metavar="F",
        default=None,
        help="read the password from the first line of F (default: ask on the terminal)",
    )
    add.add_argument("--no-password", action="store_true", help="add the account without a password")
    acc_sub.add_parser("list", help="list the accounts and whether they have a password")
    revoke = acc_sub.add_parser(
        "revoke",
        help="sign out every client of an account (a lost laptop, a leaked token)",
        description="Delete every token of account NAME: each mount, acd_cli or other client of it gets "
        "401 from now on (a running server within 30 s, the time it caches a token) and must sign in "
        "again (acdfuse init). The account and its files stay.",
    )
    revoke.add_argument("name", metavar="NAME", help="the account whose clients are signed out")
    return p


def _check_args(args: argparse.Namespace) -> str | None:
    """A usage error message, or None."""
    for name, value in (("--error-rate", args.error_rate), ("--cut-rate", args.cut_rate)):
        if not 0.0 <= value <= 1.0:
            return f"{name} must be between 0 and 1"
    if args.public_url is not None:
        url = urlsplit(args.public_url)
        if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
            return f"--public-url must be a base URL such as http://myhost.lan:8080, not {args.public_url!r}"
    if args.credentials_only and args.credentials_out is None:
        return "--credentials-only needs --credentials-out CDIR"
    return None


def run(args: argparse.Namespace, xdg: XdgDirs) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    problem = _check_args(args)
    if problem is not None:
        print(f"acdfuse serve: {problem}", file=sys.stderr)
        return 2
    data_dir = args.data or default_data_dir(xdg)
    if args.data is None:
        make_data_dir(data_dir.parent)  # $XDG_DATA_HOME/acdfuse: nobody else lists our drives
    cfg = ServerConfig(
        data_dir=data_dir,
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        token_lifetime=args.token_lifetime,
        latency_ms=args.latency_ms,
        bandwidth=args.bandwidth,
        error_rate=args.error_rate,
        cut_rate=args.cut_rate,
        fault_seed=args.fault_seed,
        trash_retention=None if args.trash_retention < 0 else args.trash_retention,
    )
    if args.serve_command == "account":
        return _account(cfg, args)
    if args.credentials_only:
        return _credentials_only(cfg, args)
    if args.background:
        return _background(cfg, args)
    return _serve(cfg, args, _Console(args.ready_fd))


def _serve(cfg: ServerConfig, args: argparse.Namespace, console: _Console) -> int:
    srv = DriveServer(cfg)
    try:
        srv.start()
    except DataDirBusy as e:
        hint = ""
        if args.credentials_out is not None:
            hint = "; to write a client config for it, add --credentials-only"
        console.err(f"acdfuse serve: {e}{hint}")
        return 1
    except OSError as e:
        if e.filename is not None:      # the data dir, not the socket
            console.err(f"acdfuse serve: cannot use the data dir {cfg.data_dir}: {e.strerror}: {e.filename}")
        else:
            console.err(f"acdfuse serve: cannot listen on {args.host}:{args.port}: {e.strerror}")
        return 1
    except SchemaError as e:
        console.err(f"acdfuse serve: {e}: use the acdfuse version that wrote it")
        return 1
    except sqlite3.Error as e:
        console.err(f"acdfuse serve: cannot open the database in {cfg.data_dir}: {e}")
        return 1
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    pid_file = Path(cfg.data_dir) / PID_FILE
    try:
        if srv.exposed:
            console.err(f"acdfuse serve: warning: {_exposure(srv)}")
        if args.credentials_out is not None:
            srv.write_credentials(args.credentials_out, account=args.account)
            console.out(f"credentials for account {args.account!r} written to {args.credentials_out}")
        else:
            console.out(
                "no client config written; get one while this runs with: acdfuse serve "
                f"--data {shlex.quote(str(cfg.data_dir))} --credentials-only --credentials-out CDIR"
            )
        console.out(f"acdfuse drive serving at {srv.base_url} (data: {cfg.data_dir})")
        if console.detached:
            pid_file.write_text(f"{os.getpid()}\n")
        console.ready()
        stop.wait()
    finally:
        srv.close()
        if console.detached:
            _remove_own_pid_file(pid_file)
    return 0


class _Console:
    """The self-hoster's console lines. A detached child (--background) prints them into its log and
    also hands them, followed by ``ready``, to the waiting parent over ``ready_fd``."""

    def __init__(self, ready_fd: int | None) -> None:
        self._fd = ready_fd
        self._lines: list[str] = []
        self.detached = ready_fd is not None

    def out(self, text: str) -> None:
        print(text, flush=True)
        self._lines.append("out " + text)

    def err(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
        self._lines.append("err " + text)

    def ready(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.write(fd, "".join(line + "\n" for line in [*self._lines, "ready"]).encode())
        finally:
            os.close(fd)


def _remove_own_pid_file(path: Path) -> None:
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError as e:
        log.warning("cannot remove %s: %s", path, e)


def _child_argv(cfg: ServerConfig, args: argparse.Namespace, ready_fd: int) -> list[str]:
    """The same ``acdfuse serve`` in the foreground, with absolute paths, reporting to ``ready_fd``."""
    argv = [sys.executable, "-m", "acdfuse", "serve", "--data", str(Path(cfg.data_dir).absolute())]
    argv += ["--host", args.host, "--port", str(args.port), "--token-lifetime", str(args.token_lifetime)]
    argv += ["--account", args.account, "--trash-retention", str(args.trash_retention)]
    argv += ["--latency-ms", str(args.latency_ms), "--bandwidth", str(args.bandwidth)]
    argv += ["--error-rate", str(args.error_rate), "--cut-rate", str(args.cut_rate)]
    if args.public_url:
        argv += ["--public-url", args.public_url]
    if args.credentials_out is not None:
        argv += ["--credentials-out", str(Path(args.credentials_out).absolute())]
    if args.fault_seed is not None:
        argv += ["--fault-seed", str(args.fault_seed)]
    if args.verbose:
        argv.append("-v")
    return [*argv, "--ready-fd", str(ready_fd)]


def _background(cfg: ServerConfig, args: argparse.Namespace) -> int:
    """Start a detached server and return once it is ready (0), or with its error (non-zero)."""
    data = Path(cfg.data_dir).absolute()
    make_data_dir(data)
    log_path = data / LOG_FILE
    r, w = os.pipe()
    with open(log_path, "ab") as logf:
        offset = logf.tell()
        # own session: the shell's Ctrl-C or hang-up must not reach the drive
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, argv from parsed options
            _child_argv(cfg, args, w),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf,
            pass_fds=(w,),
            start_new_session=True,
        )
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], BACKGROUND_START_TIMEOUT)
        report = pipe.read().decode("utf-8", "replace").splitlines() if ready else []
    if report and report[-1] == "ready":
        for line in report[:-1]:
            kind, _, text = line.partition(" ")
            print(text, file=sys.stderr if kind == "err" else sys.stdout, flush=True)
        print(
            f"running in the background: pid {proc.pid}, log {log_path}; stop it with: "
            f"kill $(cat {shlex.quote(str(data / PID_FILE))})",
            flush=True,
        )
        return 0
    if not ready:
        proc.kill()
    code = proc.wait()
    with open(log_path, "rb") as f:
        f.seek(offset)
        tail = f.read().decode("utf-8", "replace").strip()
    reason = "did not become ready in time" if not ready else f"exited with status {code}"
    print(f"acdfuse serve: the background server {reason}; its output ({log_path}):", file=sys.stderr)
    print(tail or "(none)", file=sys.stderr)
    return code or 1


def _exposure(srv: DriveServer) -> str:
    """The one-line warning for a server that other machines can reach."""
    cfg = srv.config
    text = (
        f"listening on {cfg.host or '*'} port {srv.port}, not only loopback: other machines can reach "
        "this drive (every API call still needs a token)"
    )
    if cfg.public_url:
        return text + f"; clients are sent to {srv.base_url}"
    if is_wildcard(cfg.host):
        return text + (
            f"; discovery answers use the request's Host header, written credentials use {srv.base_url} "
            "(set --public-url for clients on other machines)"
        )
    return text


def _credentials_only(cfg: ServerConfig, args: argparse.Namespace) -> int:
    try:
        base = write_credentials_only(cfg, args.credentials_out, account=args.account)
    except ProvisionError as e:
        print(f"acdfuse serve: {e}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error, ApiError) as e:
        print(f"acdfuse serve: cannot write credentials: {e}", file=sys.stderr)
        return 1
    print(f"credentials for account {args.account!r} at {base} written to {args.credentials_out}", flush=True)
    return 0


def _read_password(args: argparse.Namespace) -> str | None:
    """The new password (None: --no-password); raises ValueError with a message for the user."""
    if args.no_password:
        return None
    if args.password_file is not None:
        try:
            lines = args.password_file.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ValueError(f"cannot read {args.password_file}: {e.strerror}") from None
        password = lines[0] if lines else ""
    else:
        if not sys.stdin.isatty():
            raise ValueError("no terminal to ask for the password: give --password-file F")
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ValueError("the passwords differ")
    if not password:
        raise ValueError("the password is empty")
    return password


def _account(cfg: ServerConfig, args: argparse.Namespace) -> int:
    try:
        if args.account_command == "list":
            for info in list_accounts(cfg):
                print(f"{info.name}\t{'password' if info.has_password else 'no password'}")
            return 0
        if args.account_command == "revoke":
            count = revoke_account_tokens(cfg, args.name)
            tokens = f"{count} token{'' if count == 1 else 's'}"
            print(f"account {args.name!r}: {tokens} revoked in {cfg.data_dir}; its clients must sign "
                  "in again", flush=True)
            return 0
        password = _read_password(args)
        created = add_account(cfg, args.name, password)
    except (ValueError, ProvisionError) as e:
        print(f"acdfuse serve account: {e}", file=sys.stderr)
        return 2
    except ApiError as e:
        print(f"acdfuse serve account: {e.message}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as e:
        print(f"acdfuse serve account: {e}", file=sys.stderr)
        return 1
    print(f"account {args.name!r} {'added' if created else 'updated'} in {cfg.data_dir}", flush=True)
    return 0
