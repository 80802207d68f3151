"""``acdfuse mount`` and ``acdfuse umount``: the command line front of a mount.

Builds one frozen Options from the flags and the XDG dirs (read once by ``acdfuse.cli``), checks what
can be checked before anything is touched, and prints what the user needs to know. Without
--foreground it starts itself again as a detached child and returns once the mount answers; with it,
it takes the cache dir and mount point locks and hands over to the composition root (``mount.run``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from acdfuse.common.locks import lock_held, take_lock
from acdfuse.common.xdg import XdgDirs
from acdfuse.runtime import daemon, embedded, sdnotify
from acdfuse.runtime.config import (
    CONFIG_NAME,
    SETTINGS,
    ConfigError,
    format_size,
    load_config,
    non_negative_float,
    parse_o_options,
    parse_octal,
    parse_size,
    positive_float,
)
from acdfuse.runtime.logsetup import setup_logging
from acdfuse.runtime.notice import forget_first_sync_notice, read_first_sync_notice
from acdfuse.runtime.options import Options
from acdfuse.runtime.paths import ClientDirs, make_cache_dir
from acdfuse.runtime.pidfiles import MountRecord, pid_alive, wait_for_exit
from acdfuse.runtime.syncloop import block_sync_signal
from acdfuse.store.journal import JournalError, PendingSummary, pending_summary

log = logging.getLogger(__name__)

BACKGROUND_MOUNT_TIMEOUT = 300.0   # the first sync of a big drive happens before the mount answers
UNMOUNT_WAIT = 60.0
UPLOAD_POLL = 0.5                  # how often umount looks at the uploads it waits for
PROGRESS_EVERY = 5.0               # a progress line at most this often when stderr is not a terminal
# below this much free space on the cache dir's disk a mount cannot even write its node mirror and log
MIN_FREE = 256 * 1024

# ----- command line ---------------------------------------------------------------------------

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
                        "has finished. Files written and closed but not uploaded yet are uploaded first "
                        "(umount shows how many are left); with --force they stay in the write journal "
                        "for the next mount. A mount whose process was killed is detached. The bundled "
                        "local drive's server stops with the last mount that uses it (umount says so in "
                        "one line); one left running by killed mounts is stopped too.",
            epilog="exit status: 0 unmounted; 1 not mounted, busy (a process uses the mount) or the "
                   "mount process did not finish; 130 interrupted while waiting for uploads (still "
                   "mounted, nothing lost)")
        p.add_argument("mountpoint", type=Path, help="where the drive is mounted")
        p.add_argument("--force", action="store_true",
                       help="unmount without waiting for uploads: what is not uploaded yet stays in the "
                            "write journal and the next mount with the same cache dir uploads it")
        p.set_defaults(run=run_umount)
    else:
        raise ValueError(f"acdfuse.cli_mount has no sub-command {name!r}")


MOUNT_EPILOG = """\
where things are:
  client config (CDIR)  oauth_data, endpoint_data, ...: written by
                        `acdfuse serve --credentials-out CDIR`, or an acd_cli cache dir
  bundled drive         data in $XDG_DATA_HOME/acdfuse/drive (~/.local/share/...), its client
                        config in $XDG_DATA_HOME/acdfuse/credentials (use it as CDIR with
                        acdfuse.api or acd_cli to put files on the drive). Its server runs
                        while any mount uses it and stops with the last `acdfuse umount`
  log                   acdfuse.log in the cache dir (--debug for more)
  config file           $XDG_CONFIG_HOME/acdfuse/config.toml: `key = value` defaults for any
                        option above (interval = 30, cache_size = "8G", ...); -o key=value on the
                        command line beats the file, a flag beats -o
  new files on the drive show up after the next sync: every --interval seconds, or at once
  with `acdfuse sync MOUNTPOINT` (waits for it) or `kill -USR1 <mount pid>`. SIGTERM unmounts
  cleanly. `acdfuse status` shows what a mount is doing.
writing:
  written files go to a spool in the cache dir and are uploaded --upload-delay seconds after
  their last close (fsync waits for the upload). What is not uploaded yet is kept in the write
  journal (journal.db in the cache dir) and uploaded by the next mount with that cache dir;
  `acdfuse umount` waits for the uploads first (--force leaves them in the journal).
