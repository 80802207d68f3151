"""Python thread states for libfuse's worker threads, kept alive across FUSE callbacks.

Lock order: none; ``_pinned`` and ``_pins`` are only touched with the GIL held.
"""

from __future__ import annotations

import ctypes
import threading

_thread_state_get = ctypes.pythonapi.PyThreadState_Get
_thread_state_get.restype = ctypes.c_void_p
_gil_state_ensure = ctypes.pythonapi.PyGILState_Ensure
_gil_state_ensure.restype = ctypes.c_int
# A thread state pinned for a worker that libfuse later ends is never freed; this caps what can pile up.
# What it holds is small since the store closes the read connections of ended threads (9de756f): a
# thread state, its frame data stack and thread-local dicts, tens of KB (1024 of them: ~30 MB at
# most). libfuse2 ends ~2 workers per burst of parallel reads; past the cap, new workers pay a fresh
# state (and a new SQLite connection) per call.
MAX_PINNED = 1024
_pinned: dict[int, int | None] = {}   # OS thread id -> the Python thread state kept alive for it
_pins = 0                              # states pinned so far (ended threads' included)


def pin_thread_state() -> None:
    """Keep this libfuse worker thread's Python thread state alive between FUSE calls.

    ctypes gives a foreign thread a fresh thread state for every callback and destroys it on return,
    so every ``threading.local`` (the store's per-thread SQLite connection, for one) would start empty
    on each call: a new connection per lookup, and a leaked file descriptor each time. One extra
    PyGILState_Ensure without a release keeps the state for the thread's life. libfuse ends a worker
    only when more than ten sit idle, so the states left behind by ended threads stay few.
    """
    ident = threading.get_ident()
    state = _thread_state_get()
    if _pinned.get(ident) != state:
        global _pins
        if _pins >= MAX_PINNED:
            return   # enough left behind: later threads pay a fresh state per call instead
        _gil_state_ensure()
        _pinned[ident] = state
        _pins += 1
