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

import os
import warnings
from typing import Any

import mfusepy
from mfusepy import FuseOSError, Operations, c_stat, fuse_get_context, set_st_attrs  # noqa: F401

from acdfuse.fs.threadstate import pin_thread_state

FUSE_READDIR_PLUS = 1       # the flag libfuse 3 passes to readdir when the kernel asked for READDIRPLUS
FUSE_FILL_DIR_PLUS = 2      # the filler flag that says "this stat is complete"
PLUS = os.environ.get("ACDFUSE_SHIM_PLUS") == "1"
CACHE_DIR = os.environ.get("ACDFUSE_SHIM_CACHE_DIR") == "1"


class FUSE(mfusepy.FUSE):
    def __init__(self, operations: Any, mountpoint: str, **kwargs: Any) -> None:
        # fusepy's big_writes is libfuse 2 only; libfuse 3 always allows big writes
        kwargs.pop("big_writes", None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # use_ns=False and a callable ops object
            super().__init__(operations, mountpoint, **kwargs)

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
        folder = path.decode(self.encoding, self.errors)
        prefix = folder.rstrip("/") + "/"
        for item in self.operations.readdir(folder, fip.contents.fh):
            name = item if isinstance(item, str) else item[0]
            st = c_stat()
            plus = 0
            if name not in (".", ".."):
                try:
                    set_st_attrs(st, self.operations.getattr(prefix + name), use_ns=self.use_ns)
                    plus = FUSE_FILL_DIR_PLUS
                except OSError:
                    continue        # gone meanwhile
            elif not isinstance(item, str):
                set_st_attrs(st, item[1], use_ns=self.use_ns)
            if filler(buf, name.encode(self.encoding, self.errors), st, 0, plus) != 0:
                break
        return 0