"""


def _add_mount_arguments(p: argparse.ArgumentParser) -> None:
    # every default comes from Options (and through it from ReaderOptions): defined once. The flags
    # themselves default to None, so build_options knows which were given: a given flag beats -o,
    # which beats the config file, which beats the default.
    d = Options
    p.add_argument("mountpoint", type=Path,
                   help="the directory to mount on (created when missing and its parent exists)")
    p.add_argument("--config", type=Path, metavar="FILE", dest="config_file",
                   help=f"config file with defaults for these options (default: $XDG_CONFIG_HOME/acdfuse/"
                        f"{CONFIG_NAME}, used when it exists)")
    # the background child gets every setting spelled out and must not add the file's fuse_options again
    p.add_argument("--no-config", action="store_true", help=argparse.SUPPRESS)
    # the background child's end of the pipe on which its parent follows the first sync (ProgressPipe)
    p.add_argument("--progress-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--config-dir", type=Path, metavar="CDIR",
                   help="client config dir with oauth_data/endpoint_data (default: "
                        "$XDG_CONFIG_HOME/acdfuse; if it holds no account, the bundled drive is used)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help="node mirror, chunk cache and log (default: one per drive under "
                        "$XDG_CACHE_HOME/acdfuse; a second mount of the same drive needs its own)")
    p.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    p.add_argument("--read-only", action="store_true", default=None,
                   help="mount read-only: every change gets EROFS, and the mount table says ro")
    p.add_argument("--upload-delay", type=non_negative_float, metavar="SECONDS",
                   help=f"upload a written file this long after its last close, so a file rewritten in "
                        f"the meantime goes up once and a short-lived one never (default "
                        f"{d.upload_delay:g})")
    p.add_argument("--interval", type=positive_float, metavar="SECONDS",
                   help=f"seconds between background syncs (default {d.interval:g}); SIGUSR1 syncs at once")
    p.add_argument("--allow-other", action="store_true", default=None,
                   help="let other users access the mount")
    p.add_argument("--nonempty", action="store_true", default=None,
                   help="mount over a folder that has files in it (hidden while mounted; refused "
                        "without this)")
    p.add_argument("--uid", type=int,
                   help="owner of the files and folders with no owner of their own on the drive "
                        "(default: you)")
    p.add_argument("--gid", type=int,
                   help="group of the files and folders with no group of their own on the drive (default: "
                        "yours)")
    p.add_argument("--umask", type=parse_octal, metavar="M",
                   help=f"octal mask taken off the modes of files and folders that have no mode of their "
                        f"own on the drive (default {d.umask:03o})")
    p.add_argument("-o", dest="fuse_options", action="append", default=[], metavar="OPTS",
                   help="options, comma separated (repeatable), as with sshfs: KEY=VALUE for any option "
                        "of the config file (e.g. -o interval=30,cache_size=8G,ro); anything else "
                        "goes to libfuse")
    p.add_argument("--memory-cache", type=parse_size, metavar="SIZE",
                   help=f"memory chunk cache budget (default {format_size(d.memory_cache)})")
    p.add_argument("--cache-size", type=parse_size, metavar="SIZE",
                   help=f"disk chunk cache budget (default {format_size(d.cache_size)})")
    p.add_argument("--read-ahead", type=parse_size, metavar="SIZE",
                   help=f"largest read-ahead window per file (default {format_size(d.read_ahead)})")
    p.add_argument("--streams", type=int, metavar="N",
                   help=f"concurrent range requests of a read-ahead (default {d.streams})")
    p.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                   help=f"an uncached read fails with EIO after this long (default {d.timeout:g})")
    p.add_argument("--debug", action="store_true", default=None,
                   help="verbose log, and the traceback behind an error message")
    p.set_defaults(run=run_mount)


# -o spellings that are not a setting's own name (runtime/config.py's aliases), for the table below
_O_ONLY = (("ro / rw", "`-o ro`, `-o rw`", "rw", "the same as read_only = true / false"),
           ("any other", "`-o NAME[=VALUE]`", "", "goes to libfuse as given (fuse_options)"))


def options_table() -> str:
    """Every mount option as a Markdown table, from the settings (runtime/config.py), Options' defaults
    and the parser's flags and help texts: the README's table is this text (a test checks it).

    Reads the parser's actions (``_actions``: argparse lists them nowhere public) so that a new flag or
    setting shows up here with no second list to keep."""
    parser = argparse.ArgumentParser(prog="acdfuse mount")
    _add_mount_arguments(parser)
    by_dest = {a.dest: a for a in parser._actions if a.help != argparse.SUPPRESS}
    rows = ["| config file key | flag | default | what it does |", "|---|---|---|---|"]

    def flag_of(action: argparse.Action) -> str:
        metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
        return ", ".join(f"`{o}{metavar}`" for o in action.option_strings)

    def split_help(action: argparse.Action) -> tuple[str, str]:
        """(help without its "(default X)", X); a switch without one is off unless given."""
        text = action.help or ""
        found = re.search(r" ?\(default:? ([^)]*)\)", text)
        if found is None:
            return text, "off" if action.nargs == 0 else ""
        return (text[:found.start()] + text[found.end():]).strip(), found.group(1)

    for name, setting in SETTINGS.items():
        action = by_dest.get(name)
        if name == "fuse_options" or action is None:
            rows.append(f"| `{name}` | `-o NAME[=VALUE]` |  | {setting.doc}, passed as given |")
            continue
        text, default = split_help(action)
        rows.append(f"| `{name}` | {flag_of(action)} | {default} | {text} |")
    for dest in ("config_file", "foreground", "fuse_options"):
        action = by_dest[dest]
        text, default = split_help(action)
        if dest == "fuse_options":
            text = text.replace("anything else goes to libfuse", "see the next rows")
        rows.append(f"| (command line only) | {flag_of(action)} | {default} | {text} |")
    for key, flag, default, text in _O_ONLY:
        rows.append(f"| ({key}) | {flag} | {default} | {text} |")
    return "\n".join(rows) + "\n"


# ----- resolving the drive and the paths --------------------------------------------------------

def has_account(cdir: Path) -> bool:
    return (cdir / "oauth_data").is_file()


def config_file(args: argparse.Namespace, dirs: ClientDirs) -> Path | None:
    """The config file this mount reads: --config FILE, else the default one (None: --no-config)."""
    if getattr(args, "no_config", False):
        return None
    if getattr(args, "config_file", None) is not None:
        return Path(args.config_file).expanduser()
    return dirs.config_dir / CONFIG_NAME


def mount_settings(args: argparse.Namespace, dirs: ClientDirs) -> dict[str, Any]:
    """The settings of this mount by precedence: config file < -o < flags. Raises ConfigError."""
    path = config_file(args, dirs)
    settings = load_config(path) if path is not None else {}
    if path is not None and args.config_file is not None and not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    from_o, fuse = parse_o_options(args.fuse_options)
    settings["fuse_options"] = (*settings.get("fuse_options", ()), *fuse)
    settings.update(from_o)
    for name in SETTINGS:
        value = getattr(args, name, None)
        if name != "fuse_options" and value is not None:
            settings[name] = value
    return settings


def resolve_drive(settings: dict[str, Any], dirs: ClientDirs) -> tuple[Path, bool]:
    """(config dir, embedded?) — the bundled drive when no config dir is given and none is set up."""
    if settings.get("config_dir") is not None:
        cdir = Path(settings["config_dir"]).expanduser().resolve()
        # the bundled drive's own client config (which `mount` names when it starts it): a mount of it
        # must count as one of the bundled server's users, or unmounting another mount stops the server
        # under it
        return cdir, cdir == dirs.bundled.cdir.resolve()
    if has_account(dirs.config_dir):
        return dirs.config_dir, False
    return dirs.bundled.cdir, True


def build_options(args: argparse.Namespace, dirs: ClientDirs) -> Options:
    """The one Options of this mount, from the config file, -o and the flags. Raises ConfigError."""
    settings = mount_settings(args, dirs)
    cdir, is_embedded = resolve_drive(settings, dirs)
    cache_dir = settings.pop("cache_dir", None)
    settings.pop("config_dir", None)
    if "streams" in settings:
        settings["streams"] = max(1, settings["streams"])
    return Options(
        mountpoint=args.mountpoint.expanduser().resolve(),
        config_dir=cdir,
        cache_dir=(Path(cache_dir).expanduser().resolve() if cache_dir is not None
                   else dirs.default_cache_dir(cdir, is_embedded)),
        run_dir=dirs.run_dir,
        foreground=args.foreground,
        embedded=dirs.bundled if is_embedded else None,
        **settings,
    )


def child_argv(opts: Options) -> list[str]:
    """The foreground command a background mount runs: every setting spelled out."""
    argv = [sys.executable, "-m", "acdfuse", "mount", str(opts.mountpoint), "--foreground", "--no-config",
            "--cache-dir", str(opts.cache_dir), "--interval", str(opts.interval),
            "--uid", str(opts.uid), "--gid", str(opts.gid), "--umask", f"{opts.umask:o}",
            "--memory-cache", str(opts.memory_cache), "--cache-size", str(opts.cache_size),
            "--read-ahead", str(opts.read_ahead), "--streams", str(opts.streams),
            "--timeout", str(opts.timeout), "--upload-delay", str(opts.upload_delay)]
    if not opts.embedded:
        argv += ["--config-dir", str(opts.config_dir)]
    for flag, on in (("--read-only", opts.read_only), ("--allow-other", opts.allow_other),
                     ("--nonempty", opts.nonempty), ("--debug", opts.debug)):
        if on:
            argv.append(flag)
    if opts.fuse_options:
        argv += ["-o", ",".join(opts.fuse_options)]
    return argv


# ----- mount ------------------------------------------------------------------------------------

def _fail(message: str) -> int:
    print(f"acdfuse mount: {message}", file=sys.stderr)
    return 1


def run_mount(args: argparse.Namespace, xdg: XdgDirs) -> int:
    dirs = ClientDirs.from_xdg(xdg)
    try:
        opts = build_options(args, dirs)
    except ConfigError as exc:
        return _fail(str(exc))
    mnt = opts.mountpoint
    record = MountRecord(opts.run_dir, mnt)
    if daemon.is_mounted(mnt):
        # a dead mount left by a killed mount process is cleaned; a live one (stat is not even tried
        # while its process runs: a stopped one would hang it) is the user's to unmount
        pid = record.read_pid()
        if (pid is None or not pid_alive(pid)) and daemon.is_dead_mount(record):
            problem = _clean_dead_mount(record, dirs, opts.embedded is not None)
            if problem:
                return _fail(problem)
        else:
            return _fail(f"{mnt} is already a mount point (`acdfuse umount {mnt}` first)")
    # refused before anything is touched: a mount of another acdfuse process owns these
    if record.in_use():
        return _fail(f"another acdfuse process is mounting {mnt} right now")
    if cache_dir_in_use(opts.cache_dir):
        return _fail(cache_dir_busy(opts, dirs))
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
    if not mnt.exists():
        return _fail(f"{mnt} does not exist, nor does its parent folder: create them first "
                     f"(`mkdir -p {mnt}`)")
    if not mnt.is_dir():
        return _fail(f"{mnt} is not a directory")
    if not opts.nonempty and not created and _has_entries(mnt):
        # libfuse 3 would mount over it and hide its files until the unmount: most likely a wrong path
        return _fail(f"{mnt} is not empty; its files would be hidden while the drive is mounted there: "
                     f"choose an empty folder, or add -o nonempty to mount over it anyway")
    full = disk_full(opts.cache_dir)
    if full:
        return _fail(f"cannot mount {mnt}: {full}")
    code = (run_foreground(opts, dirs, getattr(args, "progress_fd", None)) if opts.foreground
            else _run_background(opts, dirs, record))
    if code != 0 and created and not daemon.is_mounted(mnt) and not record.in_use():
        with contextlib.suppress(OSError):
            mnt.rmdir()     # a failed mount leaves no trace of the mount point it made
    return code


def disk_full(cache_dir: Path) -> str:
    """What to tell the user when the disk of the cache dir (or of its nearest existing parent) has no
    room for a mount; '' when it has."""
    probe = cache_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return ""           # an unusable cache dir is reported when the mount tries to use it
    free = st.f_bavail * st.f_frsize
    if free >= MIN_FREE or st.f_blocks == 0:    # no blocks at all: /proc and the like, not a disk
        return ""
    return (f"the disk of the cache dir {cache_dir} is full ({free // 1024} KiB free): free some space "
            f"there, or give the mount another --cache-dir")


def _has_entries(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except OSError:
        return False        # unreadable: libfuse says what is wrong with it when it mounts


def _run_background(opts: Options, dirs: ClientDirs, record: MountRecord) -> int:
    mnt = opts.mountpoint
    try:
        make_cache_dir(opts.cache_dir, dirs.cache_root)
    except OSError as exc:
        return _fail(f"cannot use the cache dir {opts.cache_dir}: {exc}")
    stderr_path = opts.cache_dir / "mount-stderr.log"
    forget_first_sync_notice(opts.cache_dir)
    argv = child_argv(opts)
    progress = None
    bar = FirstSyncBar(opts.mountpoint)
    if sys.stderr.isatty():
        # a terminal sees the first sync of a big drive go by; a file or pipe gets no bar
        read_end, write_end = os.pipe()
        progress = (write_end, daemon.ProgressReader(read_end, bar.update))
        argv += ["--progress-fd", str(write_end)]
    try:
        # --debug: all the child said (its traceback); otherwise its last lines (libfuse's complaints)
        code, detail = daemon.spawn_and_wait(argv, record, stderr_path, BACKGROUND_MOUNT_TIMEOUT,
                                             detail_lines=10_000 if opts.debug else 15, progress=progress)
    except KeyboardInterrupt:
        bar.close()
        # the child runs in its own session: Ctrl-C reached only this waiting parent
        print(f"acdfuse mount: interrupted; the mount of {mnt} goes on in the background (`acdfuse "
              f"status` shows it, `acdfuse umount {mnt}` stops it)", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if code != 0:
        full = disk_full(opts.cache_dir)
        if full:
            # the child could not even write why it failed: its stderr file is on that disk
            return _fail(f"cannot mount {mnt}: {full}")
        return _report_child_failure(mnt, detail, debug=opts.debug)
    if opts.embedded:
        paths = opts.embedded
        print(f"acdfuse: mounted the local drive at {mnt} (data in {paths.data}, client config in "
              f"{paths.cdir}; `acdfuse umount {mnt}` unmounts it and stops the server unless another "
              f"mount uses it)")
    for line in read_first_sync_notice(opts):
        print(f"acdfuse mount: {line}", file=sys.stderr)
    return 0


class FirstSyncBar:
    """A tqdm bar (nodes per second, as `acdfuse sync` shows) for the first sync of a background mount,
    made at its first count: a warm mirror or a small drive never shows one."""

    def __init__(self, mountpoint: Path) -> None:
        self._mountpoint = mountpoint
        self._bar: Any = None

    def update(self, nodes: int) -> None:
        if self._bar is None:
            from tqdm import tqdm  # noqa: PLC0415 (only a terminal needs it)

            self._bar = tqdm(desc=f"first sync of {self._mountpoint}", unit=" nodes", file=sys.stderr)
        self._bar.update(max(0, nodes - self._bar.n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __call__(self, nodes: int | None) -> None:
        """As ``mount.FirstSyncProgress``: a foreground mount on a terminal shows the bar itself."""
        if nodes is None:
            self.close()
        else:
            self.update(nodes)


class ProgressPipe:
    """The background child's end of the progress pipe: one node count per line while the first sync
    runs, closed once it is over (``mount.FirstSyncProgress``). A parent that went away (interrupted)
    ends the reporting, never the mount."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def __call__(self, nodes: int | None) -> None:
        if self._fd is None:
            return
        if nodes is None:
            self.close()
            return
        try:
            os.write(self._fd, f"{nodes}\n".encode())
        except OSError as exc:
            log.debug("first sync progress not shown: %s", exc)
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


