"""``acdfuse mount`` and ``acdfuse umount``: the composition root of a mount.

Builds one frozen Options from the command line, then wires the API client, the node store, the
content reader and the fusepy Operations, and runs FUSE. Without --foreground it starts itself again
as a detached child and returns once the mount answers.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acdfuse.runtime import daemon, embedded
from acdfuse.runtime.logsetup import setup_logging
from acdfuse.runtime.options import GiB, MiB, Options
from acdfuse.runtime.syncloop import QuotaCache, SyncLoop, block_sync_signal

log = logging.getLogger("acdfuse.mount")

BACKGROUND_MOUNT_TIMEOUT = 300.0   # the first sync of a big drive happens before the mount answers
UNMOUNT_WAIT = 60.0
FIRST_SYNC_FILE = "first-sync"     # the child's one-line notice about its first sync, for the parent
UNMOUNT_SYNC_WAIT = 5.0            # at unmount, how long a running sync may still take
NOTICE_WAIT = 3.0                  # how long a background mount waits for that notice at most


# ----- command line ---------------------------------------------------------------------------

def parse_size(text: str) -> int:
    """Bytes from '512M', '4G', '1048576', '64KiB' style sizes."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    factor = 1
    for suffix, mult in (("K", 1 << 10), ("M", MiB), ("G", GiB), ("T", 1 << 40)):
        if value.endswith(suffix):
            value, factor = value[:-1], mult
            break
    try:
        number = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 512M, 4G)") from exc
    if number < 0:
        raise argparse.ArgumentTypeError(f"size must not be negative: {text!r}")
    return int(number * factor)


def parse_octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an octal mask: {text!r}") from exc


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def add_arguments(name: str, subparsers: Any) -> None:
    if name == "mount":
        _add_mount_arguments(subparsers.add_parser(
            "mount", help="mount the drive as a local directory",
            description="Mount a Cloud Drive. With no --config-dir and no account configured, mount "
                        "the bundled local drive (started on a loopback port).",
            epilog=MOUNT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter))
    elif name == "umount":
        p = subparsers.add_parser(
            "umount", help="unmount a mounted drive",
            description="Unmount a drive mounted with `acdfuse mount` and wait until its mount process "
                        "has finished. A mount whose process was killed is detached. The bundled local "
                        "drive's server stops with the last mount that uses it (umount says so in one "
                        "line); one left running by killed mounts is stopped too.",
            epilog="exit status: 0 unmounted; 1 not mounted, busy (a process uses the mount) or the "
                   "mount process did not finish")
        p.add_argument("mountpoint", type=Path, help="where the drive is mounted")
        p.set_defaults(run=run_umount)
    else:
        raise ValueError(f"acdfuse.mount has no sub-command {name!r}")


MOUNT_EPILOG = """\
where things are:
  client config (CDIR)  oauth_data, endpoint_data, ...: written by
                        `acdfuse serve --credentials-out CDIR`, or an acd_cli cache dir
  bundled drive         data in $XDG_DATA_HOME/acdfuse/drive (~/.local/share/...), its client
                        config in $XDG_DATA_HOME/acdfuse/credentials (use it as CDIR with
                        acdfuse.api or acd_cli to put files on the drive). Its server runs
                        while any mount uses it and stops with the last `acdfuse umount`
  log                   acdfuse.log in the cache dir (--debug for more)
  new files on the drive show up after the next sync: every --interval seconds, or at once
  with `kill -USR1 <mount pid>`. The mount is read-only for now.
"""


