"""A multipart/form-data upload body read from a stream piece by piece, so memory use stays constant.

It hashes what it sends (MD5, to compare with the server's answer), calls read callbacks once per
byte even when an upload is repeated, and can be rewound when its stream can seek.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import IO, Any
from urllib.parse import quote

from .common import RequestError

logger = logging.getLogger(__name__)


def stream_size(stream: IO[bytes]) -> tuple[int, int] | None:
    """(start position, bytes left) of a seekable stream, or None if it cannot seek."""
    try:
        if not stream.seekable():
            return None
        start = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    return start, max(0, end - start)


class UploadBody:
    """The body of an upload (``metadata`` part optional, then ``content``).

    requests sends an object with ``__iter__`` piece by piece; the ``len`` attribute (not ``__len__``,
    so that None can mean unknown) gives it a Content-Length, else it uses chunked encoding.
    """

    def __init__(
        self,
        stream: IO[bytes],
        *,
        metadata: dict[str, Any] | None,
        filename: str,
        mime_type: str,
        chunk_size: int,
        read_callbacks: list[Callable[[bytes], Any]] | None = None,
    ) -> None:
        self._stream = stream
        self._chunk_size = chunk_size
        self._callbacks = list(read_callbacks or [])
        self.boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        head = b""
        if metadata is not None:
            head += (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n'
                f"{json.dumps(metadata)}\r\n"
            ).encode()
        # the server takes the name from metadata; the filename here is informative only
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="content"; '
            f'filename="{quote(filename or "content")}"\r\nContent-Type: {mime_type}\r\n\r\n'
        ).encode()
        self._head = head
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()

        self._pushback = b""
        sized = stream_size(stream)
        if sized is not None:
            self._start: int | None = sized[0]
            self.size: int | None = sized[1]
        else:
            # peek one piece so an empty stream still gets a fixed Content-Length (acd-api.md 13.10)
            self._start = None
            self._pushback = stream.read(chunk_size)
            self.size = 0 if not self._pushback else None
        self.len = None if self.size is None else len(self._head) + self.size + len(self._tail)

        self.started = False
        self.complete = False
        # a failure reading our own source: requests would report it as a connection error
        self.source_error: OSError | None = None
        self.sent = 0
        self._md5 = hashlib.md5(usedforsecurity=False)  # the protocol's content checksum
        self._reported = 0  # bytes already passed to read callbacks

    @property
    def replayable(self) -> bool:
        # unsent bodies can always go (the peeked first piece is kept); sent ones only if seekable
        return not self.started or self._start is not None or self.size == 0

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    def rewind(self) -> bool:
        """Reset to the beginning for another try; False if the stream cannot go back."""
        if not self.started:
            return True
        if not self.replayable:
            return False
        if self._start is not None:
            self._stream.seek(self._start)
        self.started = self.complete = False
        self.sent = 0
        self._md5 = hashlib.md5(usedforsecurity=False)  # the protocol's content checksum
        return True

    def _account(self, data: bytes) -> None:
        self._md5.update(data)
        end = self.sent + len(data)
        if end > self._reported and self._callbacks:
            fresh = data[self._reported - self.sent :] if self._reported > self.sent else data
            for callback in self._callbacks:
                callback(fresh)
        self._reported = max(self._reported, end)
        self.sent = end

    def __iter__(self) -> Iterator[bytes]:
        self.started = True
        yield self._head
        if self._pushback:
            self._account(self._pushback)
            yield self._pushback
        remaining = None if self.size is None else self.size - self.sent
        while remaining is None or remaining > 0:
            want = self._chunk_size if remaining is None else min(self._chunk_size, remaining)
            try:
                data = self._stream.read(want)
            except OSError as exc:
                self.source_error = exc
                raise
            if not data:
                break
            self._account(data)
            if remaining is not None:
                remaining -= len(data)
            yield data
        if remaining:
            # the declared Content-Length can no longer be met; abort rather than hang the server
            raise RequestError(
                RequestError.CODE.FAILED_SUBREQUEST,
                f"upload source shrank while sending: {remaining} of {self.size} bytes missing",
            )
        self.complete = True
        yield self._tail