_LIBFUSE_PREFIXES = ("fuse: ", "fusermount: ", "fusermount3: ")


def _report_child_failure(mnt: Path, detail: str, *, debug: bool = False) -> int:
    """The background child's stderr, said once: its own "acdfuse mount:" line already names the
    mount point. When libfuse refused the mount, its own complaint becomes the reason in that one line
    (with --debug, everything the child printed comes first, as it did)."""
    lines = [line for line in detail.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("acdfuse mount: ")]
    libfuse = [line for line in lines if line.startswith(_LIBFUSE_PREFIXES)]
    if not debug and ours and libfuse and "libfuse refused the mount" in ours[-1]:
        why = "; ".join(line.split(": ", 1)[1] for line in libfuse)
        unknown = re.search(r"unknown option\(s\): `-o ([^']*)'", why)
        if unknown:
            return _fail(f"cannot mount {mnt}: -o {unknown.group(1)} is an option of neither acdfuse nor "
                         f"libfuse (`acdfuse mount --help` lists acdfuse's, `man mount.fuse3` libfuse's)")
        return _fail(f"cannot mount {mnt}: libfuse refused the mount: {why}")
    if ours:
        print("\n".join(lines), file=sys.stderr)
        return 1
    if len(lines) <= 1:
        return _fail(f"cannot mount {mnt}: {lines[0] if lines else 'the mount process failed'}")
    print("\n".join(lines[:-1]), file=sys.stderr)
    return _fail(f"cannot mount {mnt}: {lines[-1]}")


