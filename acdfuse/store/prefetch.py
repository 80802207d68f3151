"""Read an iterator in a background thread, a few items ahead of the consumer.

The changes stream is network- and JSON-bound while staging is SQLite-bound (which releases the
GIL), so reading ahead lets the two overlap. The queue is bounded: at most ``depth`` change sets
(about ``depth`` x 1000 nodes) are held in memory. An exception of the source iterator is
re-raised in the consumer at the point where it happened in the stream.

Lock order: none held by this module across calls; the queue's own lock is a leaf.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(source: Iterable[T], depth: int = 3, name: str = "acdfuse-prefetch") -> Iterator[T]:
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        it = iter(source)
        try:
            for item in it:
                q.put(item)
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(_Failure(exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # a generator: let it close its HTTP response now

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        # The consumer stopped (done or failed). Empty the queue so that a producer blocked on
        # put() can make its last put, see ``stop`` and exit; it puts at most one more item
        # after this, so it never blocks again. We do not wait for it: it may be in the middle
        # of a slow network read, and it is a daemon that closes its stream when it gets out.
        stop.set()
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                break
