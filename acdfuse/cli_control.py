"""``acdfuse status``, ``acdfuse sync`` and ``acdfuse cache``: ask a running mount through its control
socket, or manage a cache dir no mount uses.

Each mount serves a unix socket in the run dir (runtime/control.py, beside its pid file). ``status``
prints what the mount reports (``--json`` as it came); with no mount point, every mount of this user
that left a pid file. ``sync`` asks for a sync and returns when it has ended, with a progress bar in
nodes per second on a terminal. ``cache prune|clear`` shrinks or empties the chunk cache of a cache
dir: through the mount's socket when a mount uses it, else directly while holding the cache dir's lock
(so no mount starts meanwhile). Only the read cache's chunk files are touched: the node mirror, the
log, and whatever the write side keeps beside them (its journal and spool) are not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from acdfuse.common.locks import take_lock
from acdfuse.common.xdg import XdgDirs
from acdfuse.runtime.config import BadValue, parse_size
from acdfuse.runtime.control import ControlError, request
from acdfuse.runtime.paths import ClientDirs
from acdfuse.runtime.pidfiles import MountRecord, pid_alive
from acdfuse.vfs.diskcache import open_offline

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
    elif name == "cache":
        p = subparsers.add_parser(
            "cache", help="prune or clear the chunk cache",
            description="Shrink (prune --size SIZE, least recently used first) or empty (clear) the disk "
                        "chunk cache of a mount's cache dir. A mount using that cache dir does it itself "
                        "(asked through its control socket); otherwise the cache dir is locked meanwhile. "
                        "Only cached chunks of the drive's content go: the node mirror, the log and data "
                        "not yet uploaded are never touched.",
            epilog="exit status: 0 done; 1 no such cache or the mount did not answer")
        p.add_argument("action", choices=("prune", "clear"))
        p.add_argument("target", type=Path, nargs="?", metavar="MOUNTPOINT|CACHE_DIR",
                       help="a mount point of a running mount, or a cache dir (default: the default "
                            "cache dir of the configured drive, or of the bundled drive)")
        p.add_argument("--size", type=parse_size, metavar="SIZE",
                       help="prune: what the chunk cache may keep (e.g. 1G)")
        p.set_defaults(run=run_cache)
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
        # a mount that does not answer is an error message, on stderr like every other
        for s in out:
            if "error" in s:
                print(f"acdfuse status: {s['error']}", file=sys.stderr)
        shown = [s for s in out if "error" not in s]
        if shown:
            print("\n\n".join(_format_status(s) for s in shown))
    return code


def _when(at: float | None) -> str:
    if at is None:
        return "not yet"
    ago = max(0.0, time.time() - at)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))} ({ago:.0f} s ago)"


def _human(size: int) -> str:
    """'16.1 KiB', for people reading ``status`` and ``cache``: format_size is exact (it round-trips
    through the config) and would print 16512 for that."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _format_status(s: dict[str, Any]) -> str:
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
        f"  usage        {_human(quota['used'])} used of {_human(quota['total'])}, "
        f"{_human(quota['available'])} free",
        f"  nodes        {s['nodes']}",
        f"  last sync    {_when(sync['at'])}, {outcome}",
        f"  cache        {_human(cache['disk_bytes'])} on disk in {cache['disk_chunks']} chunks, "
        f"{_human(cache['memory_bytes'])} in memory, hit rate "
        f"{'-' if rate is None else f'{rate:.0%}'} of {cache['reads']} reads",
        f"  pending      {pending['count']} uploads, {_human(pending['bytes'])}",
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


# ----- cache ------------------------------------------------------------------------------------

def _default_cache_dir(dirs: ClientDirs) -> Path:
    # what `acdfuse mount` uses with no flags (cli_mount.resolve_drive): the configured account's, else
    # the bundled drive's
    if (dirs.config_dir / "oauth_data").is_file():
        return dirs.default_cache_dir(dirs.config_dir, embedded=False)
    return dirs.default_cache_dir(dirs.bundled.cdir, embedded=True)


def _mount_using(dirs: ClientDirs, cache_dir: Path) -> MountRecord | None:
    """The live mount whose cache dir is ``cache_dir``, asked through the control sockets."""
    for record in MountRecord.all(dirs.run_dir):
        if not _alive(record):
            continue
        try:
            status = _ask(record, {"op": "status"}, STATUS_TIMEOUT)["status"]
        except ControlError:
            continue
        if Path(status["options"]["cache_dir"]) == cache_dir:
            return record
    return None


def run_cache(args: argparse.Namespace, xdg: XdgDirs) -> int:
    dirs = ClientDirs.from_xdg(xdg)
    if args.action == "prune" and args.size is None:
        print("acdfuse cache: prune needs --size SIZE (e.g. --size 1G); clear empties it", file=sys.stderr)
        return 1
    size = 0 if args.action == "clear" else int(args.size)
    target = args.target.expanduser().resolve() if args.target is not None else None
    record = MountRecord(dirs.run_dir, target) if target is not None else None
    if record is None or not _alive(record):
        cache_dir = target if target is not None else _default_cache_dir(dirs)
        if not (cache_dir / "chunks").is_dir() and not (cache_dir / "lock").exists():
            what = ("the default cache dir" if target is None else "")
            print(f"acdfuse cache: {what + ' ' if what else ''}{cache_dir} is neither a running mount nor a "
                  f"cache dir (name a mount point or a mount's --cache-dir)", file=sys.stderr)
            return 1
        record = _mount_using(dirs, cache_dir)
        if record is None:
            return _offline(cache_dir, size)
    try:
        answer = _ask(record, {"op": "cache", "size": size}, STATUS_TIMEOUT)
    except ControlError as exc:
        print(f"acdfuse cache: {exc}", file=sys.stderr)
        return 1
    print(f"acdfuse: {record.mountpoint}: dropped {answer['dropped']} chunks, "
          f"{_human(answer['disk_bytes'])} cached on disk")
    return 0


def _offline(cache_dir: Path, size: int) -> int:
    try:
        lock_fd = take_lock(cache_dir / "lock")
    except BlockingIOError:
        # a mount holds it but did not answer on its socket (starting, or from another run dir)
        print(f"acdfuse cache: {cache_dir} is in use by a mount that does not answer; try again once it "
              f"is mounted, or unmount it first", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"acdfuse cache: cannot lock {cache_dir}: {exc}", file=sys.stderr)
        return 1
    try:
        cache = open_offline(cache_dir / "chunks")
        if cache is None:
            print(f"acdfuse: {cache_dir}: no chunks cached")
            return 0
        dropped = cache.prune(size)
        print(f"acdfuse: {cache_dir}: dropped {dropped} chunks, {_human(cache.used)} cached on disk")
        return 0
    except (OSError, BadValue) as exc:
        print(f"acdfuse cache: {cache_dir}: {exc}", file=sys.stderr)
        return 1
    finally:
        os.close(lock_fd)
