"""Keeps the mirror current: a sync every ``interval`` seconds and at once on SIGUSR1, plus the quota.

A failed sync leaves the last synced mirror in service. The loop tells two failures apart: the server
cannot be reached (``offline``: a transport error or a 5xx, see ``acdfuse.api.common.is_offline``), or
the sync itself is failing while the server may well be there (a refusal, bad data, a bug), which
waiting for the network will not cure and which the log must not call offline.

SIGUSR1 is blocked in every thread (``block_sync_signal`` runs in the main thread before any other
thread exists, so all threads inherit the mask) and taken synchronously by this loop with
sigtimedwait. That works while the main thread sits inside libfuse's C loop, where a Python signal
handler would never get to run.

It lives in runtime/, not fs/ or store/: it owns a thread and a process-wide signal, which only the
composition root may start. The store only knows how to apply one batch of changes.

Lock order: SyncLoop._lock is a leaf guarding the sync state and the quota tuple; no I/O under it.
``_rounds_done`` is a Condition on that same lock (``acdfuse sync`` waits on it for a round to end).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from acdfuse.api.common import is_offline

log = logging.getLogger(__name__)

SYNC_SIGNAL = signal.SIGUSR1

SyncState = Literal["online", "offline", "failing"]


def block_sync_signal() -> None:
    """Block SIGUSR1 in the calling thread and every thread it creates later. Main thread only."""
    # a handler as well, so a signal that slips to a thread without the mask never kills the process
    signal.signal(SYNC_SIGNAL, lambda signum, frame: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, {SYNC_SIGNAL})


class QuotaCache:
    """The last known (total, available) bytes of the account; statfs reads it without I/O."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sizes: tuple[int, int] = (0, 0)
        self.updated: float = 0.0

    def sizes(self) -> tuple[int, int]:
        with self._lock:
            return self._sizes

    def set(self, total: int, available: int) -> None:
        with self._lock:
            self._sizes = (int(total), int(available))
            self.updated = time.monotonic()