def _clean_dead_mount(record: MountRecord, dirs: ClientDirs, embedded_next: bool) -> str:
    """Detach the dead mount a killed mount process left; an error message, or '' when done."""
    mnt = record.mountpoint
    pid = record.read_pid()
    if pid is not None and pid_alive(pid):
        return (f"the mount at {mnt} does not answer but its process {pid} is still running; "
                f"stop it with `acdfuse umount {mnt}`")
    ok, err = daemon.unmount(mnt, lazy=True)
    if not ok:
        return f"a dead mount is left at {mnt} ({err}); run `acdfuse umount {mnt}` or `fusermount -uz {mnt}`"
    record.forget()
    print(f"acdfuse mount: detached the dead mount at {mnt} (its mount process had died)", file=sys.stderr)
    if not embedded_next:
        _stop_orphaned_server(dirs)     # an embedded mount takes the orphaned bundled server over instead
    return ""


def cache_dir_in_use(cache_dir: Path) -> bool:
    """Whether a mount holds the cache dir's lock (a probe: the lock is let go at once)."""
    try:
        return lock_held(cache_dir / "lock")
    except OSError:
        return False    # an unusable cache dir is reported when the mount tries to use it


def cache_dir_busy(opts: Options, dirs: ClientDirs) -> str:
    if opts.cache_dir == dirs.default_cache_dir(opts.config_dir, opts.embedded is not None):
        # the default is one per drive, so a second mount of the same drive lands here
        return (f"the cache dir {opts.cache_dir} is in use by another mount of this drive; give this "
                f"mount its own with --cache-dir DIR")
    return f"the cache dir {opts.cache_dir} is in use by another mount; choose another --cache-dir"


