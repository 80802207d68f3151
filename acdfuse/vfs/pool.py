"""Worker threads that run range fetches: reads someone waits on first, read-ahead behind.

At most ``readahead_limit`` read-ahead jobs run at once, so the remaining workers are always free
for reads a caller is blocked on.  A queued read-ahead job can be promoted when a reader starts
waiting for it.

Lock order: ``FetchPool._cond`` is a leaf lock; jobs run with no lock held.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


def _done() -> None:
    """What a finished job runs if it is picked again: nothing."""


class Job:
    """One unit of work; ``run`` must handle its own errors (they are only logged here)."""

    __slots__ = ("readahead", "run", "started")

    def __init__(self, run: Callable[[], None], readahead: bool) -> None:
        self.run = run
        self.readahead = readahead
        self.started = False


class FetchPool:
    def __init__(self, workers: int, readahead_limit: int, name: str = "acdfuse-fetch") -> None:
        self._workers = workers
        self._readahead_limit = readahead_limit
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._demand: deque[Job] = deque()
        self._ahead: deque[Job] = deque()
        self._active_ahead = 0
        self._closed = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self._workers):
            t = threading.Thread(target=self._loop, name=f"{self._name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self, timeout: float = 2.0) -> None:
        """Stop taking jobs; wait a little for running ones (a hung fetch must not hang close)."""
        with self._cond:
            self._closed = True
            dropped = list(self._demand) + list(self._ahead)
            self._demand.clear()
            self._ahead.clear()
            self._cond.notify_all()
        for job in dropped:
            if not job.started:
                job.started = True
                self._run(job)  # lets the job fail its waiters (the owner made fetch fail fast)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("fetch pool is closed")
            (self._ahead if job.readahead else self._demand).append(job)
            self._cond.notify()

    def promote(self, job: Job) -> None:
        """Someone waits on this read-ahead job: run it as soon as a demand worker is free."""
        with self._cond:
            if job.started or self._closed:
                return
            self._demand.append(job)
            self._cond.notify()

    def _next_locked(self) -> tuple[Job, bool] | None:
        while self._demand:
            job = self._demand.popleft()
            if not job.started:
                return job, False
        while self._ahead and self._active_ahead < self._readahead_limit:
            job = self._ahead.popleft()
            if not job.started:
                return job, True
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                picked = self._next_locked()
                while picked is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    picked = self._next_locked()
                job, counted = picked
                job.started = True
                if counted:
                    self._active_ahead += 1
            self._run(job)
            # a finished job may still sit in the other queue (promoted): let it hold nothing, and
            # an idle worker must not keep the last response alive either
            job.run = _done
            del job, picked
            if counted:
                with self._cond:
                    self._active_ahead -= 1
                    self._cond.notify()

    @staticmethod
    def _run(job: Job) -> None:
        try:
            job.run()
        except Exception:
            log.exception("fetch job crashed")
