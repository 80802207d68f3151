"""The mount's control socket: ``acdfuse status`` and ``acdfuse sync`` talk to a running mount here.

A unix stream socket in the run dir, beside the mount's pid file, mode 0600 (the run dir is this user's
alone as well). A client sends one JSON request per line (``{"op": "status"}``, ``{"op": "sync"}``) and
reads JSON lines back: any number of ``{"progress": ...}`` lines, then one final answer with
``"ok"``. The server is one accept thread plus one short-lived thread per connection; a handler gets
the request and an ``emit`` callable for progress lines.

``SyncProgress`` counts the nodes the running sync has read from the changes stream, so the sync
command can show nodes per second.

Lock order: ControlServer._lock and SyncProgress._lock are leaves; no socket I/O under either.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], dict[str, Any]]

# sun_path holds 108 bytes; a longer path (a deep test dir) is reached through /proc/self/fd
_SUN_PATH_MAX = 100
_MAX_REQUEST = 64 * 1024


class ControlError(Exception):
    """The mount did not answer on its control socket (or answered with an error)."""


@contextlib.contextmanager
def _short_path(path: Path) -> Any:
    """A name for ``path`` that fits sun_path: itself, or its dir through an O_PATH fd."""
    if len(os.fsencode(str(path))) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class SyncProgress:
    """Nodes read by the running sync (reset when one starts), for progress lines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes = 0
        self._started = 0.0

    def begin(self) -> None:
        with self._lock:
            self._nodes, self._started = 0, time.monotonic()

    def add(self, nodes: int) -> None:
        with self._lock:
            self._nodes += nodes

    def snapshot(self) -> tuple[int, float]:
        """(nodes read so far, seconds since the sync began)."""
        with self._lock:
            return self._nodes, (time.monotonic() - self._started) if self._started else 0.0


class ControlServer:
    """Serves ``handlers[op]`` on a unix socket at ``path`` until ``close()``."""

    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self._handlers = handlers
        self._lock = threading.Lock()
        self._closed = False
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()          # left by a killed mount of this mount point (we hold its lock)
        old_umask = os.umask(0o177)     # born 0600: no window in which others could connect
        try:
            with _short_path(self.path) as name:
                sock.bind(name)
        finally:
            os.umask(old_umask)
        sock.listen(8)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="acdfuse-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)     # wakes accept()
            sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            sock = self._sock
            if sock is None:
                return
            try:
                conn, _ = sock.accept()
            except OSError:
                with self._lock:
                    if self._closed:
                        return
                log.warning("control socket %s: accept failed", self.path, exc_info=True)
                return
            threading.Thread(target=self._serve, args=(conn,), name="acdfuse-control-conn",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:
            def emit(obj: dict[str, Any]) -> None:
                stream.write(json.dumps(obj).encode() + b"\n")
                stream.flush()

            try:
                for line in stream:
                    if len(line) > _MAX_REQUEST:
                        emit({"ok": False, "error": "request too long"})
                        return
                    try:
                        request = json.loads(line)
                        handler = self._handlers[request["op"]]
                    except (ValueError, KeyError, TypeError):
                        emit({"ok": False, "error": f"not a request: {line[:200]!r}"})
                        continue
                    try:
                        answer = handler(request, emit)
                    except Exception as exc:  # one request failing must not end the control thread
                        log.exception("control request %s failed", request.get("op"))
                        answer = {"ok": False, "error": str(exc)}
                    emit(answer)
            except OSError:
                return      # the client went away


def request(path: Path, req: dict[str, Any], timeout: float,
            on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Send one request to the mount at ``path`` and return its final answer; ControlError on failure."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with _short_path(path) as name:
            sock.connect(name)
        with sock.makefile("rwb") as stream:
            stream.write(json.dumps(req).encode() + b"\n")
            stream.flush()
            for line in stream:
                answer = json.loads(line)
                if "progress" in answer:
                    if on_progress is not None:
                        on_progress(answer["progress"])
                    continue
                if not answer.get("ok"):
                    raise ControlError(str(answer.get("error", "the mount refused the request")))
                return dict(answer)
    except (OSError, ValueError) as exc:
        raise ControlError(f"no answer on {path}: {exc}") from exc
    finally:
        sock.close()
    raise ControlError(f"the mount closed {path} without an answer")