def _add_mount_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("mountpoint", type=Path,
                   help="the directory to mount on (created when missing and its parent exists)")
    p.add_argument("--config-dir", type=Path, metavar="CDIR",
                   help="client config dir with oauth_data/endpoint_data (default: "
                        "$XDG_CONFIG_HOME/acdfuse; if it holds no account, the bundled drive is used)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="node mirror, chunk cache and log (default: one per drive under "
                        "$XDG_CACHE_HOME/acdfuse; a second mount of the same drive needs its own)")
    p.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    p.add_argument("--read-only", action="store_true",
                   help="mount read-only (for now every mount is: writing is not implemented yet, "
                        "changes get EROFS)")
    p.add_argument("--interval", type=positive_float, default=60.0, metavar="SECONDS",
                   help="seconds between background syncs (default 60); SIGUSR1 syncs at once")
    p.add_argument("--allow-other", action="store_true", help="let other users access the mount")
    p.add_argument("--uid", type=int, help="owner of all files (default: you)")
    p.add_argument("--gid", type=int, help="group of all files (default: yours)")
    p.add_argument("--umask", type=parse_octal, default=0o022, metavar="M", help="octal (default 022)")
    p.add_argument("-o", dest="fuse_options", action="append", default=[], metavar="OPTS",
                   help="extra FUSE mount options, comma separated (repeatable)")
    p.add_argument("--memory-cache", type=parse_size, default=256 * MiB, metavar="SIZE",
                   help="memory chunk cache budget (default 256M)")
    p.add_argument("--cache-size", type=parse_size, default=4 * GiB, metavar="SIZE",
                   help="disk chunk cache budget (default 4G)")
    p.add_argument("--read-ahead", type=parse_size, default=64 * MiB, metavar="SIZE",
                   help="largest read-ahead window per file (default 64M)")
    p.add_argument("--streams", type=int, default=4, metavar="N",
                   help="concurrent range requests of a read-ahead (default 4)")
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="SECONDS",
                   help="an uncached read fails with EIO after this long (default 30)")
    p.add_argument("--debug", action="store_true", help="verbose log")
    p.set_defaults(run=run_mount)


# ----- resolving the drive and the paths --------------------------------------------------------

def default_config_dir() -> Path:
    return embedded.xdg_dir("XDG_CONFIG_HOME", ".config") / "acdfuse"


def cache_root() -> Path:
    return embedded.xdg_dir("XDG_CACHE_HOME", ".cache") / "acdfuse"


def has_account(cdir: Path) -> bool:
    return (cdir / "oauth_data").is_file()


def resolve_drive(args: argparse.Namespace) -> tuple[Path, bool]:
    """(config dir, embedded?) — the bundled drive when no config dir is given and none is set up."""
    if args.config_dir is not None:
        cdir = args.config_dir.expanduser().resolve()
        # the bundled drive's own client config (which `mount` names when it starts it): a mount of it
        # must count as one of the bundled server's users, or unmounting another mount stops the server
        # under it
        return cdir, cdir == embedded.EmbeddedPaths(embedded.data_root()).cdir.resolve()
    cdir = default_config_dir()
    if has_account(cdir):
        return cdir, False
    return embedded.EmbeddedPaths(embedded.data_root()).cdir, True


def default_cache_dir(cdir: Path, is_embedded: bool) -> Path:
    # one cache per drive, so two accounts never share a mirror
    if is_embedded:
        return cache_root() / "embedded"
    digest = hashlib.sha1(str(cdir).encode()).hexdigest()[:12]
    return cache_root() / f"drive-{digest}"


def build_options(args: argparse.Namespace) -> Options:
    cdir, is_embedded = resolve_drive(args)
    cache_dir = (args.cache_dir.expanduser().resolve() if args.cache_dir is not None
                 else default_cache_dir(cdir, is_embedded))
    extra: list[str] = []
    for group in args.fuse_options:
        extra.extend(o.strip() for o in group.split(",") if o.strip())
    return Options(
        mountpoint=args.mountpoint.expanduser().resolve(),
        config_dir=cdir,
        cache_dir=cache_dir,
        foreground=args.foreground,
        read_only=args.read_only,
        interval=args.interval,
        allow_other=args.allow_other,
        uid=os.getuid() if args.uid is None else args.uid,
        gid=os.getgid() if args.gid is None else args.gid,
        umask=args.umask,
        fuse_options=tuple(extra),
        memory_cache=args.memory_cache,
        cache_size=args.cache_size,
        read_ahead=args.read_ahead,
        streams=max(1, args.streams),
        timeout=args.timeout,
        debug=args.debug,
        embedded=is_embedded,
    )


def child_argv(opts: Options) -> list[str]:
    """The foreground command a background mount runs: every setting spelled out."""
    argv = [sys.executable, "-m", "acdfuse", "mount", str(opts.mountpoint), "--foreground",
            "--cache-dir", str(opts.cache_dir), "--interval", str(opts.interval),
            "--uid", str(opts.uid), "--gid", str(opts.gid), "--umask", f"{opts.umask:o}",
            "--memory-cache", str(opts.memory_cache), "--cache-size", str(opts.cache_size),
            "--read-ahead", str(opts.read_ahead), "--streams", str(opts.streams),
            "--timeout", str(opts.timeout)]
    if not opts.embedded:
        argv += ["--config-dir", str(opts.config_dir)]
    for flag, on in (("--read-only", opts.read_only), ("--allow-other", opts.allow_other),
                     ("--debug", opts.debug)):
        if on:
            argv.append(flag)
    if opts.fuse_options:
        argv += ["-o", ",".join(opts.fuse_options)]
    return argv


