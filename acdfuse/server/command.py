"""``acdfuse serve``: run the bundled drive server in the foreground until interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from acdfuse.server.config import ServerConfig
from acdfuse.server.server import DataDirBusy, DriveServer

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "acdfuse" / "server"


def add_arguments(name: str, subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help="serve a Cloud-Drive-compatible drive",
        description="Serve the Amazon Cloud Drive REST API v1.",
    )
    p.add_argument(
        "--data", type=Path, default=None, help="data directory (default: $XDG_DATA_HOME/acdfuse/server)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    p.add_argument("--token-lifetime", type=float, default=3600, help="access token lifetime in seconds")
    p.add_argument(
        "--credentials-out",
        type=Path,
        default=None,
        metavar="CDIR",
        help="write client credentials (endpoint_data, oauth_data, ...) for --account into CDIR",
    )
    p.add_argument("--account", default="default", help="account for --credentials-out (created if missing)")
    p.add_argument("--latency-ms", type=float, default=0, help="fault: latency added to every request")
    p.add_argument("--bandwidth", type=int, default=0, help="fault: bytes/s cap per connection (0: none)")
    p.add_argument("--error-rate", type=float, default=0.0, help="fault: share of 429/500/503 answers")
    p.add_argument("--cut-rate", type=float, default=0.0, help="fault: share of bodies cut mid-stream")
    p.add_argument("--fault-seed", type=int, default=None, help="fault: random seed for repeatable runs")
    p.add_argument(
        "--trash-retention",
        type=float,
        default=30 * 86400,
        help="seconds after which trashed nodes are purged (default 30 days; <0 disables)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name, value in (("--error-rate", args.error_rate), ("--cut-rate", args.cut_rate)):
        if not 0.0 <= value <= 1.0:
            print(f"acdfuse serve: {name} must be between 0 and 1", file=sys.stderr)
            return 2
    cfg = ServerConfig(
        data_dir=args.data or default_data_dir(),
        host=args.host,
        port=args.port,
        token_lifetime=args.token_lifetime,
        latency_ms=args.latency_ms,
        bandwidth=args.bandwidth,
        error_rate=args.error_rate,
        cut_rate=args.cut_rate,
        fault_seed=args.fault_seed,
        trash_retention=None if args.trash_retention < 0 else args.trash_retention,
    )
    srv = DriveServer(cfg)
    try:
        srv.start()
    except DataDirBusy as e:
        print(f"acdfuse serve: {e}", file=sys.stderr)
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
        if args.credentials_out is not None:
            srv.write_credentials(args.credentials_out, account=args.account)
            print(f"credentials for account {args.account!r} written to {args.credentials_out}", flush=True)
        print(f"acdfuse drive serving at {srv.base_url} (data: {cfg.data_dir})", flush=True)
        stop.wait()
    finally:
        srv.close()
    return 0