def lock_cache_dir(cache_dir: Path, cache_root: Path) -> int:
    """An exclusive lock on the cache dir for the mount's lifetime: two mounts must not share it."""
    make_cache_dir(cache_dir, cache_root)
    return take_lock(cache_dir / "lock")


def _say_to_console(line: str) -> None:
    print(f"acdfuse mount: {line}", file=sys.stderr)


def run_foreground(opts: Options, dirs: ClientDirs, progress_fd: int | None = None) -> int:
    """Mount and serve until unmounted; the process that owns the mount. ``progress_fd``: the pipe on
    which a background parent follows the first sync."""
    report: ProgressPipe | FirstSyncBar | None = None
    if progress_fd is not None:
        report = ProgressPipe(progress_fd)
    elif sys.stderr.isatty():
        report = FirstSyncBar(opts.mountpoint)     # `mount -f` on a terminal
    try:
        return _serve_foreground(opts, dirs, report)
    finally:
        if report is not None:
            report.close()


def _serve_foreground(opts: Options, dirs: ClientDirs, report: ProgressPipe | FirstSyncBar | None) -> int:
    # imported here: `acdfuse umount`, `--help` and the background parent need neither libfuse nor
    # the client stack
    from acdfuse.mount import MountError, run  # noqa: PLC0415

    try:
        lock_fd = lock_cache_dir(opts.cache_dir, dirs.cache_root)
    except BlockingIOError:
        return _fail(cache_dir_busy(opts, dirs))
    except OSError as exc:
        return _fail(f"cannot use the cache dir {opts.cache_dir}: {exc}")
    try:
        # held until this process ends: a second mount started at the same moment on the same mount
        # point stops here, and `umount`/`mount` know a listed mount without it is dead
        mnt_lock_fd = MountRecord(opts.run_dir, opts.mountpoint).lock()
    except BlockingIOError:
        os.close(lock_fd)
        return _fail(f"another acdfuse process is mounting {opts.mountpoint} right now")
    except OSError as exc:      # a run dir that is not this user's alone, or not writable
        os.close(lock_fd)
        return _fail(f"cannot use the run dir {opts.run_dir}: {exc}")
    # a terminal gets warnings too; a background mount's stderr is a file nobody rotates
    on_tty = sys.stderr.isatty()
    setup_logging(opts.log_file, opts.debug, to_stderr=on_tty)
    # before any thread exists, so every thread inherits the mask (see runtime/syncloop.py)
    block_sync_signal()
    try:
        # a terminal already got the warnings through logging; a file or pipe gets the notice line
        # systemd's readiness handshake (a Type=notify unit): part of the process's environment, read
        # here at the edge like the XDG dirs
        ready = sdnotify.ready_notifier(os.environ.get("NOTIFY_SOCKET"), str(opts.mountpoint))
        return run(opts, say=None if on_tty else _say_to_console, on_mounted=ready,
                   first_sync_progress=report)
    except MountError as exc:
        log.error("cannot mount %s: %s", opts.mountpoint, exc)
        if opts.debug:
            traceback.print_exception(exc, file=sys.stderr)
        # a full disk shows as whatever write failed first (SQLite's "database or disk is full", ...)
        return _fail(f"cannot mount {opts.mountpoint}: {disk_full(opts.cache_dir) or exc}")
    finally:
        os.close(mnt_lock_fd)
        os.close(lock_fd)