def fuse_kwargs(opts: Options) -> dict[str, Any]:
    """Mount options for fusepy's FUSE(); each becomes one ``-o key[=value]``.

    libfuse2's high-level API takes attr_timeout/entry_timeout/negative_timeout (seconds, floats) and
    use_ino. The page cache is kept per open through fusepy's raw_fi (``fi.keep_cache``, set only while
    the content key is unchanged, see fs/handles.py) rather than ``kernel_cache`` (keeps stale pages
    after a remote change) or ``auto_cache`` (decides by mtime and size, which a same-size overwrite
    within one second of the old mtime would fool).
    """
    kw: dict[str, Any] = {
        "fsname": "acdfuse",
        "subtype": "acdfuse",
        "use_ino": True,              # the store's stable inode numbers, not libfuse's own
        "attr_timeout": opts.attr_timeout,
        "entry_timeout": opts.attr_timeout,
        "negative_timeout": opts.attr_timeout,
    }
    # writes are not implemented yet (every change gets EROFS): say so in the mount table too, so
    # `mount`/`findmnt` show ro; once the write side exists this follows opts.read_only
    kw["ro"] = True
    if opts.allow_other:
        kw["allow_other"] = True
        # other users: let the kernel enforce the modes we report
        kw["default_permissions"] = True
    for item in opts.fuse_options:
        key, sep, value = item.partition("=")
        kw[key] = value if sep else True
    return kw


# ----- mount ------------------------------------------------------------------------------------

def _fail(message: str) -> int:
    print(f"acdfuse mount: {message}", file=sys.stderr)
    return 1


def run_mount(args: argparse.Namespace) -> int:
    opts = build_options(args)
    mnt = opts.mountpoint
    if daemon.is_mounted(mnt):
        # a dead mount left by a killed mount process is cleaned; a live one (stat is not even tried
        # while its process runs: a stopped one would hang it) is the user's to unmount
        pid = daemon.read_pid_file(mnt)
        if (pid is None or not embedded.pid_alive(pid)) and daemon.is_dead_mount(mnt):
            problem = _clean_dead_mount(mnt, opts.embedded)
            if problem:
                return _fail(problem)
        else:
            return _fail(f"{mnt} is already a mount point (`acdfuse umount {mnt}` first)")
    # refused before anything is touched: a mount of another acdfuse process owns these
    if daemon.mountpoint_in_use(mnt):
        return _fail(f"another acdfuse process is mounting {mnt} right now")
    if cache_dir_in_use(opts.cache_dir):
        return _fail(cache_dir_busy(opts))
    if not opts.embedded and not has_account(opts.config_dir):
        return _fail(f"no credentials in {opts.config_dir} (oauth_data missing)")
    created = False
    if not mnt.exists() and mnt.parent.is_dir():
        # the README's first command names a fresh ~/CloudDrive: make it rather than refuse
        try:
            mnt.mkdir()
            created = True
        except FileExistsError:
            pass            # made meanwhile by a mount of the same point started at the same moment
        except OSError as exc:
            return _fail(f"cannot create the mount point {mnt}: {exc}")
    if not mnt.is_dir():
        return _fail(f"{mnt} is not a directory")
    code = run_foreground(opts) if opts.foreground else _run_background(opts)
    if code != 0 and created and not daemon.is_mounted(mnt) and not daemon.mountpoint_in_use(mnt):
        with contextlib.suppress(OSError):
            mnt.rmdir()     # a failed mount leaves no trace of the mount point it made
    return code


def _run_background(opts: Options) -> int:
    mnt = opts.mountpoint
    try:
        make_private_dir(opts.cache_dir)
    except OSError as exc:
        return _fail(f"cannot use the cache dir {opts.cache_dir}: {exc}")
    stderr_path = opts.cache_dir / "mount-stderr.log"
    with contextlib.suppress(OSError):
        (opts.cache_dir / FIRST_SYNC_FILE).unlink()
    code, detail = daemon.spawn_and_wait(child_argv(opts), mnt, stderr_path, BACKGROUND_MOUNT_TIMEOUT)
    if code != 0:
        return _report_child_failure(mnt, detail)
    if opts.embedded:
        paths = embedded.EmbeddedPaths(embedded.data_root())
        print(f"acdfuse: mounted the local drive at {mnt} (data in {paths.data}, client config in "
              f"{paths.cdir}; `acdfuse umount {mnt}` unmounts it and stops the server unless another "
              f"mount uses it)")
    for line in _notices(opts):
        print(f"acdfuse mount: {line}", file=sys.stderr)
    return 0


