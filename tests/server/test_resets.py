"""A client that resets its keep-alive connection between two requests is nothing to report.

Found by the many-mounts run: a mount that stops reading an answer it no longer wants (a pinned read
whose content changed) closes its connection with bytes unread, the kernel sends a reset, and the
server's next wait for a request line failed with ConnectionResetError, which socketserver printed
as a traceback on stderr (outside the log, so no test saw it).
"""

from __future__ import annotations

import logging
import socket
import struct
import time

import pytest

from acdfuse.server import DriveServer


def test_a_reset_between_requests_is_quiet(drive_server: DriveServer, capfd: pytest.CaptureFixture[str],
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="acdfuse.server.handler")
    token = drive_server.access_token()
    host, port = "127.0.0.1", drive_server.port
    for _ in range(5):
        s = socket.create_connection((host, port), timeout=30)
        s.sendall(f"GET /drive/v1/account/quota HTTP/1.1\r\nHost: {host}:{port}\r\n"
                  f"Authorization: Bearer {token}\r\n\r\n".encode())
        assert s.recv(12).startswith(b"HTTP/1.1 200")     # the rest of the answer stays unread
        # close with unread bytes and no linger: the kernel sends RST instead of FIN
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    # the server still answers, and said nothing on stderr
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(f"GET /drive/v1/account/quota HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
              f"Authorization: Bearer {token}\r\n\r\n".encode())
    assert s.recv(12).startswith(b"HTTP/1.1 200")
    s.close()
    # every reset was seen by the server (a DEBUG line each), so all its output is in by now
    deadline = time.monotonic() + 30
    def seen() -> int:     # between requests (handle_error), or while answering (the handler)
        return sum("ended:" in r.getMessage() or "went away" in r.getMessage() for r in caplog.records)

    while seen() < 5:
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.05)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err, err
