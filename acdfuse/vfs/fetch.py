"""The mount's fetch for the content reader: pinned range downloads with a short memory of failures.

Pinning: every range names the content key of the handle that needs it. When that key is an md5 the
download is pinned to it (``content_md5``), so the server answers 412 instead of newer bytes; the
reader turns that into ESTALE for the handle, and a sync is asked for at once. A handle therefore reads
its own content version or gets an errno, never a mix of two versions.

Failure memory: when the server cannot be reached, the kernel re-issues a failed read at once (its
readahead failed, then it reads the page synchronously), and each attempt would spend the client's
whole retry schedule again, so the caller would wait longer than ``--timeout``. Until ``timeout``
seconds after the first attempt of a range that failed that way began, a new fetch of an overlapping
range first asks ``probe()`` (a plain TCP connect, see api/probe.py) whether the server is back: if
not, it fails at once with an OSError carrying the remembered error's errno (``errno_of``: the errno
table of fs/errors.py, handed in by the composition root); if it is, the download runs as usual. Any
successful download ends the memory (the server is back).

Lock order: ``PinnedFetch._lock`` is a leaf; no I/O runs under it.
"""

from __future__ import annotations

import errno
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from acdfuse.api.common import ConnectionFailed, PreconditionFailed, RequestError

log = logging.getLogger(__name__)

MD5 = re.compile(r"[0-9a-f]{32}")
MAX_REMEMBERED = 1024

Chunk = bytes | bytearray | memoryview
Download = Callable[..., Chunk]


@dataclass(frozen=True, slots=True)
class _Failure:
    node_id: str
    start: int
    end: int
    until: float            # monotonic time the memory of this failure ends
    error: BaseException


def pinned_md5(content_key: str) -> str | None:
    """The md5 to pin a download to, when the content key is one (a "v<N>" key cannot be pinned)."""
    return content_key if MD5.fullmatch(content_key) else None


def unreachable(exc: RequestError) -> bool:
    """The server could not be reached at all, as opposed to an answer about this node (a 5xx or a
    cut body is an answer: those are not remembered)."""
    return isinstance(exc, ConnectionFailed)


class PinnedFetch:
    """``fetch(node_id, offset, length, content_key)`` for ``ContentReader`` over ``download_chunk``."""

    def __init__(self, download: Download, timeout: float, *,
                 on_stale: Callable[[str], None] | None = None,
                 probe: Callable[[], bool] = lambda: False,
                 errno_of: Callable[[BaseException], int] = lambda exc: errno.EIO,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._download = download
        self._errno_of = errno_of
        self._probe = probe
        self._timeout = timeout
        self._on_stale = on_stale
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []

    def __call__(self, node_id: str, offset: int, length: int, content_key: str) -> Chunk:
        started = self._clock()
        self._raise_if_failed_recently(node_id, offset, offset + length, started)
        try:
            # pooled: the reader keeps only views of the answer, so its buffer can serve again once
            # the cache has let go of them (see ContentMixin.download_chunk)
            data = self._download(node_id, offset, length, content_md5=pinned_md5(content_key), pooled=True)
        except RequestError as exc:
            if isinstance(exc, PreconditionFailed):
                log.info("%s changed on the server since content %s; syncing now", node_id, content_key)
                if self._on_stale is not None:
                    self._on_stale(node_id)
            elif unreachable(exc):
                self._remember(node_id, offset, offset + length, started + self._timeout, exc)
            raise
        if self._failures:
            with self._lock:
                self._failures.clear()
        return data

    def _raise_if_failed_recently(self, node_id: str, start: int, end: int, now: float) -> None:
        if not self._failures:
            return
        with self._lock:
            self._failures = [f for f in self._failures if f.until > now]
            hit = next((f for f in self._failures
                        if f.node_id == node_id and f.start < end and start < f.end), None)
        if hit is not None and not self._probe():
            code = self._errno_of(hit.error) or errno.EIO
            raise OSError(code, f"bytes {start}-{end - 1} of {node_id}: the server failed this range "
                                f"moments ago and is still unreachable ({hit.error})")

    def _remember(self, node_id: str, start: int, end: int, until: float, exc: BaseException) -> None:
        with self._lock:
            self._failures.append(_Failure(node_id, start, end, until, exc))
            del self._failures[:-MAX_REMEMBERED]