def _report_child_failure(mnt: Path, detail: str) -> int:
    """The background child's stderr, said once: its own "acdfuse mount:" line already names the
    mount point; anything else it printed (libfuse's messages) comes first, as it did."""
    lines = [line for line in detail.splitlines() if line.strip()]
    if any(line.startswith("acdfuse mount: ") for line in lines):
        print("\n".join(lines), file=sys.stderr)
        return 1
    if len(lines) <= 1:
        return _fail(f"cannot mount {mnt}: {lines[0] if lines else 'the mount process failed'}")
    print("\n".join(lines[:-1]), file=sys.stderr)
    return _fail(f"cannot mount {mnt}: {lines[-1]}")


def _clean_dead_mount(mnt: Path, embedded_next: bool) -> str:
    """Detach the dead mount a killed mount process left at mnt; an error message, or '' when done."""
    pid = daemon.read_pid_file(mnt)
    if pid is not None and embedded.pid_alive(pid):
        return (f"the mount at {mnt} does not answer but its process {pid} is still running; "
                f"stop it with `acdfuse umount {mnt}`")
    ok, err = daemon.unmount(mnt, lazy=True)
    if not ok:
        return f"a dead mount is left at {mnt} ({err}); run `acdfuse umount {mnt}` or `fusermount -uz {mnt}`"
    daemon.forget_pid_file(mnt)
    print(f"acdfuse mount: detached the dead mount at {mnt} (its mount process had died)", file=sys.stderr)
    if not embedded_next:
        _stop_orphaned_server()     # an embedded mount takes the orphaned bundled server over instead
    return ""


def make_private_dir(path: Path) -> None:
    """Create path (and missing parents) readable by the user alone: it holds drive content and names.

    Our own default cache dirs (under $XDG_CACHE_HOME/acdfuse) made open by an older version are
    closed; a cache dir the user chose is left as it is, with a warning when others can read it.
    """
    missing = [d for d in (path, *path.parents) if not d.exists()]
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
    root = cache_root()
    for d in (root, path) if path.parent == root else ():
        with contextlib.suppress(OSError):
            if d.stat().st_mode & 0o077:
                d.chmod(0o700)
    if not missing and path.stat().st_mode & 0o077:
        log.warning("%s is open to other users (mode %o); drive content cached there is readable by them "
                    "(chmod 700 %s)", path, path.stat().st_mode & 0o777, path)


def log_read_stats(stats: Callable[[], dict[str, int]]) -> None:
    """One log line at unmount: where the bytes read came from, to tell a slow link from a cold cache.

    Also when every read failed (the server was gone): that is when the line is wanted most.
    """
    s = stats()
    if not (s["reads"] or s["misses"] or s["fetch_errors"] or s["timeouts"]):
        return
    log.info("read %d bytes in %d reads (chunk lookups: %d found in memory, %d started a fetch); %d "
             "chunks loaded from the disk cache; fetched %d bytes in %d range requests (%d read-ahead), "
             "%d failed; %d reads timed out; disk cache now %d bytes in %d chunks (%d corrupt ones "
             "dropped, %d not written)", s["read_bytes"], s["reads"], s["hits"], s["misses"],
             s["disk_hits"], s["fetched_bytes"], s["fetches"], s["readahead_fetches"], s["fetch_errors"],
             s["timeouts"], s["disk_bytes"], s["disk_chunks"], s["disk_corrupt"], s["disk_skipped"])


def cache_dir_in_use(cache_dir: Path) -> bool:
    """Whether a mount holds the cache dir's lock (a probe: the lock is let go at once)."""
    try:
        return daemon.lock_held(cache_dir / "lock")
    except OSError:
        return False    # an unusable cache dir is reported when the mount tries to use it


def cache_dir_busy(opts: Options) -> str:
    if opts.cache_dir == default_cache_dir(opts.config_dir, opts.embedded):
        # the default is one per drive, so a second mount of the same drive lands here
        return (f"the cache dir {opts.cache_dir} is in use by another mount of this drive; give this "
                f"mount its own with --cache-dir DIR")
    return f"the cache dir {opts.cache_dir} is in use by another mount; choose another --cache-dir"


