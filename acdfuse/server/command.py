"""``acdfuse serve``: run the bundled drive server in the foreground until interrupted.

``--credentials-only`` writes a client config and exits instead (see provision.py). Console output is
for the self-hoster: a warning when other machines can reach the server, and how to get a client config.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from acdfuse.server.config import ServerConfig
from acdfuse.server.errors import ApiError
from acdfuse.server.provision import ProvisionError, write_credentials_only
from acdfuse.server.server import DataDirBusy, DriveServer, is_wildcard, make_private_dir

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "acdfuse" / "server"


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

network:
  By default only this machine can connect (127.0.0.1). With --host 0.0.0.0 (or another non-loopback
  address) give --public-url http://NAME:PORT so discovery answers and written credentials name an
  address other machines reach; without it, a wildcard bind answers discovery with the request's
  Host header and writes loopback URLs into credentials.
"""


def add_arguments(name: str, subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help="serve a Cloud-Drive-compatible drive",
        description="Serve the Amazon Cloud Drive REST API v1 (the bundled drive).",
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
    p.add_argument("--port", type=int, default=8080, help="port, 0: any free port (default: %(default)s)")
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
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    p.set_defaults(run=run)
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


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    problem = _check_args(args)
    if problem is not None:
        print(f"acdfuse serve: {problem}", file=sys.stderr)
        return 2
    data_dir = args.data or default_data_dir()
    if args.data is None:
        make_private_dir(data_dir.parent)  # $XDG_DATA_HOME/acdfuse: nobody else lists our drives
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
    if args.credentials_only:
        return _credentials_only(cfg, args)
    srv = DriveServer(cfg)
    try:
        srv.start()
    except DataDirBusy as e:
        hint = ""
        if args.credentials_out is not None:
            hint = "; to write a client config for it, add --credentials-only"
        print(f"acdfuse serve: {e}{hint}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"acdfuse serve: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        if srv.exposed:
            print(f"acdfuse serve: warning: {_exposure(srv)}", file=sys.stderr, flush=True)
        if args.credentials_out is not None:
            srv.write_credentials(args.credentials_out, account=args.account)
            print(f"credentials for account {args.account!r} written to {args.credentials_out}", flush=True)
        else:
            print(
                "no client config written; get one while this runs with: acdfuse serve "
                f"--data {shlex.quote(str(cfg.data_dir))} --credentials-only --credentials-out CDIR",
                flush=True,
            )
        print(f"acdfuse drive serving at {srv.base_url} (data: {cfg.data_dir})", flush=True)
        stop.wait()
    finally:
        srv.close()
    return 0


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
