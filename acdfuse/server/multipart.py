"""A streaming ``multipart/form-data`` parser with constant memory.

The body is read in blocks into a small buffer; part data is handed out as soon as it cannot be the
start of the next delimiter, so a 2 GiB content part never sits in memory. Everything before the first
delimiter (preamble) and after the close delimiter (epilogue — acd_cli writes one) is ignored.
"""

from __future__ import annotations

import re

from acdfuse.server.bodies import BodyReader

_BLOCK = 256 * 1024
_MAX_HEADERS = 16 * 1024
# bytes after the close delimiter (acd_cli writes a CRLF); more than this is not an epilogue
_MAX_EPILOGUE = 64 * 1024
_PARAM_RE = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


class MultipartError(ValueError):
    pass


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a ``multipart/form-data`` Content-Type, or MultipartError."""
    main = content_type.split(";", 1)[0].strip().lower()
    if main != "multipart/form-data":
        raise MultipartError(f"expected multipart/form-data, got {main or 'no content type'!r}")
    params = parse_params(content_type)
    b = params.get("boundary", "")
    if not b or len(b) > 200:
        raise MultipartError("missing or bad multipart boundary")
    return b.encode("latin-1")


def parse_params(header: str) -> dict[str, str]:
    out = {}
    for key, raw in _PARAM_RE.findall(header):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[key.lower()] = value
    return out


class Part:
    def __init__(self, reader: MultipartReader, headers: dict[str, str]) -> None:
        self._reader = reader
        self.headers = headers
        disp = parse_params(";" + headers.get("content-disposition", "").split(";", 1)[-1])
        self.name = disp.get("name", "")
        self.filename = disp.get("filename")
        self.content_type = headers.get("content-type", "")
        self.done = False

    def read(self, n: int = _BLOCK) -> bytes:
        if self.done:
            return b""
        data = self._reader._read_part(n)
        if not data:
            self.done = True
        return data

    def read_all(self, limit: int) -> bytes:
        out = bytearray()
        while True:
            data = self.read()
            if not data:
                return bytes(out)
            out += data
            if len(out) > limit:
                raise MultipartError(f"part {self.name!r} is larger than {limit} bytes")


class MultipartReader:
    def __init__(self, body: BodyReader, boundary: bytes) -> None:
        self._body = body
        self._delim = b"\r\n--" + boundary
        # a leading CRLF makes the first delimiter look like every other one
        self._buf = bytearray(b"\r\n")
        self._eof = False
        self._part: Part | None = None
        self._finished = False
        self._started = False

    def _fill(self) -> None:
        if self._eof:
            raise MultipartError("multipart body ended early")
        data = self._body.read(_BLOCK)
        if not data:
            self._eof = True
            return
        self._buf += data

    def _read_part(self, n: int) -> bytes:
        dl = len(self._delim)
        while True:
            idx = self._buf.find(self._delim)
            if idx == 0:
                return b""
            if idx > 0:
                k = min(idx, n)
            else:
                k = min(len(self._buf) - dl + 1, n)
            if k > 0:
                out = bytes(self._buf[:k])
                del self._buf[:k]
                return out
            if self._eof:
                raise MultipartError("multipart body ended inside a part")
            self._fill()

    def finish(self) -> None:
        """Read the epilogue to the end of the body (call after ``next_part`` returned None).

        A body whose framing is cut short (the client promised more bytes than it sent, or a chunked
        body lacks its last chunk) is an incomplete request even when the close delimiter came
        through: MultipartError or BodyError here, so nothing is committed for it.
        """
        if not self._finished:
            raise MultipartError("multipart body not read to its close delimiter")
        total = len(self._buf)
        self._buf.clear()
        while not self._eof:
            data = self._body.read(_BLOCK)
            if not data:
                self._eof = True
                break
            total += len(data)
            if total > _MAX_EPILOGUE:
                raise MultipartError("too much data after the multipart close delimiter")

    def next_part(self) -> Part | None:
        if self._finished:
            return None
        if self._part is not None:
            while self._part.read():  # skip what the caller did not read
                pass
        elif not self._started:
            self._started = True
            while self._buf.find(self._delim) < 0:  # preamble
                if self._eof:
                    raise MultipartError("no multipart boundary found")
                if len(self._buf) > _BLOCK:
                    del self._buf[: len(self._buf) - len(self._delim)]
                self._fill()
            del self._buf[: self._buf.find(self._delim)]
        # buffer starts with the delimiter
        while len(self._buf) < len(self._delim) + 2 and not self._eof:
            self._fill()
        del self._buf[: len(self._delim)]
        if self._buf[:2] == b"--":
            self._finished = True
            self._part = None
            return None
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > _MAX_HEADERS:
                raise MultipartError("multipart part headers too long")
            if self._eof:
                raise MultipartError("multipart body ended inside part headers")
            self._fill()
        head = bytes(self._buf[:end])
        del self._buf[: end + 4]
        first_crlf = head.find(b"\r\n")
        if first_crlf < 0:
            if head.strip(b" \t"):
                raise MultipartError("garbage after multipart boundary")
            lines: list[bytes] = []
        else:
            if head[:first_crlf].strip(b" \t"):
                raise MultipartError("garbage after multipart boundary")
            lines = head[first_crlf + 2 :].split(b"\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            if not line:
                continue
            key, sep, value = line.decode("utf-8", "replace").partition(":")
            if not sep:
                raise MultipartError("bad multipart part header")
            headers[key.strip().lower()] = value.strip()
        self._part = Part(self, headers)
        return self._part
