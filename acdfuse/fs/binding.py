"""The FUSE binding: the one module that loads libfuse, so the binding can be swapped here alone.

The mount runs on mfusepy (the maintained fork of fusepy) over libfuse 3, chosen by measurement
(issue 13, BENCHMARKS.md "Metadata and the FUSE binding"): against fusepy on libfuse 2 it takes writes
in 1 MiB calls instead of 128 KiB (8x fewer Python calls), keeps a bounded pool of worker threads
(libfuse 2 starts and ends workers under parallel lookups, and each new one costs a Python thread state
and an SQLite connection), can answer READDIRPLUS, and can expire kernel entries rather than drop them.
Where only libfuse 2 is installed, mfusepy runs on it (with big writes asked for) and all that still
works but READDIRPLUS and expiring.

Everything else in acdfuse that needs the binding imports it from here: ``FuseOSError`` (an OSError
that carries the errno libfuse answers), ``caller`` (who makes the current call), ``mount_options``
(our settings as libfuse ``-o`` options) and ``serve`` (mount and run until unmounted).

Names: mfusepy decodes the kernel's names as UTF-8 with ``surrogateescape``, so a name that is not
UTF-8 reaches the operations as lone surrogates and they refuse it with EINVAL themselves (fs/names.py).
"""

from __future__ import annotations

import ctypes.util
import errno
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from acdfuse.fs.kernelcache import LibfuseNotifier, Notifier
from acdfuse.fs.threadstate import MAX_PINNED, ThreadStatePins

__all__ = ["FuseOSError", "LibfuseMissing", "MountRefused", "caller", "load_mfusepy", "mount_options",
           "serve"]

FUSE_READDIR_PLUS = 1 << 0      # libfuse 3: the readdir flag of a READDIRPLUS request
FUSE_FILL_DIR_PLUS = 1 << 1     # libfuse 3: the filler flag "these attributes are complete"

log = logging.getLogger(__name__)


class FuseOSError(OSError):
    """The failure of an operation, as the errno libfuse answers the kernel (any OSError with an errno
    does for mfusepy; this one says so where it is raised)."""

    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))


def caller() -> tuple[int, int, int]:
    """(uid, gid, pid) of the process whose call is being served; only valid inside an operation."""
    uid, gid, pid = load_mfusepy().fuse_get_context()
    return int(uid), int(gid), int(pid)


class MountRefused(RuntimeError):
    """libfuse did not mount (it printed why on stderr)."""


class LibfuseMissing(RuntimeError):
    """No libfuse could be loaded; the text says how to install it."""