def lock_cache_dir(cache_dir: Path) -> int:
    """An exclusive lock on the cache dir for the mount's lifetime: two mounts must not share it."""
    make_private_dir(cache_dir)
    return daemon.take_lock(cache_dir / "lock")


def run_foreground(opts: Options) -> int:
    """Mount and serve until unmounted; the process that owns the mount."""
    try:
        lock_fd = lock_cache_dir(opts.cache_dir)
    except BlockingIOError:
        return _fail(cache_dir_busy(opts))
    except OSError as exc:
        return _fail(f"cannot use the cache dir {opts.cache_dir}: {exc}")
    try:
        # held until this process ends: a second mount started at the same moment on the same mount
        # point stops here, and `umount`/`mount` know a listed mount without it is dead
        mnt_lock_fd = daemon.lock_mountpoint(opts.mountpoint)
    except BlockingIOError:
        os.close(lock_fd)
        return _fail(f"another acdfuse process is mounting {opts.mountpoint} right now")
    # a terminal gets warnings too; a background mount's stderr is a file nobody rotates
    setup_logging(opts.log_file, opts.debug, to_stderr=sys.stderr.isatty())
    # before any thread exists, so every thread inherits the mask (see runtime/syncloop.py)
    block_sync_signal()
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(os.close, lock_fd)
            stack.callback(os.close, mnt_lock_fd)
            return _serve(opts, stack)
    except MountError as exc:
        log.error("cannot mount %s: %s", opts.mountpoint, exc)
        return _fail(f"cannot mount {opts.mountpoint}: {exc}")


class MountError(Exception):
    """A reason the mount cannot start, told to the user in one line."""


def _embedded_server(stack: contextlib.ExitStack, mountpoint: Path) -> None:
    """Use the bundled server (the running one, or one started now) until this mount ends; the last
    mount to end stops it (see embedded.py: file locks count the mounts, a killed one included)."""
    paths = embedded.EmbeddedPaths(embedded.data_root())
    try:
        lease = embedded.join(paths, mountpoint)
    except embedded.EmbeddedError as exc:
        raise MountError(str(exc)) from exc
    stack.callback(_leave_embedded, lease)
    log.info("using the embedded drive at %s (data %s)", lease.state.base_url, paths.data)


def _leave_embedded(lease: embedded.Lease) -> None:
    try:
        lease.leave()
    except (embedded.EmbeddedError, OSError) as exc:
        # the server keeps running; the next `acdfuse umount` or mount stops it when nobody uses it
        log.warning("could not give up the embedded server: %s", exc)


