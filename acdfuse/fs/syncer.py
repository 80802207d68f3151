"""Keeps the mirror current: a sync every ``interval`` seconds and at once on SIGUSR1, plus the quota.

SIGUSR1 is blocked in every thread (``block_sync_signal`` runs in the main thread before any other
thread exists, so all threads inherit the mask) and taken synchronously by this loop with
sigtimedwait. That works while the main thread sits inside libfuse's C loop, where a Python signal
handler would never get to run.

Lock order: SyncLoop._lock is a leaf guarding the online flag and the quota tuple; no I/O under it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SYNC_SIGNAL = signal.SIGUSR1


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
        on_synced: Callable[[Any], None],
        interval: float,
        quota_interval: float,
        sync_first: bool = True,
        on_first: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        self._sync_first = sync_first
        self._on_first = on_first       # told how the first sync went (None: it succeeded)
        self.last_error: BaseException | None = None
        self._sync = sync
        self._fetch_quota = fetch_quota
        self._quota = quota
        self._on_synced = on_synced
        self._interval = interval
        self._quota_interval = quota_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._online: bool | None = None
        self.syncs = 0          # completed syncs, for tests and logs

    @property
    def online(self) -> bool | None:
        with self._lock:
            return self._online

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="acdfuse-sync", daemon=True)
        self._thread.start()

    def close(self, wait: float = 30.0) -> bool:
        """Stop the loop; False when a sync still runs after ``wait`` seconds.

        A sync against an unreachable server sits in the client's retries until its deadline; the
        loop's thread is a daemon, so a caller that is exiting may stop waiting for it sooner (the
        mirror keeps its last complete sync: a sync is all-or-nothing).
        """
        self._stop.set()
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

    def run_once(self) -> bool:
        """One sync plus, when due, a quota refresh. Returns whether the server answered."""
        try:
            result = self._sync()
        except Exception as exc:  # a failed sync keeps the old mirror; the next round retries
            self.last_error = exc
            self._set_online(False, exc)
            return False
        self.last_error = None
        self.syncs += 1
        self._set_online(True, None)
        try:
            self._on_synced(result)
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

    def _set_online(self, online: bool, exc: BaseException | None) -> None:
        with self._lock:
            was = self._online
            self._online = online
        if online and was is False:
            log.warning("server reachable again: back online, mirror synced")
        elif not online and was is not False:
            log.warning("sync failed, serving the local mirror (offline) until the server answers: %s", exc)
        elif not online:
            log.info("still offline: %s", exc)

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
