"""The upload of a file that is still being written front to back: its growing spool as a stream.

A large file written sequentially (cp, dd, a download) would otherwise be uploaded only after its last
close, so the time to a confirmed fsync would be the write plus the whole upload. Instead, once such a
file passes ``WriteOptions.stream_min`` bytes, its upload starts and reads the spool as it grows; the
file's close or fsync names the end. Anything else ends the stream (``abort``): a write that goes back
into the file, a truncate, a delete, a writer that stops writing for ``stall`` seconds. The upload then
fails, and the file goes up the ordinary way after its close.

Lock order: ``GrowingStream._cond`` is a leaf; the spool is read without it.
"""

from __future__ import annotations

import errno
import os
import threading

from .spool import Spool


class GrowingStream:
    """A non-seekable reader of a spool that is still being appended to (see the module docstring)."""

    def __init__(self, spool: Spool, stall: float) -> None:
        self._spool = spool
        self._stall = stall
        self._cond = threading.Condition(threading.Lock())
        self._pos = 0
        self.end: int | None = None         # the file's size when its writer closed or fsynced it
        self.end_gen = 0                    # the file's change count at that moment
        self.aborted: str | None = None

    # the client streams a non-seekable body with chunked encoding and never rewinds it
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        with self._cond:
            while True:
                if self.aborted is not None:
                    raise OSError(errno.ECANCELED, f"streaming upload stopped: {self.aborted}")
                limit = self._spool.size if self.end is None else self.end
                avail = limit - self._pos
                if avail > 0:
                    break
                if self.end is not None:
                    return b""
                if not self._cond.wait(self._stall):
                    self.aborted = f"no write for {self._stall:g} s"
            pos = self._pos
        want = avail if n < 0 else min(n, avail)
        data = os.pread(self._spool.fd, want, pos)
        if not data:
            raise OSError(errno.EIO, f"{self._spool.path}: short read at {pos}")
        with self._cond:
            self._pos = pos + len(data)
        return data

    def grew(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def finish(self, size: int, gen: int) -> None:
        """The writer is done (closed or fsynced): the stream ends at ``size`` bytes."""
        with self._cond:
            if self.end is None:
                self.end, self.end_gen = size, gen
            self._cond.notify_all()

    def abort(self, why: str) -> None:
        with self._cond:
            if self.aborted is None:
                self.aborted = why
            self._cond.notify_all()
