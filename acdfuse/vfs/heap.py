"""Give freed chunk memory back to the OS now and then (glibc ``malloc_trim``).

Response buffers of many megabytes come and go from several threads; glibc keeps the freed
space in per-thread heaps, and the process's RSS drifts far above what the caches really hold.
``malloc_trim(0)`` releases whole free pages inside those heaps.  The call is cheap, but pages
given back fault in again when reused, so it runs only after every ``every`` bytes fetched (the
reader uses 256 MiB: most of the RSS gain for almost no CPU).  Elsewhere than glibc: a no-op.

Lock order: ``HeapTrimmer._lock`` is a leaf lock; the trim itself runs with no lock held.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class HeapTrimmer:
    def __init__(self, every: int) -> None:
        self._every = every
        self._lock = threading.Lock()
        self._since = 0
        self._trim: Callable[[int], int] | None = None
        self._looked = False

    def account(self, nbytes: int) -> None:
        """Count bytes that passed through; trim once ``every`` bytes have."""
        if self._every <= 0:
            return
        with self._lock:
            self._since += nbytes
            if self._since < self._every:
                return
            self._since = 0
            if not self._looked:
                self._looked = True
                self._trim = _find_malloc_trim()
                if self._trim is None:
                    log.debug("no malloc_trim here; freed memory stays with the allocator")
            trim = self._trim
        if trim is not None:
            trim(0)
