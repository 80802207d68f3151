"""Write-behind of fetched chunks to the disk tier, so slow disk writes stay off the fetch path.

Chunks wait in a queue bounded in bytes, which bounds the memory the queue holds.  When the disk
falls that far behind the network, by default the fetch that wants to queue more waits for room:
every chunk read reaches the disk, so a re-read after a restart needs no network at all, and a cold
read runs at the disk's pace when that is the slower one.  With ``skip_when_full`` new chunks are
not queued instead (the caller counts them): reads keep the network's pace and what was skipped is
cached on its next fetch; the writer threads then also run at a lower CPU priority.  A later
write-back spool can reuse the same shape for uploads.

Lock order: ``WriteBehind._cond`` is a leaf lock; disk writes run with no lock held.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from .diskcache import DiskCache, Stem

log = logging.getLogger(__name__)

_NICE = 10  # relative to the process: cache writes get a small share of a busy CPU

Done = Callable[[], None]
Wanted = Callable[[], bool]


def _always() -> bool:
    return True


def _lower_priority() -> None:
    """Let this thread yield the CPU to reads: filling the cache is the first thing to wait.

    On Linux a thread id works as a process id for setpriority and affects that thread alone.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)
    except (OSError, AttributeError) as exc:
        log.debug("cannot lower the cache writer's priority: %s", exc)


class WriteBehind:
    def __init__(self, disk: DiskCache, max_bytes: int, threads: int = 2,
                 skip_when_full: bool = False) -> None:
        self._disk = disk
        self._max_bytes = max_bytes
        self._skip_when_full = skip_when_full
        self._nthreads = threads
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[tuple[list[tuple[Stem, memoryview]], int, Done, Wanted]] = deque()
        self._queued = 0
        self._busy = 0
        self._closed = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self._nthreads):
            t = threading.Thread(target=self._loop, name=f"acdfuse-cachewrite-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, chunks: list[tuple[Stem, memoryview]], done: Done, wanted: Wanted = _always) -> bool:
        """Queue chunks for the disk; ``done`` runs after they were written (or skipped).

        ``wanted()`` is asked before and after writing: chunks of content invalidated while they
        waited are not written, or removed again.  A full queue makes this wait for room, or with
        ``skip_when_full`` return False at once (``done`` has run, nothing was queued).
        """
        size = sum(view.nbytes for _, view in chunks)
        with self._cond:
            # a batch is admitted into an empty queue even if it alone is over the bound
            if not self._skip_when_full:
                self._cond.wait_for(lambda: self._closed or not self._queued
                                    or self._queued + size <= self._max_bytes)
            queued = not self._closed and not (self._queued and self._queued + size > self._max_bytes)
            if queued:
                self._queue.append((chunks, size, done, wanted))
                self._queued += size
                self._cond.notify_all()
        if not queued:
            done()
        return queued

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is on disk (tests, benchmarks, shutdown)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write out what is queued (bounded by ``timeout``), then stop the threads."""
        deadline = time.monotonic() + timeout
        if not self.flush(timeout):
            log.warning("disk cache: %d bytes of chunks not written at shutdown", self._queued)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        if self._skip_when_full:
            # a writer that falls behind costs cache hits only, never read speed: let reads go first
            _lower_priority()
        while True:
            with self._cond:
                while not self._queue:
                    if self._closed:
                        return
                    self._cond.wait()
                chunks, size, done, wanted = self._queue.popleft()
                self._busy += 1
            try:
                if wanted():
                    for stem, view in chunks:
                        self._disk.put(stem, view)
                    if not wanted():
                        for stem, _ in chunks:
                            self._disk.discard(stem)
            except Exception:
                log.exception("disk cache write crashed")
            finally:
                try:
                    done()
                finally:
                    with self._cond:
                        self._queued -= size
                        self._busy -= 1
                        self._cond.notify_all()