def mount_options(*, read_only: bool, allow_other: bool, attr_timeout: float, nonempty: bool = False,
                  extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Mount options for mfusepy's FUSE(); each becomes one ``-o key[=value]``.

    attr_timeout/entry_timeout/negative_timeout are libfuse's (seconds, floats); they can be long
    because every sync tells the kernel what changed (kernelcache.py). ``use_ino``: the store's stable
    inode numbers, not libfuse's own. The page cache is kept per open through raw_fi
    (``fi.keep_cache``, set only while the content key is unchanged, see handles.py) rather than
    ``kernel_cache`` (keeps stale pages after a remote change) or ``auto_cache`` (decides by mtime and
    size, which a same-size overwrite within one second of the old mtime would fool). ``extra``
    ("key" or "key=value") comes last and wins.
    """
    kw: dict[str, Any] = {
        "fsname": "acdfuse",
        "subtype": "acdfuse",
        "use_ino": True,
        "attr_timeout": attr_timeout,
        "entry_timeout": attr_timeout,
        "negative_timeout": attr_timeout,
    }
    if read_only:
        kw["ro"] = True               # `mount`/`findmnt` show ro, and the kernel refuses changes itself
    # writable: libfuse 3 sends writes of up to 1 MiB and O_TRUNC with the open (the write side
    # truncates the new handle's copy, fetching nothing) by itself; on libfuse 2 ``serve`` asks for both
    if allow_other:
        kw["allow_other"] = True
        # other users: let the kernel enforce the modes we report
        kw["default_permissions"] = True
    if nonempty:
        kw["nonempty"] = True         # libfuse 2 refuses a folder with files without it (see serve)
    for item in extra:
        key, sep, value = item.partition("=")
        kw[key] = value if sep else True
    return kw


def load_mfusepy() -> ModuleType:
    """mfusepy, bound to libfuse 3 when the system has it.

    mfusepy picks its library when imported, from FUSE_LIBRARY_PATH, else libfuse 2 first. The
    variable is set for that import only (unless the user set it), so the process keeps its environment.
    Raises LibfuseMissing when no libfuse loads (none installed, or FUSE_LIBRARY_PATH names none).
    """
    loaded = sys.modules.get("mfusepy")
    if loaded is not None:
        return loaded
    saved = os.environ.get("FUSE_LIBRARY_PATH")
    libfuse3 = ctypes.util.find_library("fuse3")
    if saved is None and libfuse3:
        os.environ["FUSE_LIBRARY_PATH"] = libfuse3
    try:
        import mfusepy  # noqa: PLC0415 (loads libfuse: only when a mount starts, never at import)

        return mfusepy
    except OSError as exc:
        # mfusepy raises OSError both when it finds no library and when ctypes cannot load the one named
        hint = f"FUSE_LIBRARY_PATH={saved} names no loadable library; unset it, or " if saved else ""
        raise LibfuseMissing(f"libfuse cannot be loaded ({exc}); {hint}install it with "
                             f"`sudo apt-get install fuse3`") from exc
    finally:
        if saved is None:
            os.environ.pop("FUSE_LIBRARY_PATH", None)


def serve(operations: Any, mountpoint: Path, options: dict[str, Any], *,
          pinned_thread_states: int = MAX_PINNED, on_mounted: Callable[[], None] | None = None,
          on_notifier: Callable[[Notifier], None] | None = None) -> None:
    """Mount ``operations`` at ``mountpoint`` and serve in this thread until unmounted.

    libfuse calls the operations' methods by name (raw_fi: file operations get libfuse's file info);
    each must raise FuseOSError (or another OSError with an errno) for every failure. Up to
    ``pinned_thread_states`` libfuse worker thread states are kept (see threadstate.py). Once the
    kernel mount exists (libfuse's init, before any other request), ``on_notifier`` gets this mount's
    kernel notifier (kernelcache.py) and then ``on_mounted`` runs (e.g. systemd's readiness).
    Raises MountRefused when libfuse does not mount.
    """
    mfusepy = load_mfusepy()
    pins = ThreadStatePins(pinned_thread_states)
    options = dict(options)
    if mfusepy.fuse_version_major == 2:
        options.setdefault("big_writes", True)   # libfuse 2 sends 4 KiB writes without it; 3 always big
        if not options.get("ro"):
            options.setdefault("max_write", 128 * 1024)
            options.setdefault("atomic_o_trunc", True)
    else:
        # libfuse 3 mounts over a folder with files by itself and no longer knows the option: the
        # command line asked the user already (cli_mount)
        options.pop("nonempty", None)
        # libfuse 3.14 passes an unset idle-worker bound (and a warning about it) to its loop unless one
        # is given; at most 10 workers run anyway (its default), so 10 idle never ends one
        options.setdefault("max_idle_threads", 10)
    started = threading.Event()
    fuse_class = _fuse_class(mfusepy, pins, started, on_mounted, on_notifier)
    try:
        with warnings.catch_warnings():
            # mfusepy frowns on a callable operations object (fusepy's entry point, which it does not
            # use): as meant here
            warnings.simplefilter("ignore", DeprecationWarning)
            fuse_class(operations, str(mountpoint), raw_fi=True, foreground=True, **options)
    except RuntimeError as exc:
        if not started.is_set():
            raise MountRefused(str(exc)) from exc
        # libfuse 3 ends its loop with an error code when a signal (SIGTERM, SIGINT) stops it, as it
        # does when the kernel connection is aborted: the mount existed and is gone, as after umount
        log.info("libfuse ended the mount with code %s (a signal, or an aborted connection)", exc)
    finally:
        log.info("%d libfuse worker thread states were pinned (bound %d)", pins.pins, pins.limit)


def _fuse_class(mfusepy: ModuleType, pins: ThreadStatePins, started: threading.Event,
                on_mounted: Callable[[], None] | None,
                on_notifier: Callable[[Notifier], None] | None) -> type:
    """mfusepy's FUSE, with what acdfuse adds to every callback and to the start of the mount."""

    class Fuse(mfusepy.FUSE):  # type: ignore[name-defined]
        # open folder handle -> the entries of a READDIRPLUS listing under way (dict ops are atomic)
        _plus: dict[int, list[tuple[str, dict[str, Any] | None]]] = {}
        def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
            # every callback, before anything else: keep this worker's thread state (threadstate.py)
            pins.pin()
            return super()._wrapper(func, *args, **kwargs)

        def _init(self, conn: Any, config: Any) -> None:
            started.set()
            super()._init(conn, config)
            if on_notifier is not None:
                try:
                    on_notifier(LibfuseNotifier.from_callback(mfusepy._libfuse))
                except OSError as exc:
                    # without notices a sync's changes show only when the kernel's timeouts run out
                    log.error("cannot tell the kernel about changes on the drive: %s", exc)
            if on_mounted is not None:
                on_mounted()

        def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
            # mfusepy drops the file info of an ftruncate; the write side truncates through the handle
            fh = fip.contents if fip else None
            name = None if path is None else path.decode(self.encoding, self.errors)
            return int(self.operations.truncate(name, length, fh) or 0)

        def readdir_fuse_3(  # noqa: PLR0917 (libfuse's callback)
            self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any, flags: int
        ) -> int:
            """READDIRPLUS with the attributes the operations give (``readdir_plus``), else plain.

            libfuse 3.14 would buffer a listing given at offset 0 and then send it without node ids,
            so the kernel would drop the attributes: each entry goes with its own offset (index + 1),
            a kernel buffer at a time, from one snapshot per open folder.
            """
            fh = fip.contents.fh
            entries = self._plus.get(fh) if offset else None
            if entries is None:
                if offset or not flags & FUSE_READDIR_PLUS or path is None:
                    return int(super().readdir_fuse_3(path, buf, filler, offset, fip, flags))
                entries = self.operations.readdir_plus(path.decode(self.encoding, self.errors), fh)
                if entries is None:
                    return int(super().readdir_fuse_3(path, buf, filler, offset, fip, flags))
                self._plus[fh] = entries
            for index in range(offset, len(entries)):
                name, attrs = entries[index]
                st = mfusepy.c_stat()
                if attrs is not None:
                    mfusepy.set_st_attrs(st, attrs, use_ns=self.use_ns)
                if filler(buf, name.encode(self.encoding, self.errors), st, index + 1,
                          FUSE_FILL_DIR_PLUS if attrs is not None else 0):
                    return 0        # the kernel's buffer is full: it asks again from this offset
            self._plus.pop(fh, None)
            return 0

        def releasedir(self, path: bytes | None, fip: Any) -> int:
            self._plus.pop(fip.contents.fh, None)
            return int(super().releasedir(path, fip))

        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            # mfusepy would drop RENAME_NOREPLACE/RENAME_EXCHANGE and rename anyway; refuse them, so
            # callers fall back to what they can check themselves
            if flags:
                return -errno.EINVAL
            return int(super().rename_fuse_3(old, new, flags))

    return Fuse
