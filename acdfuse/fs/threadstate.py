"""Python thread states for libfuse's worker threads, kept alive across FUSE callbacks.

Set up when a mount starts (``ThreadStatePins`` in binding.py), never at import: the ctypes function
pointers used here are private prototypes, so the process-wide ``ctypes.pythonapi`` symbols keep
their own ``restype``/``argtypes``.

Lock order: none; ``_pinned`` and ``_pins`` are only touched with the GIL held.
"""

from __future__ import annotations

import ctypes
import threading

# A thread state pinned for a worker that libfuse later ends is never freed; this caps what can pile up.
# Measured (commit "fs: pin libfuse worker thread states at mount start"): 1024 ended foreign threads
# left 4.4 MB of pinned states, 4.4 kB each; their thread-locals add little since the store closes the
# read connections of ended threads (9de756f). A live worker's state keeps its SQLite read connection
# and its page cache (up to 8 MiB, store/database.py): that, not the pinning, is the mount's extra RSS,
# and what makes `find -ls` ~4x faster. libfuse2 ends ~2 workers per burst of parallel reads; past the
# cap, new workers pay a fresh state (and a new SQLite connection) per call.
MAX_PINNED = 1024


class ThreadStatePins:
    """Keeps each libfuse worker thread's Python thread state alive between FUSE calls (up to a bound).

    ctypes gives a foreign thread a fresh thread state for every callback and destroys it on return,
    so every ``threading.local`` (the store's per-thread SQLite connection, for one) would start empty
    on each call: a new connection per lookup. One extra PyGILState_Ensure without a release keeps the
    state for the thread's life. libfuse ends a worker only when more than ten sit idle, so the states
    left behind by ended threads stay few; ``limit`` bounds them all the same.
    """

    def __init__(self, limit: int = MAX_PINNED) -> None:
        # PYFUNCTYPE: called with the GIL held, as these two must be
        self._thread_state_get = ctypes.PYFUNCTYPE(ctypes.c_void_p)(("PyThreadState_Get", ctypes.pythonapi))
        self._gil_state_ensure = ctypes.PYFUNCTYPE(ctypes.c_int)(("PyGILState_Ensure", ctypes.pythonapi))
        self.limit = limit
        self._pinned: dict[int, int | None] = {}   # OS thread id -> the Python thread state kept for it
        self.pins = 0                               # states pinned so far (ended threads' included)

    def pin(self) -> None:
        """Pin the calling thread's state, once per thread state, until ``limit`` states are pinned."""
        ident = threading.get_ident()
        state = self._thread_state_get()
        if self._pinned.get(ident) != state:
            if self.pins >= self.limit:
                return   # enough left behind: later threads pay a fresh state per call instead
            self._gil_state_ensure()
            self._pinned[ident] = state
            self.pins += 1