# ----- umount -----------------------------------------------------------------------------------

def run_umount(args: argparse.Namespace, xdg: XdgDirs) -> int:
    dirs = ClientDirs.from_xdg(xdg)
    mnt = args.mountpoint.expanduser().resolve()
    record = MountRecord(dirs.run_dir, mnt)
    pid = record.read_pid()
    was_embedded = record.uses_bundled_server()
    # read before the mount process ends: it may stop the server on its way out
    before = embedded.server_process(dirs.bundled) if was_embedded else None
    if daemon.is_mounted(mnt):
        # a dead mount (its process was killed) may still be held open: detach it lazily then
        dead = (pid is None or not pid_alive(pid)) and daemon.is_dead_mount(record)
        if not dead and pid is not None:
            status = _wait_for_uploads(record, pid, force=args.force)
            if status is not None:
                return status
        ok, err = daemon.unmount(mnt, lazy=dead)
        if not ok:
            print(f"acdfuse umount: cannot unmount {mnt}: {err}", file=sys.stderr)
            return 1
        if dead:
            record.forget()
    elif pid is None or not pid_alive(pid):
        record.forget()
        print(f"acdfuse umount: {mnt} is not mounted", file=sys.stderr)
        _stop_orphaned_server(dirs)
        return 1
    # the mount process finishes its shutdown (and stops the bundled server if it was its last user)
    # before we return
    if pid is not None and not wait_for_exit(pid, UNMOUNT_WAIT):
        print(f"acdfuse umount: the mount process {pid} is still shutting down", file=sys.stderr)
        return 1
    _stop_orphaned_server(dirs, before)
    return 0


