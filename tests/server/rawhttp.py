"""Raw HTTP/1.1 exchanges over a real loopback socket, for requests no HTTP library would send.

The fuzz and security tests need malformed framing (a wrong Content-Length, a broken chunked body,
thousands of headers, bytes that are no request at all), so requests are written as bytes here and the
answer is parsed with ``http.client.HTTPResponse`` on the same socket.
"""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass, field


@dataclass
class Answer:
    status: int  # 0: the server closed the connection without any answer
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def build(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    content_length: bool = True,
    close: bool = True,
) -> bytes:
    """A request as bytes; ``target`` and header values go out exactly as given."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    for k, v in headers or []:
        lines.append(f"{k}: {v}")
    if content_length and body and not any(k.lower() in ("content-length", "transfer-encoding")
                                           for k, _ in headers or []):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    return head + body


def exchange(port: int, raw: bytes, *, method: str = "GET", timeout: float = 20,
             half_close: bool = True) -> Answer:
    """Send ``raw`` and read one answer. ``half_close`` shuts our sending side after the request, so a
    server waiting for more body bytes sees the end of the stream instead of waiting for its timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(raw)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer (and close) before it has read everything we meant to send
        resp = http.client.HTTPResponse(s, method=method)
        try:
            resp.begin()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return Answer(0)
        try:
            body = resp.read()
        except (http.client.IncompleteRead, ConnectionResetError) as exc:
            body = getattr(exc, "partial", b"")
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