def _serve(opts: Options, stack: contextlib.ExitStack) -> int:
    # imported here: `acdfuse umount` and `--help` need neither libfuse nor the client stack
    from fuse import FUSE  # noqa: PLC0415

    from acdfuse.api.client import ACDClient  # noqa: PLC0415
    from acdfuse.api.common import RequestError  # noqa: PLC0415
    from acdfuse.fs.attrs import Ownership  # noqa: PLC0415
    from acdfuse.fs.fetcher import PinnedFetch  # noqa: PLC0415
    from acdfuse.fs.operations import DriveOperations  # noqa: PLC0415
    from acdfuse.store import NodeStore, StoreError  # noqa: PLC0415
    from acdfuse.vfs import ContentReader, ReaderOptions  # noqa: PLC0415

    if opts.embedded:
        _embedded_server(stack, opts.mountpoint)

    client = ACDClient(str(opts.config_dir), timeout=(min(10.0, opts.timeout), opts.timeout),
                       retry_deadline=opts.timeout)
    store = NodeStore(opts.db_path)
    try:
        store.open()
    except StoreError as exc:
        raise MountError(f"the node mirror {opts.db_path} cannot be opened: {exc}") from exc
    stack.callback(store.close)

    def sync() -> Any:
        return store.sync(client.get_changes)

    synced_before_mount = False
    if store.is_empty:
        # nothing to serve offline: the first sync must succeed before the mount appears
        try:
            sync()
        except (RequestError, StoreError) as exc:
            refused = refused_credentials(exc)
            if refused is not None:
                raise MountError(refused_message(opts, refused)) from exc
            raise MountError(f"the local mirror is empty and the server did not answer: {exc}") from exc
        synced_before_mount = True
        write_first_sync_notice(opts, "")

    loop_ref: list[SyncLoop] = []

    def on_stale(node_id: str) -> None:
        if loop_ref:
            loop_ref[0].request_sync()

    # each range pinned to its handle's content: newer content on the server is ESTALE, never a mix
    fetch = PinnedFetch(client.download_chunk, opts.timeout, on_stale=on_stale,
                        probe=lambda: server_accepts(client, min(1.0, opts.timeout / 4)))

    reader = ContentReader(fetch, ReaderOptions(
        cache_dir=opts.chunk_dir, memory_cache=opts.memory_cache, cache_size=opts.cache_size,
        read_ahead=opts.read_ahead, streams=opts.streams, timeout=opts.timeout))
    reader.start()
    stack.callback(reader.close)
    stack.callback(log_read_stats, reader.stats)   # runs first: what this mount read, for the log

    quota = QuotaCache()
    owner = Ownership(opts.uid, opts.gid, opts.umask, writable=False)
    ops = DriveOperations(store, reader, quota, owner)

    def on_synced(result: Any) -> None:
        # derived state (link counts, chunks of old content) goes when the tree moved
        if result.reset or result.stored or result.purged:
            ops.invalidate(None if result.reset else result.changed)
        log.debug("sync: %s", result)

    said_offline: list[bool] = []

    def report_first(exc: BaseException | None) -> None:
        if exc is not None and said_offline and refused_credentials(exc) is None:
            return      # "offline" was said already, before the mount
        write_first_sync_notice(opts, first_sync_notice(opts, exc))

    loop = SyncLoop(sync, fetch_quota=client.fs_sizes, quota=quota, on_synced=on_synced,
                    interval=opts.interval, quota_interval=opts.quota_interval,
                    sync_first=not synced_before_mount,
                    on_first=report_first)
    loop_ref.append(loop)
    if synced_before_mount:
        loop.refresh_quota()
    elif not server_accepts(client, min(1.0, opts.timeout / 4)):
        # said at once: the first sync of an unreachable server ends only after the client's retries
        write_first_sync_notice(opts, first_sync_notice(
            opts, ConnectionError(f"the server at {client_base(client)} does not accept connections")))
        said_offline.append(True)
    loop.start()
    # an unmount must not wait for a sync stuck in retries against an unreachable server
    stack.callback(loop.close, min(opts.timeout, UNMOUNT_SYNC_WAIT))

    daemon.write_pid_file(opts.mountpoint, embedded=opts.embedded)
    stack.callback(daemon.remove_pid_file, opts.mountpoint)
    log.info("mounting %s (config %s, cache %s)", opts.mountpoint, opts.config_dir, opts.cache_dir)
    try:
        FUSE(ops, str(opts.mountpoint), raw_fi=True, foreground=True, **fuse_kwargs(opts))
    except RuntimeError as exc:
        raise MountError(f"libfuse refused the mount ({exc}); see the messages above") from exc
    log.info("unmounted %s", opts.mountpoint)
    return 0


# statuses that mean "the server answered and refused these credentials"
REFUSED_STATUSES = frozenset({401, 403, 1004, 1005})   # + RequestError.CODE.REFRESH_FAILED, INVALID_TOKEN


def refused_credentials(exc: BaseException) -> BaseException | None:
    """The API error in exc's chain that says the credentials were refused, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if int(getattr(current, "status_code", 0) or 0) in REFUSED_STATUSES:
            return current
        current = current.__cause__ or current.__context__
    return None


def refused_message(opts: Options, exc: BaseException) -> str:
    how = ("restart the mount so the bundled server writes new ones" if opts.embedded
           else f"get new ones with `acdfuse serve --credentials-out {opts.config_dir}` (or log in again)")
    why = getattr(exc, "msg", None) or exc
    return f"the server refused the credentials in {opts.config_dir} ({why}); {how}"


def first_sync_notice(opts: Options, exc: BaseException | None) -> str:
    """One line for the console about the first sync of a warm mirror; '' when it went well."""
    if exc is None:
        return ""
    refused = refused_credentials(exc)
    if refused is not None:
        return (f"mounted offline from the local mirror (only cached files can be read): "
                f"{refused_message(opts, refused)}")
    return (f"mounted offline from the local mirror (only cached files can be read; it syncs when "
            f"the server answers): {exc}")


def write_first_sync_notice(opts: Options, notice: str) -> None:
    """Tell the background parent (which prints it) how the first sync went; a console gets it now."""
    if notice:
        log.warning("%s", notice)
        if not sys.stderr.isatty():   # a terminal already got the warning through logging
            print(f"acdfuse mount: {notice}", file=sys.stderr)
    path = opts.cache_dir / FIRST_SYNC_FILE
    try:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(notice)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write %s: %s", path, exc)


def _notices(opts: Options) -> list[str]:
    """The child's first-sync notice, waited for a little: '' prints nothing."""
    path = opts.cache_dir / FIRST_SYNC_FILE
    deadline = time.monotonic() + min(opts.timeout, NOTICE_WAIT)
    while True:
        try:
            text = path.read_text().strip()
        except OSError:
            text = None
        if text is not None:
            return [text] if text else []
        if time.monotonic() >= deadline:
            return ["the first sync with the server is still running; until it ends the mount serves the "
                    f"local mirror (see {opts.log_file})"]
        time.sleep(0.05)


