"""flock(2) helpers: the one place that takes, probes and waits for the file locks of acdfuse.

Every lock here is an exclusive flock on a file opened for it. The kernel drops a flock when the last
descriptor of its open file is closed, also when the process is killed, so a lock never outlives its
holder and no stale-lock cleanup exists anywhere. Callers close the descriptor to let go.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

# how often a wait with a deadline retries: flock(2) has no timeout of its own
_RETRY_INTERVAL = 0.05


class LockTimeout(TimeoutError):
    """The lock was still held by another process when the wait for it ended."""


def lock_fd(fd: int) -> None:
    """Lock an open file exclusively, at once: BlockingIOError when another open file holds it."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def take_lock(path: Path) -> int:
    """An exclusive flock on ``path`` (created 0600), held until its fd is closed or this process
    ends however it ends; BlockingIOError at once when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        lock_fd(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_held(path: Path) -> bool:
    """Whether another process holds the flock on ``path`` (a probe: taken and let go at once; a
    missing file is nobody's lock and is not created)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        lock_fd(fd)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def hold_lock(path: Path, timeout: float | None = None,
              on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the flock on ``path`` (created 0600) for the ``with`` block, waiting for another holder.

    ``timeout`` None waits as long as it takes (the holder is a process doing short work); otherwise
    LockTimeout when it is still held after ``timeout`` seconds, which only a stopped holder causes.
    ``on_wait`` is called once when the lock is not free at the first try (to say why we wait).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            _wait_for_lock(fd, path, timeout, on_wait)
        yield
    finally:
        os.close(fd)    # closing the only descriptor of this open file drops the flock


def _wait_for_lock(fd: int, path: Path, timeout: float, on_wait: Callable[[], None] | None) -> None:
    # flock(2) cannot wait with a deadline and no other process can wake us when it lets go, so a
    # blocked try is repeated: the one poll in acdfuse that no Event or Condition can replace
    deadline = time.monotonic() + timeout
    try:
        lock_fd(fd)
        return
    except BlockingIOError:
        if on_wait is not None:
            on_wait()
    while True:
        time.sleep(_RETRY_INTERVAL)
        try:
            lock_fd(fd)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{path} is still locked by another process after {timeout:.0f}s") from None