def _human(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB" if size >= 1 << 20 else f"{size} bytes"


def _pending(journal: Path) -> PendingSummary | None:
    try:
        return pending_summary(journal)
    except JournalError as exc:
        print(f"acdfuse umount: cannot see the uploads of the mount: {exc}", file=sys.stderr)
        return None


def _wait_for_uploads(record: MountRecord, pid: int, *, force: bool) -> int | None:
    """Before unmounting: wait until the mount's closed files are uploaded, showing how many are left.
    None to go on with the unmount, else the exit status (interrupted: still mounted, nothing lost).

    The mount process is another process: its journal is read (read-only) every ``UPLOAD_POLL``
    seconds, there is nothing to wait on. Files still open are not waited for (the unmount then fails
    as busy), nor files the server refused (they stay in the journal and the next mount tries again).
    """
    cache = record.cache_dir()
    if cache is None:
        return None             # a mount process from before the write side: nothing to wait for
    journal = cache / "journal.db"
    summary = _pending(journal)
    if summary is None:
        return None
    if force:
        if summary.files or summary.open_files:
            print(f"acdfuse umount: --force: {summary.files + summary.open_files} file(s) "
                  f"({_human(summary.bytes)}) not uploaded yet stay in the write journal {journal}; the "
                  f"next mount with the cache dir {cache} uploads them", file=sys.stderr)
        return None
    bar = UploadBar() if sys.stderr.isatty() else None
    waited = False
    last_said = 0.0
    try:
        while summary.files and pid_alive(pid):
            notes = ""
            if summary.retrying:
                notes += f"; {summary.retrying} being retried after: {summary.last_error}"
            if disk_full(cache):
                # the uploads cannot move on: the journal cannot even record their progress
                notes += f"; the disk of the cache dir {cache} is full: free some space there"
            now = time.monotonic()
            if bar is not None:
                bar.show(summary.files, summary.bytes, notes)
            elif now - last_said >= PROGRESS_EVERY:
                print(f"acdfuse umount: waiting for {summary.files} upload(s), {_human(summary.bytes)} to go"
                      f"{notes} (--force to leave them for the next mount)", file=sys.stderr)
                last_said = now
            waited = True
            time.sleep(UPLOAD_POLL)
            summary = _pending(journal) or PendingSummary()
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("\nacdfuse umount: interrupted; still mounted, the uploads go on", file=sys.stderr)
        return 130
    if bar is not None:
        bar.show(summary.files, summary.bytes, "")
        bar.close()
    if waited and not summary.files:
        print("acdfuse umount: every closed file is uploaded", file=sys.stderr)
    for name, reason in summary.refused:
        print(f"acdfuse umount: {name!r} is not uploaded: {reason}; it stays in the write journal and the "
              f"next mount tries again", file=sys.stderr)
    if summary.open_files:
        print(f"acdfuse umount: {summary.open_files} file(s) are still open for writing; they go up after "
              f"their close", file=sys.stderr)
    return None


class UploadBar:
    """The uploads `acdfuse umount` waits for, as a tqdm bar of bytes on a terminal (made at the first
    look, so an unmount with nothing to upload shows none). Bytes written meanwhile grow its total."""

    def __init__(self) -> None:
        self._bar: Any = None

    def show(self, files: int, to_go: int, notes: str) -> None:
        if self._bar is None:
            if not files:
                return
            from tqdm import tqdm  # noqa: PLC0415 (only a terminal needs it)

            self._bar = tqdm(desc="acdfuse umount: uploading", total=to_go, unit="B", unit_scale=True,
                             unit_divisor=1024, file=sys.stderr)
        bar = self._bar
        done = bar.total - to_go
        if done < bar.n:            # more to upload than when the bar began: grow it
            bar.total = bar.n + to_go
            done = bar.n
        bar.set_postfix_str(f"{files} file(s) left{notes}", refresh=False)
        if done > bar.n:
            bar.update(done - bar.n)
        else:
            bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _stop_orphaned_server(dirs: ClientDirs, before: embedded.ServerState | None = None) -> None:
    """Stop a bundled server no live mount uses (its mounts were killed) and say so in one line.

    ``before`` is the server an embedded mount used before it was unmounted: then the line also says
    whether that mount's process stopped it (it was the last user) or it runs on for other mounts.
    """
    try:
        settled = embedded.settle(dirs.bundled)
    except (embedded.EmbeddedError, OSError) as exc:
        print(f"acdfuse umount: cannot check the local drive's server: {exc}", file=sys.stderr)
        return
    if settled.running is not None and settled.users:
        if before is not None:
            n = len(settled.users)
            print(f"acdfuse: left the local drive's server running for {n} other "
                  f"mount{'s' if n > 1 else ''} ({', '.join(settled.users)})")
    elif settled.stopped is not None or (before is not None and not pid_alive(before.pid)):
        # stopped here, or by the mount process when it found itself the last user
        print("acdfuse: stopped the local drive's server (no other mount uses it)")
