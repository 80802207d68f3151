"""``acdfuse status`` and ``acdfuse sync``: ask a running mount through its control socket.

Each mount serves a unix socket in the run dir (runtime/control.py, beside its pid file). ``status``
prints what the mount reports (``--json`` as it came); with no mount point, every mount of this user
that left a pid file. ``sync`` asks for a sync and returns when it has ended, with a progress bar in
nodes per second on a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from acdfuse.common.xdg import XdgDirs
from acdfuse.runtime.config import format_size
from acdfuse.runtime.control import ControlError, request
from acdfuse.runtime.paths import ClientDirs
from acdfuse.runtime.pidfiles import MountRecord, pid_alive

STATUS_TIMEOUT = 30.0
SYNC_TIMEOUT = 3700.0       # the mount gives up after an hour (mount.SYNC_REQUEST_WAIT)


def add_arguments(name: str, subparsers: Any) -> None:
    if name == "status":
        p = subparsers.add_parser(
            "status", help="show what a mount is doing",
            description="Show a running mount's account, quota and usage, node count, last sync and its "
                        "outcome, cache size and hit rate, pending uploads and options. With no mount "
                        "point, every mount of this user.",
            epilog="exit status: 0 every mount answered; 1 a mount is not running or did not answer")
        p.add_argument("mountpoint", type=Path, nargs="?", help="the mount (default: all of them)")
        p.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
        p.set_defaults(run=run_status)
    elif name == "sync":
        p = subparsers.add_parser(
            "sync", help="sync a mount with the drive now",
            description="Sync the mount with the drive's changes now and return when the sync is done "
                        "(as `kill -USR1 <mount pid>`, but waiting). On a terminal it shows the nodes "
                        "read, in nodes per second. With no mount point, the only mount of this user.",
            epilog="exit status: 0 synced; 1 the sync failed or the mount did not answer")
        p.add_argument("mountpoint", type=Path, nargs="?", help="the mount (default: the only one)")
        p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
        p.set_defaults(run=run_sync)
    else:
        raise ValueError(f"acdfuse.cli_control has no sub-command {name!r}")


def _records(args: argparse.Namespace, dirs: ClientDirs) -> list[MountRecord]:
    if args.mountpoint is not None:
        return [MountRecord(dirs.run_dir, args.mountpoint.expanduser().resolve())]
    return [r for r in MountRecord.all(dirs.run_dir) if _alive(r)]


def _alive(record: MountRecord) -> bool:
    pid = record.read_pid()
    return pid is not None and pid_alive(pid)


def _ask(record: MountRecord, req: dict[str, Any], timeout: float, **kw: Any) -> dict[str, Any]:
    if not _alive(record):
        raise ControlError(f"{record.mountpoint} is not mounted by acdfuse")
    return request(record.control_socket, req, timeout, **kw)


# ----- status -----------------------------------------------------------------------------------

def run_status(args: argparse.Namespace, xdg: XdgDirs) -> int:
    dirs = ClientDirs.from_xdg(xdg)
    records = _records(args, dirs)
    out: list[dict[str, Any]] = []
    code = 0
    for record in records:
        try:
            out.append(_ask(record, {"op": "status"}, STATUS_TIMEOUT)["status"])
        except ControlError as exc:
            code = 1
            out.append({"mountpoint": str(record.mountpoint), "error": str(exc)})
    if args.json:
        print(json.dumps(out, indent=2))
    elif not out:
        print("acdfuse: no mounts")
    else:
        print("\n\n".join(_format_status(s) for s in out))
    return code


def _when(at: float | None) -> str:
    if at is None:
        return "not yet"
    ago = max(0.0, time.time() - at)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))} ({ago:.0f} s ago)"


def _format_status(s: dict[str, Any]) -> str:
    if "error" in s:
        return f"{s['mountpoint']}: {s['error']}"
    account, quota, sync, cache, pending = (s["account"], s["quota"], s["last_sync"], s["cache"],
                                            s["pending"])
    drive = "the bundled local drive" if account["bundled_drive"] else account["config_dir"]
    outcome = sync["state"] or "running"
    if sync["error"]:
        outcome += f": {sync['error']}"
    rate = cache["hit_rate"]
    lines = [
        f"{s['mountpoint']} (pid {s['pid']})",
        f"  account      {drive} at {account['server']}",
        f"  usage        {format_size(quota['used'])} used of {format_size(quota['total'])}, "
        f"{format_size(quota['available'])} free",
        f"  nodes        {s['nodes']}",
        f"  last sync    {_when(sync['at'])}, {outcome}",
        f"  cache        {format_size(cache['disk_bytes'])} on disk in {cache['disk_chunks']} chunks, "
        f"{format_size(cache['memory_bytes'])} in memory, hit rate "
        f"{'-' if rate is None else f'{rate:.0%}'} of {cache['reads']} reads",
        f"  pending      {pending['count']} uploads, {format_size(pending['bytes'])}",
    ]
    lines += [f"    failed     {f.get('path')}: {f.get('reason')}" for f in pending.get("failures", [])]
    opts = s["options"]
    shown = ("read_only", "interval", "cache_dir", "cache_size", "memory_cache", "read_ahead", "streams",
             "timeout", "uid", "gid", "umask", "allow_other", "fuse_options")
    lines.append("  options      " + ", ".join(f"{k}={opts[k]}" for k in shown if k in opts))
    return "\n".join(lines)


# ----- sync -------------------------------------------------------------------------------------

def run_sync(args: argparse.Namespace, xdg: XdgDirs) -> int:
    dirs = ClientDirs.from_xdg(xdg)
    records = _records(args, dirs)
    if not records:
        print("acdfuse sync: no mounts (name one: acdfuse sync MOUNTPOINT)", file=sys.stderr)
        return 1
    if len(records) > 1:
        names = ", ".join(str(r.mountpoint) for r in records)
        print(f"acdfuse sync: several mounts ({names}); name one: acdfuse sync MOUNTPOINT",
              file=sys.stderr)
        return 1
    record = records[0]
    bar = None
    if sys.stderr.isatty() and not args.quiet:
        # imported here: only a terminal needs it
        from tqdm import tqdm  # noqa: PLC0415
        bar = tqdm(desc=f"syncing {record.mountpoint}", unit=" nodes", file=sys.stderr)

    def on_progress(progress: dict[str, Any]) -> None:
        if bar is not None:
            bar.update(max(0, int(progress["nodes"]) - bar.n))

    try:
        answer = _ask(record, {"op": "sync"}, SYNC_TIMEOUT, on_progress=on_progress)
    except ControlError as exc:
        print(f"acdfuse sync: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    print(f"acdfuse: synced {record.mountpoint}: {answer['nodes']} changes read in "
          f"{answer['seconds']:.1f} s, {answer['total_nodes']} nodes")
    return 0
