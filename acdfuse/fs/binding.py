"""The FUSE binding: the one module that imports fusepy, so the binding can be swapped here alone.

Everything else in acdfuse that needs the binding imports it from here: ``FuseOSError`` (an OSError
that carries the errno libfuse answers), ``caller`` (who makes the current call), ``mount_options``
(our settings as libfuse ``-o`` options) and ``serve`` (mount and run until unmounted).
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fuse import FUSE, FuseOSError, fuse_get_context

from acdfuse.fs.threadstate import MAX_PINNED, ThreadStatePins

__all__ = ["FuseOSError", "MountRefused", "caller", "mount_options", "serve"]

log = logging.getLogger(__name__)


def caller() -> tuple[int, int, int]:
    """(uid, gid, pid) of the process whose call is being served; only valid inside an operation."""
    uid, gid, pid = fuse_get_context()
    return int(uid), int(gid), int(pid)


# fusepy decodes the kernel's names with the codec it is given, strictly by default: a name that is not
# UTF-8 then fails inside fusepy with a traceback and EINVAL. This one decodes undecodable bytes as lone
# surrogates (``surrogateescape``), so such a name reaches the operations, which refuse it with EINVAL
# themselves, cleanly (fs/names.py). Registered on first use, not at import.
NAME_CODEC = "acdfuse_utf8b"
_codec_registered = False


def _find_codec(name: str) -> codecs.CodecInfo | None:
    if name != NAME_CODEC:
        return None

    def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
        return codecs.utf_8_encode(text, "surrogateescape")

    def decode(data: Any, errors: str = "strict") -> tuple[str, int]:
        return codecs.utf_8_decode(data, "surrogateescape", True)

    return codecs.CodecInfo(encode, decode, name=NAME_CODEC)


def name_codec() -> str:
    """The codec name FUSE() decodes names with (see above)."""
    global _codec_registered
    if not _codec_registered:
        codecs.register(_find_codec)
        _codec_registered = True
    return NAME_CODEC


class MountRefused(RuntimeError):
    """libfuse did not mount (it printed why on stderr)."""


def mount_options(*, read_only: bool, allow_other: bool, attr_timeout: float,
                  extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Mount options for fusepy's FUSE(); each becomes one ``-o key[=value]``.

    libfuse2's high-level API takes attr_timeout/entry_timeout/negative_timeout (seconds, floats) and
    use_ino. The page cache is kept per open through fusepy's raw_fi (``fi.keep_cache``, set only while
    the content key is unchanged, see handles.py) rather than ``kernel_cache`` (keeps stale pages
    after a remote change) or ``auto_cache`` (decides by mtime and size, which a same-size overwrite
    within one second of the old mtime would fool). ``extra`` ("key" or "key=value") comes last and wins.
    """
    kw: dict[str, Any] = {
        "fsname": "acdfuse",
        "subtype": "acdfuse",
        "use_ino": True,              # the store's stable inode numbers, not libfuse's own
        "attr_timeout": attr_timeout,
        "entry_timeout": attr_timeout,
        "negative_timeout": attr_timeout,
    }
    if read_only:
        kw["ro"] = True               # `mount`/`findmnt` show ro, and the kernel refuses changes itself
    else:
        # libfuse 2 sends writes in 4 KiB pieces unless told otherwise: 32 Python calls per 128 KiB
        kw["big_writes"] = True
        kw["max_write"] = 128 * 1024
        # O_TRUNC comes with the open (the write side truncates the new handle's copy, fetching
        # nothing) instead of a separate truncate by path before it
        kw["atomic_o_trunc"] = True
    if allow_other:
        kw["allow_other"] = True
        # other users: let the kernel enforce the modes we report
        kw["default_permissions"] = True
    for item in extra:
        key, sep, value = item.partition("=")
        kw[key] = value if sep else True
    return kw


class _PinnedOperations:
    """The operations object as fusepy sees it: each call first pins its worker's thread state.

    fusepy registers the operations that ``getattr`` finds on this object, so every attribute is the
    wrapped object's own; only ``__call__`` (fusepy's one entry point for every operation) is added to.
    """

    def __init__(self, operations: Any, pins: ThreadStatePins,
                 on_mounted: Callable[[], None] | None = None) -> None:
        self._operations = operations
        self._pin = pins.pin
        self._on_mounted = on_mounted

    def __getattr__(self, name: str) -> Any:
        if name == "init" and self._on_mounted is not None:
            # fusepy registers libfuse's init only when the operations have one
            return self._mounted
        return getattr(self._operations, name)

    def _mounted(self, path: str) -> None:
        if self._on_mounted is not None:
            self._on_mounted()

    def __call__(self, op: str, *args: Any) -> Any:
        self._pin()
        if op == "init" and self._on_mounted is not None:
            return self._mounted(*args)
        return self._operations(op, *args)


def serve(operations: Any, mountpoint: Path, options: dict[str, Any],
          pinned_thread_states: int = MAX_PINNED, on_mounted: Callable[[], None] | None = None) -> None:
    """Mount ``operations`` at ``mountpoint`` and serve in this thread until unmounted.

    ``operations`` is called as ``operations(name, *args)`` and must raise FuseOSError for every
    failure. Up to ``pinned_thread_states`` libfuse worker thread states are kept (see threadstate.py).
    Raises MountRefused when libfuse does not mount. ``on_mounted`` is called once the kernel mount
    exists (libfuse's init, the first request of the mount), e.g. to tell systemd the mount is ready.
    """
    pins = ThreadStatePins(pinned_thread_states)
    try:
        FUSE(_PinnedOperations(operations, pins, on_mounted), str(mountpoint), raw_fi=True,
             foreground=True, encoding=name_codec(), **options)
    except RuntimeError as exc:
        raise MountRefused(str(exc)) from exc
    finally:
        log.info("%d libfuse worker thread states were pinned (bound %d)", pins.pins, pins.limit)
