"""Request bodies as byte streams: a Content-Length reader and a chunked (Transfer-Encoding) decoder.

Both expose ``read(n) -> bytes`` (``b""`` at the end) and never read past the end of the body, so the
keep-alive connection stays in sync. ``complete`` tells the HTTP layer whether the body was consumed.
acd_cli streams uploads from a generator, which requests sends chunked, so both framings are needed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Protocol


class BodyError(ValueError):
    """The body is malformed or the client went away before sending all of it."""


class BodyReader(Protocol):
    complete: bool

    def read(self, n: int) -> bytes: ...


class LengthReader:
    def __init__(
        self, rfile: io.BufferedIOBase, length: int, throttle: Callable[[int], None] | None = None
    ) -> None:
        self._rfile = rfile
        self.remaining = length
        self._throttle = throttle
        self.complete = length == 0

    def read(self, n: int) -> bytes:
        if self.remaining <= 0:
            self.complete = True
            return b""
        want = min(n, self.remaining)
        if self._throttle:
            self._throttle(want)
        data = self._rfile.read1(want)
        if not data:
            raise BodyError("client closed the connection before the end of the body")
        self.remaining -= len(data)
        if self.remaining == 0:
            self.complete = True
        return data


class ChunkedReader:
    _MAX_LINE = 4096

    def __init__(self, rfile: io.BufferedIOBase, throttle: Callable[[int], None] | None = None) -> None:
        self._rfile = rfile
        self._left = 0
        self._throttle = throttle
        self.complete = False

    def _line(self) -> bytes:
        line = self._rfile.readline(self._MAX_LINE + 1)
        if not line:
            raise BodyError("client closed the connection inside a chunked body")
        if len(line) > self._MAX_LINE or not line.endswith(b"\n"):
            raise BodyError("chunk header line too long")
        return line.rstrip(b"\r\n")

    def read(self, n: int) -> bytes:
        if self.complete:
            return b""
        if self._left == 0:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BodyError(f"bad chunk size {size_text[:20]!r}") from None
            if size < 0:
                raise BodyError("negative chunk size")
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                self.complete = True
                return b""
            self._left = size
        want = min(n, self._left)
        if self._throttle:
            self._throttle(want)
        data = self._rfile.read1(want)
        if not data:
            raise BodyError("client closed the connection inside a chunk")
        self._left -= len(data)
        if self._left == 0 and self._rfile.read(2) != b"\r\n":
            raise BodyError("chunk not terminated by CRLF")
        return data


def read_all(body: BodyReader, limit: int) -> bytes:
    """Read a whole (small) body; more than ``limit`` bytes raises OverflowError."""
    parts: list[bytes] = []
    total = 0
    while True:
        data = body.read(65536)
        if not data:
            return b"".join(parts)
        total += len(data)
        if total > limit:
            raise OverflowError(total)
        parts.append(data)


def drain(body: BodyReader, limit: int) -> bool:
    """Discard the rest of a body (up to ``limit`` bytes) so the connection can be reused."""
    total = 0
    while not body.complete:
        data = body.read(262144)
        if not data:
            return True
        total += len(data)
        if total > limit:
            return False
    return True
