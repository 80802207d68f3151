"""The write-back queue: runs each dirty file's upload at its due time, retries failures with back-off.

States (journal.py names them): a key is *queued* with a due time (the end of the quiet delay after
its last release; a new ``queue`` call pushes it back, so a file rewritten many times in a row is
uploaded once), then *uploading* on a worker, then gone (done), or *failed*: a transient error is
retried after a capped exponential back-off, an error that will never succeed is reported once and
waits for a new write (``queue``) or the next mount.

The queue knows nothing of files or HTTP: ``run(key)`` does the upload and raises on failure, and
``permanent(exc)`` says which failures are final. Every state change goes to ``on_change`` (the
journal write and the fsync waiters live there).

Priorities: the ``workers`` that upload after the quiet delay run at a lower CPU priority (Linux: a
thread's own nice value), so a burst of background uploads does not slow the file operations of the
mount (10,000 small files: the create loop took 26 s with them at normal priority, 16 s at nice 10).
What an fsync waits for (``urgent``) also goes to one worker at normal priority, so a waiting
application is not held back by that lower priority. A nice value does not help against the GIL,
though: while ``busy()`` says the mount's callers are at work, the background workers run one upload
at a time (10,000 small files: the create loop took 22-23 s with three uploads beside it, 15-16 s
with one).

Lock order: ``WriteBack._cond`` is a leaf. ``run`` and ``on_change`` are called without it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

QUEUED = "queued"
UPLOADING = "uploading"
FAILED = "failed"
DONE = "done"
HELD = "dirty"


# while the mount's callers are busy, a background worker with another upload running waits this long
# before it looks again (see ``busy``)
YIELD_WAIT = 0.05
# nice value of the background upload workers (see the module docstring)
_NICE = 10


def _lower_priority() -> None:
    """On Linux a thread id works as a process id for setpriority and affects that thread alone."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICE)
    except (OSError, AttributeError) as exc:
        log.debug("cannot lower the upload worker's priority: %s", exc)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential back-off with jitter: ``first`` * 2^(n-1) s after n failures, at most ``cap``."""

    first: float = 2.0
    cap: float = 300.0
    jitter: float = 0.25       # each delay is shortened by up to this fraction, so retries spread out

    def delay(self, attempts: int) -> float:
        base = min(self.cap, self.first * (2 ** max(0, min(attempts - 1, 30))))
        return base * (1.0 - self.jitter * random.random())  # noqa: S311 - spreads retries, no secret


@dataclass
class Change:
    """One state change of a key, as ``on_change`` gets it."""

    key: int
    state: str
    attempts: int
    next_try: float | None       # wall clock time of the next try (None: not scheduled)
    error: BaseException | None


@dataclass(eq=False)
class _Entry:
    key: int
    state: str
    due: float | None = None            # monotonic time it may run
    urgent: bool = False                # due now whatever later queue() calls say (fsync)
    attempts: int = 0
    running: bool = False
    again: float | None = None          # queued again (this due time) while it was running
    cancelled: bool = False
    error: BaseException | None = None


class WriteBack:
    """A small scheduler of uploads by key (see the module docstring)."""

    def __init__(self, run: Callable[[int], None], *, permanent: Callable[[BaseException], bool],
                 on_change: Callable[[Change], None], describe: Callable[[int], str] = str,
                 workers: int = 3, policy: RetryPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 busy: Callable[[], bool] | None = None) -> None:
        self._run = run
        self._permanent = permanent
        self._on_change = on_change
        self._describe = describe
        self._workers = max(1, workers)
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._entries: dict[int, _Entry] = {}
        self._heap: list[tuple[float, int, int]] = []     # (due, tiebreak, key); stale items skipped
        self._urgent_heap: list[tuple[float, int, int]] = []   # the same, of urgent entries only
        self._tie = itertools.count()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._inflight = 0        # runs in progress, cancelled keys' included
        self._background = 0      # of them, on the background workers
        self._busy = busy
        self.uploads = 0          # completed runs, for tests and stats
        self.failures = 0

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self._workers):
            t = threading.Thread(target=self._loop, args=(False,), name=f"acdfuse-upload-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._loop, args=(True,), name="acdfuse-upload-urgent", daemon=True)
        t.start()
        self._threads.append(t)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop taking work; wait up to ``timeout`` for uploads in flight. False if some still run
        (their rows stay 'uploading' in the journal and the next mount repeats them)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        alive = False
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
            alive = alive or t.is_alive()
        return not alive

    # ---- scheduling --------------------------------------------------------------------------
    def queue(self, key: int, delay: float, *, record: bool = True) -> None:
        """Upload ``key`` once ``delay`` seconds pass without another queue() of it. ``record`` False:
        the caller records the queued state itself (no ``on_change`` for it)."""
        with self._cond:
            entry = self._entries.get(key)
            due = self._clock() + max(0.0, delay)
            if entry is None:
                entry = self._entries[key] = _Entry(key, QUEUED)
            if entry.running:
                entry.again = due if entry.again is None or not entry.urgent else min(due, entry.again)
                return
            if entry.urgent and entry.due is not None:
                due = min(due, entry.due)
            entry.state = QUEUED
            entry.error = None
            self._schedule_locked(entry, due)
            change = self._change_locked(entry)
        if record:
            self._on_change(change)

    def urgent(self, key: int) -> None:
        """Upload now (fsync): ahead of its quiet delay, and now even after a failure."""
        with self._cond:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(key, QUEUED)
            entry.urgent = True
            if entry.running:
                entry.again = self._clock()
                return
            entry.state = QUEUED
            self._schedule_locked(entry, self._clock())
            change = self._change_locked(entry)
        self._on_change(change)

    def hold(self, key: int) -> None:
        """Not due while its file is open for writing: the next release queues it again.

        Except when an fsync waits for it (``urgent``): that upload runs now, open writers or not.
        Holding it would deadlock: the kernel keeps the inode locked during the fsync, so the other
        writer's next write blocks behind it and that writer never gets to the release that would
        queue the file again (found by the parallel random-operation checker, several handles on
        one file)."""
        with self._cond:
            entry = self._entries.get(key)
            if entry is None or entry.urgent:
                return
            if entry.running:
                entry.again = None
                return
            entry.state = HELD
            entry.due = None
            entry.urgent = False
            change = self._change_locked(entry)
        self._on_change(change)

    def cancel(self, key: int) -> None:
        """Forget ``key`` (its file is gone); an upload in flight finishes and is then dropped."""
        with self._cond:
            entry = self._entries.pop(key, None)
            if entry is not None:
                entry.cancelled = True
                entry.due = None
            self._cond.notify_all()

    def state(self, key: int) -> str | None:
        with self._cond:
            entry = self._entries.get(key)
            return None if entry is None else entry.state

    def pending(self) -> dict[str, int]:
        """Number of keys per state."""
        with self._cond:
            out: dict[str, int] = {}
            for entry in self._entries.values():
                state = UPLOADING if entry.running else entry.state
                out[state] = out.get(state, 0) + 1
            return out

    def wait_idle(self, timeout: float | None, progress: Callable[[dict[str, int]], None] | None = None,
                  every: float = 1.0) -> bool:
        """Wait until nothing is queued, uploading or waiting for a retry (final failures and held
        keys do not count). ``progress`` gets the per-state counts at most every ``every`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                busy = [e for e in self._entries.values()
                        if e.running or e.state == QUEUED or (e.state == FAILED and e.due is not None)]
                if not busy and not self._inflight:
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                counts: dict[str, int] = {}
                for e in busy:
                    s = UPLOADING if e.running else e.state
                    counts[s] = counts.get(s, 0) + 1
                if progress is not None:
                    self._cond.release()
                    try:
                        progress(counts)
                    finally:
                        self._cond.acquire()
                self._cond.wait(every if left is None else min(every, left))

    # ---- internals ---------------------------------------------------------------------------
    def _schedule_locked(self, entry: _Entry, due: float) -> None:
        entry.due = due
        item = (due, next(self._tie), entry.key)
        heapq.heappush(self._heap, item)
        if entry.urgent:
            heapq.heappush(self._urgent_heap, item)
        self._cond.notify_all()

    def _change_locked(self, entry: _Entry) -> Change:
        next_try = None
        if entry.due is not None:
            next_try = time.time() + max(0.0, entry.due - self._clock())
        state = UPLOADING if entry.running else entry.state
        return Change(entry.key, state, entry.attempts, next_try, entry.error)

    def _next_locked(self, urgent_only: bool) -> _Entry | None:
        """The entry due now, or None after waiting as long as the next due time allows."""
        heap = self._urgent_heap if urgent_only else self._heap
        while heap:
            due, _, key = heap[0]
            entry = self._entries.get(key)
            if (entry is None or entry.running or entry.due != due
                    or (urgent_only and not entry.urgent)):
                heapq.heappop(heap)             # stale: cancelled, rescheduled, running or no longer urgent
                continue
            wait = due - self._clock()
            if wait > 0:
                self._cond.wait(wait)
                return None
            heapq.heappop(heap)
            return entry
        self._cond.wait()
        return None

    def _loop(self, urgent_only: bool) -> None:
        if not urgent_only:
            _lower_priority()
        while True:
            with self._cond:
                if self._stopping:
                    return
                if not urgent_only and self._background and self._busy is not None and self._busy():
                    # the mount's callers are at work: one background upload at a time until they
                    # pause, so uploads do not take the CPU (and the GIL) from them
                    self._cond.wait(YIELD_WAIT)
                    continue
                entry = self._next_locked(urgent_only)
                if entry is None:
                    continue
                entry.running = True
                self._inflight += 1
                if not urgent_only:
                    self._background += 1
                entry.urgent = False
                entry.again = None
                entry.due = None
                change = self._change_locked(entry)
            self._on_change(change)
            try:
                self._attempt(entry)
            finally:
                if not urgent_only:
                    with self._cond:
                        self._background -= 1

    def _attempt(self, entry: _Entry) -> None:
        error: BaseException | None = None
        try:
            self._run(entry.key)
        except Exception as exc:  # any failure of one upload must leave the worker alive
            error = exc
        with self._cond:
            entry.running = False
            self._inflight -= 1
            if entry.cancelled:
                self._cond.notify_all()
                return
            if error is None:
                self.uploads += 1
                if entry.attempts:
                    log.info("uploaded %s after %d failed attempt(s)", self._describe(entry.key),
                             entry.attempts)
                entry.attempts = 0
                entry.error = None
                if entry.again is not None:
                    entry.state = QUEUED
                    self._schedule_locked(entry, entry.again)
                else:
                    entry.state = DONE
                    del self._entries[entry.key]
            else:
                self.failures += 1
                entry.attempts += 1
                entry.error = error
                entry.state = FAILED
                final = self._permanent(error)
                if final:
                    entry.due = None
                    if entry.again is not None:
                        # written again since: that write gets its own try
                        self._schedule_locked(entry, max(entry.again, self._clock()))
                        entry.state = QUEUED
                elif entry.urgent:
                    self._schedule_locked(entry, self._clock())     # an fsync came in: it gets its try now
                else:
                    self._schedule_locked(entry, self._clock() + self._policy.delay(entry.attempts))
            entry.again = None
            change = self._change_locked(entry)
            self._cond.notify_all()
        if error is not None:
            self._report(entry, error, final, change)
        self._on_change(change)

    def _report(self, entry: _Entry, error: BaseException, final: bool, change: Change) -> None:
        what = self._describe(entry.key)
        if final:
            # said once per failure: the key waits for a new write or the next mount, not for a timer
            log.error("upload of %s failed and will not be retried until the file is written again or "
                      "the next mount; the local copy is kept: %s", what, error)
        elif entry.attempts == 1:
            wait = 0.0 if change.next_try is None else max(0.0, change.next_try - time.time())
            log.warning("upload of %s failed; retrying in %.0f s (the local copy is kept): %s",
                        what, wait, error)
        else:
            log.info("upload of %s failed again (attempt %d): %s", what, entry.attempts, error)
