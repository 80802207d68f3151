"""Read-ahead policy of one open file: spot a sequential reader and size its window.

Pure bookkeeping, no locks and no I/O: the owner (``ContentReader``) calls ``on_read`` with its
own lock held and does the fetching.  The window starts at ``initial`` once a read continues the
previous one (or starts at offset 0), and doubles each time the reader has eaten half of what
was scheduled ahead, up to ``maximum``.  Reads that land inside the window just read or just
scheduled count as sequential, so the kernel's own slightly reordered readahead requests do not
reset it; a read elsewhere turns read-ahead off until the reader goes sequential again.
"""

from __future__ import annotations


class ReadAheadState:
    __slots__ = ("ahead_end", "initial", "maximum", "next_offset", "size", "window")

    def __init__(self, size: int, initial: int, maximum: int) -> None:
        self.size = size
        self.initial = max(1, min(initial, maximum)) if maximum > 0 else 0
        self.maximum = maximum
        self.window = 0  # 0: not sequential, no read-ahead
        self.next_offset = 0  # where a sequential reader reads next
        self.ahead_end = 0  # read-ahead has been scheduled up to here

    def on_read(self, offset: int, end: int) -> tuple[int, int] | None:
        """Record a read of [offset, end); return a byte range to fetch ahead, or None."""
        if self.maximum <= 0:
            return None
        if self.window and self._in_stream(offset):
            self.next_offset = max(self.next_offset, end)
        elif offset == self.next_offset:
            self.window = self.initial
            self.next_offset = end
            self.ahead_end = end  # a new stream: what an old one scheduled is no guide
        else:
            self.window = 0
            self.next_offset = end
            return None
        if self.next_offset >= self.size:
            return None
        if self.ahead_end - self.next_offset >= self.window // 2 and self.ahead_end > self.next_offset:
            return None  # enough is on its way
        if self.ahead_end > self.next_offset:
            # the reader used up half the window: grow it before going further ahead
            self.window = min(self.window * 2, self.maximum)
        start = max(self.ahead_end, self.next_offset)
        stop = min(self.size, self.next_offset + self.window)
        if stop <= start:
            return None
        return start, stop

    def scheduled(self, stop: int) -> None:
        """The owner scheduled read-ahead up to ``stop`` (maybe less than asked: budget)."""
        self.ahead_end = max(self.ahead_end, stop)

    def _in_stream(self, offset: int) -> bool:
        low = self.next_offset - self.window
        high = max(self.ahead_end, self.next_offset) + self.window // 2
        return low <= offset <= high
