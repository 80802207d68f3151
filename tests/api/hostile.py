"""A tiny, deliberately broken HTTP server on a real loopback socket, for tests of the client.

Each connection reads one request (request line, headers, a Content-Length or chunked body) and sends
back whatever bytes the test's ``respond`` function returns (malformed JSON, a wrong Content-Length,
a changes stream without its end...), then closes the connection. No HTTP library is involved on
this side, so nothing here fixes up what a test wants broken.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Responder = Callable[[Seen], bytes]


def answer(status: int = 200, body: bytes | str | Any = b"", *, length: int | None = None,
           headers: dict[str, str] | None = None, reason: str = "OK") -> bytes:
    """An HTTP/1.1 answer; ``body`` that is not bytes/str is sent as JSON. ``length`` overrides the
    Content-Length (a lie, when it differs from the body); -1 sends none."""
    if not isinstance(body, bytes | str):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    head = [f"HTTP/1.1 {status} {reason}", "Connection: close", "x-amzn-RequestId: hostile-1"]
    if length != -1:
        head.append(f"Content-Length: {len(data) if length is None else length}")
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def chunked(status: int, pieces: list[bytes], *, last: bool = True) -> bytes:
    """A chunked answer; ``last=False`` leaves out the terminating zero chunk (the body is cut)."""
    out = (f"HTTP/1.1 {status} OK\r\nConnection: close\r\nContent-Type: application/json\r\n"
           "Transfer-Encoding: chunked\r\n\r\n").encode()
    for p in pieces:
        out += b"%x\r\n" % len(p) + p + b"\r\n"
    return out + (b"0\r\n\r\n" if last else b"")


class HostileServer:
    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.seen: list[Seen] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(32)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hostile-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()  # wake accept()
        except OSError:
            pass
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            conn, _ = self._sock.accept()
            if self._stop.is_set():
                conn.close()
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                req = _read_request(conn)
                if req is None:
                    return
                self.seen.append(req)
                conn.sendall(self.respond(req))
                conn.shutdown(socket.SHUT_WR)
                # let the client read everything before the close, which would reset it otherwise
                while conn.recv(65536):
                    pass
            except OSError:
                return


def _read_request(conn: socket.socket) -> Seen | None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    body = rest
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(body) < n:
            data = conn.recv(65536)
            if not data:
                break
            body += data
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while not body.endswith(b"0\r\n\r\n"):
            data = conn.recv(65536)
            if not data:
                break
            body += data
    return Seen(method, path, headers, body)


def write_config(cdir: Path, base_url: str) -> Path:
    """A client config dir naming ``base_url``, with a token that needs no refresh."""
    cdir.mkdir(parents=True, exist_ok=True)
    files = {
        "oauth_data": {"access_token": "Atza|hostile", "refresh_token": "Atzr|hostile",
                       "token_type": "bearer", "expires_in": 3600, "exp_time": time.time() + 3600},
        "endpoint_data": {"customerExists": True, "metadataUrl": base_url + "/drive/v1/",
                          "contentUrl": base_url + "/cdproxy/", "exp_time": time.time() + 3600,
                          "acdfuse": {"ifMatch": "contentProperties.version", "maxFileSize": 10**9}},
        "acdfuse_server": {"base_url": base_url},
    }
    for name, content in files.items():
        path = cdir / name
        path.write_text(json.dumps(content))
        os.chmod(path, 0o600)
    return cdir
