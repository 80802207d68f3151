"""A ``fuse`` module backed by mfusepy: runs the unchanged acdfuse mount on libfuse 3 (issue 13's A/B).

Benchmarks only. Put this directory first on PYTHONPATH and set FUSE_LIBRARY_NAME=fuse3 (mfusepy
otherwise loads libfuse 2); ``import fuse`` in acdfuse then gets this module instead of fusepy.
Differences from fusepy that matter to acdfuse, handled here:
- mfusepy ignores the operations object's ``__call__``, where acdfuse keeps each libfuse worker's
  Python thread state alive (fs/threadstate.py); without it every callback would get a fresh thread
  state and the store a new SQLite connection per call. ``_wrapper`` pins the state instead.
- Experiment switches (environment): ACDFUSE_SHIM_PLUS=1 answers READDIRPLUS with full attributes
  (the kernel then needs no LOOKUP per entry); ACDFUSE_SHIM_CACHE_DIR=1 lets the kernel keep directory
  listings (cache_readdir + keep_cache on opendir).
"""

from __future__ import annotations

import errno
import os
import warnings
from typing import Any

import mfusepy
from mfusepy import FuseOSError, Operations, c_stat, fuse_get_context, set_st_attrs  # noqa: F401

from acdfuse.fs.attrs import node_attrs
from acdfuse.fs.threadstate import pin_thread_state

_libfuse = mfusepy._libfuse   # the loaded libfuse, as fusepy names it

_libfuse = mfusepy._libfuse   # the loaded libfuse, as fusepy names it

FUSE_READDIR_PLUS = 1       # the flag libfuse 3 passes to readdir when the kernel asked for READDIRPLUS
FUSE_FILL_DIR_PLUS = 2      # the filler flag that says "this stat is complete"
PLUS = os.environ.get("ACDFUSE_SHIM_PLUS") == "1"
CACHE_DIR = os.environ.get("ACDFUSE_SHIM_CACHE_DIR") == "1"
NO_DIR_OPS = os.environ.get("ACDFUSE_SHIM_NO_DIR_OPS") == "1"
NO_RDPLUS = os.environ.get("ACDFUSE_SHIM_NO_RDPLUS") == "1"
FUSE_CAP_READDIRPLUS = 1 << 13          # libfuse 3's capability bits (fuse_common.h)
FUSE_CAP_READDIRPLUS_AUTO = 1 << 14


class HideDirOps:
    """The operations without opendir/releasedir: libfuse then opens folders itself, without Python."""

    def __init__(self, operations: Any) -> None:
        self._operations = operations

    def __getattr__(self, name: str) -> Any:
        if name in ("opendir", "releasedir"):
            raise AttributeError(name)
        return getattr(self._operations, name)

    def __call__(self, op: str, *args: Any) -> Any:
        return self._operations(op, *args)


class FUSE(mfusepy.FUSE):
    def __init__(self, operations: Any, mountpoint: str, **kwargs: Any) -> None:
        # fusepy's big_writes is libfuse 2 only; libfuse 3 always allows big writes
        kwargs.pop("big_writes", None)
        self._acdfuse_ops = operations
        self._listings: dict[int, list[Any]] = {}     # open folder handle -> its entries (+plus)
        if NO_DIR_OPS:
            operations = HideDirOps(operations)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # use_ns=False and a callable ops object
            super().__init__(operations, mountpoint, **kwargs)

    def _init(self, conn: Any, config: Any) -> None:
        if NO_RDPLUS and conn:
            # plain READDIR, as on libfuse 2: the kernel then never asks for attributes with listings
            conn.contents.want &= ~(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO)
        super()._init(conn, config)

    def _wrapper(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        pin_thread_state()
        return super()._wrapper(func, *args, **kwargs)

    def opendir(self, path: bytes, fip: Any) -> int:
        fip.contents.fh = self.operations.opendir(path.decode(self.encoding, self.errors))
        if CACHE_DIR:
            fip.contents.cache_readdir = 1
            fip.contents.keep_cache = 1
        return 0

    def readdir_fuse_3(  # noqa: PLR0917 (libfuse's callback signature)
        self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any, flags: int
    ) -> int:
        if not (PLUS and flags & FUSE_READDIR_PLUS) or path is None:
            return super().readdir_fuse_3(path, buf, filler, offset, fip, flags)
        # libfuse 3.14 buffers a listing given with offset 0 and then sends it without node ids, so the
        # kernel ignores its attributes: entries go with their own offsets (index + 1), a buffer-full
        # at a time, from one snapshot of the folder per open handle
        ops = self._acdfuse_ops                       # experiment: acdfuse's own internals
        fh = fip.contents.fh
        listing = self._listings.get(fh) if offset else None
        if listing is None:
            entry = ops._handles.dir(fh)
            node = ops._store.get(entry.node_id) if entry is not None else ops._store.resolve(
                path.decode(self.encoding, self.errors))
            if node is None:
                return -errno.ENOENT
            dir_attrs = {"st_mode": ops._owner.dir_mode()}
            listing = [(b".", dir_attrs, False), (b"..", dir_attrs, False)]
            listing += [(child.name.encode(self.encoding, self.errors),
                         node_attrs(child, ops._owner, ops._nlink(child)), True)
                        for child in ops._store.children(node.id)]
            self._listings[fh] = listing
        for index in range(offset, len(listing)):
            name, attrs, plus = listing[index]
            st = c_stat()
            set_st_attrs(st, attrs, use_ns=self.use_ns)
            if filler(buf, name, st, index + 1, FUSE_FILL_DIR_PLUS if plus else 0) != 0:
                return 0            # the kernel's buffer is full: it asks again from this offset
        self._listings.pop(fh, None)
        return 0
        # one query for the whole folder: the attributes come from the listing, no lookup per entry
        for child in ops._store.children(node.id):
            st = c_stat()
            set_st_attrs(st, node_attrs(child, ops._owner, ops._nlink(child)), use_ns=self.use_ns)
            if filler(buf, child.name.encode(self.encoding, self.errors), st, 0, FUSE_FILL_DIR_PLUS) != 0:
                break
        return 0