def client_base(client: Any) -> str:
    """scheme://host:port of the content server, for messages."""
    try:
        url = urllib.parse.urlsplit(client.content_url)
    except Exception:  # endpoint discovery failed: nothing better to name
        return "(unknown address)"
    return f"{url.scheme}://{url.netloc}"


def server_accepts(client: Any, timeout: float) -> bool:
    """Whether the content server accepts a TCP connection now (cheap: no request, no retries)."""
    try:
        url = urllib.parse.urlsplit(client.content_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        with socket.create_connection((url.hostname or "localhost", port), timeout=timeout):
            return True
    except (OSError, ValueError) as exc:
        log.debug("the content server does not accept connections: %s", exc)
        return False
    except Exception as exc:  # endpoint discovery failed: no server to ask
        log.debug("no content server address: %r", exc)
        return False


# ----- umount -----------------------------------------------------------------------------------

def run_umount(args: argparse.Namespace) -> int:
    mnt = args.mountpoint.expanduser().resolve()
    pid = daemon.read_pid_file(mnt)
    was_embedded = daemon.pid_file_embedded(mnt)
    # read before the mount process ends: it may stop the server on its way out
    before = embedded.server_process(embedded.EmbeddedPaths(embedded.data_root())) if was_embedded else None
    if daemon.is_mounted(mnt):
        # a dead mount (its process was killed) may still be held open: detach it lazily then
        dead = (pid is None or not embedded.pid_alive(pid)) and daemon.is_dead_mount(mnt)
        ok, err = daemon.unmount(mnt, lazy=dead)
        if not ok:
            print(f"acdfuse umount: cannot unmount {mnt}: {err}", file=sys.stderr)
            return 1
        if dead:
            daemon.forget_pid_file(mnt)
    elif pid is None or not embedded.pid_alive(pid):
        daemon.forget_pid_file(mnt)
        print(f"acdfuse umount: {mnt} is not mounted", file=sys.stderr)
        _stop_orphaned_server()
        return 1
    # the mount process finishes its shutdown (and stops the bundled server if it was its last user)
    # before we return
    if pid is not None and not daemon.wait_for_exit(pid, UNMOUNT_WAIT):
        print(f"acdfuse umount: the mount process {pid} is still shutting down", file=sys.stderr)
        return 1
    _stop_orphaned_server(before)
    return 0


def _stop_orphaned_server(before: embedded.ServerState | None = None) -> None:
    """Stop a bundled server no live mount uses (its mounts were killed) and say so in one line.

    ``before`` is the server an embedded mount used before it was unmounted: then the line also says
    whether that mount's process stopped it (it was the last user) or it runs on for other mounts.
    """
    paths = embedded.EmbeddedPaths(embedded.data_root())
    try:
        settled = embedded.settle(paths)
    except (embedded.EmbeddedError, OSError) as exc:
        print(f"acdfuse umount: cannot check the local drive's server: {exc}", file=sys.stderr)
        return
    if settled.running is not None and settled.users:
        if before is not None:
            n = len(settled.users)
            print(f"acdfuse: left the local drive's server running for {n} other "
                  f"mount{'s' if n > 1 else ''} ({', '.join(settled.users)})")
    elif settled.stopped is not None or (before is not None and not embedded.pid_alive(before.pid)):
        # stopped here, or by the mount process when it found itself the last user
        print("acdfuse: stopped the local drive's server (no other mount uses it)")