class SyncLoop:
    """A thread that runs ``sync()`` on a timer and on SIGUSR1, and refreshes the quota now and then."""

    def __init__(
        self,
        sync: Callable[[], Any],
        *,
        fetch_quota: Callable[[], tuple[int, int]],
        quota: QuotaCache,
        interval: float,
        quota_interval: float,
        on_first: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        self._sync_first = True
        self._on_first = on_first       # told how the first sync went (None: it succeeded)
        self.last_error: BaseException | None = None
        self._sync = sync
        self._fetch_quota = fetch_quota
        self._quota = quota
        self._listeners: list[Callable[[Any], None]] = []
        self._interval = interval
        self._quota_interval = quota_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._state: SyncState | None = None    # None until the first sync ended
        self.syncs = 0          # completed syncs, for tests and logs
        # rounds ended (either way) and whether one runs: what sync_and_wait waits for
        self._rounds_done = threading.Condition(self._lock)
        self._rounds = 0
        self._running = False
        self.last_sync_at: float | None = None     # wall clock time the last round ended

    @property
    def state(self) -> SyncState | None:
        """How the last sync went: "online", "offline" (server unreachable) or "failing"."""
        with self._lock:
            return self._state

    @property
    def online(self) -> bool | None:
        """Whether the last sync succeeded (None before the first one ended)."""
        state = self.state
        return None if state is None else state == "online"

    def add_listener(self, listener: Callable[[Any], None]) -> None:
        """Call ``listener(result)`` in the loop's thread after each sync that succeeded. Before start()."""
        self._listeners.append(listener)

    def start(self, sync_first: bool = True) -> None:
        """Start the thread. ``sync_first`` False: the mirror was synced just now, wait for the timer."""
        self._sync_first = sync_first
        self._thread = threading.Thread(target=self._run, name="acdfuse-sync", daemon=True)
        # the thread is born with SIGUSR1 blocked (a new thread inherits its creator's mask), so the
        # pthread_kill of request_sync/close can never hit it unmasked, even in a process that did not
        # call block_sync_signal (a test driving the stack in-process); the caller's mask is restored
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {SYNC_SIGNAL})
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def close(self, wait: float = 30.0) -> bool:
        """Stop the loop; False when a sync still runs after ``wait`` seconds.

        A sync against an unreachable server sits in the client's retries until its deadline; the
        loop's thread is a daemon, so a caller that is exiting may stop waiting for it sooner (the
        mirror keeps its last complete sync: a sync is all-or-nothing).
        """
        self._stop.set()
        with self._rounds_done:
            self._rounds_done.notify_all()      # an `acdfuse sync` waiting now gets its answer
        thread = self._thread
        if thread is not None and thread.ident is not None and thread.is_alive():
            signal.pthread_kill(thread.ident, SYNC_SIGNAL)   # wakes sigtimedwait at once
            thread.join(timeout=wait)
            if thread.is_alive():
                log.info("a sync is still running after %.0f s; not waiting for it", wait)
                return False
        return True

    def request_sync(self) -> None:
        """Sync as soon as possible (from any thread), as SIGUSR1 does."""
        thread = self._thread
        if thread is not None and thread.ident is not None and thread.is_alive():
            signal.pthread_kill(thread.ident, SYNC_SIGNAL)

    def sync_and_wait(self, timeout: float) -> bool:
        """Ask for a sync and wait until a round that began after the request has ended (any outcome;
        see ``state`` and ``last_error``). False when the loop is not running or the wait timed out."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        with self._rounds_done:
            # a round running now may have read the changes before the request: wait for the next one
            target = self._rounds + (2 if self._running else 1)
        self.request_sync()
        with self._rounds_done:
            return self._rounds_done.wait_for(lambda: self._rounds >= target or self._stop.is_set(),
                                              timeout) and self._rounds >= target

    def run_once(self) -> bool:
        """One sync plus, when due, a quota refresh. Returns whether the server answered."""
        with self._rounds_done:
            self._running = True
        try:
            return self._run_once()
        finally:
            with self._rounds_done:
                self._running = False
                self._rounds += 1
                self.last_sync_at = time.time()
                self._rounds_done.notify_all()

    def _run_once(self) -> bool:
        try:
            result = self._sync()
        except Exception as exc:  # a failed sync keeps the old mirror; the next round retries
            self.last_error = exc
            self._set_state("offline" if is_offline(exc) else "failing", exc)
            return False
        self.last_error = None
        self.syncs += 1
        self._set_state("online", None)
        for listener in self._listeners:
            try:
                listener(result)
            except Exception:  # the loop must outlive a bug in a callback, or syncing stops for good
                log.exception("after-sync step failed (the mirror itself is synced)")
        # the usage `df` shows changes only with the drive's content: refreshed when the sync brought
        # changes (an upload elsewhere shows in df after the next sync, as its file does), else now and then
        changed = int(getattr(result, "stored", 0) or 0) + int(getattr(result, "purged", 0) or 0) > 0
        if (changed or not self._quota.updated
                or time.monotonic() - self._quota.updated >= self._quota_interval):
            self.refresh_quota()
        return True

    def refresh_quota(self) -> None:
        try:
            total, available = self._fetch_quota()
        except Exception as exc:  # statfs keeps the last known numbers
            log.warning("quota refresh failed, statfs keeps the last numbers: %s", exc)
            return
        self._quota.set(total, available)

    def _set_state(self, state: SyncState, exc: BaseException | None) -> None:
        with self._lock:
            was = self._state
            self._state = state
        if state == "online":
            if was == "offline":
                log.warning("server reachable again: back online, mirror synced")
            elif was == "failing":
                log.warning("sync works again: mirror synced")
        elif state == was:
            log.info("still %s: %s", "offline" if state == "offline" else "failing to sync", exc)
        elif state == "offline":
            log.warning("sync failed, serving the local mirror (offline) until the server answers: %s", exc)
        else:
            # not the network: retrying will not help until the cause is fixed, so say so plainly
            log.warning("sync is failing, not offline (the server answered, or acdfuse itself failed: "
                        "see the log above); serving the last synced mirror, retrying every %.0f s: %s",
                        self._interval, exc)

    def _run(self) -> None:
        if self._sync_first:
            # a warm mirror is served at once; catching up with the server happens here, behind it
            self.run_once()
            if self._on_first is not None:
                try:
                    self._on_first(self.last_error)
                except Exception:  # a report of the first sync must not stop the syncing
                    log.exception("reporting the first sync failed")
        while not self._stop.is_set():
            got = signal.sigtimedwait({SYNC_SIGNAL}, self._interval)
            if self._stop.is_set():
                break
            log.debug("sync (%s)", "SIGUSR1" if got is not None else "timer")
            self.run_once()
