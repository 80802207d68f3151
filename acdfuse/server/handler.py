"""HTTP/1.1 plumbing: one ``RequestHandler`` per connection (keep-alive), framing, faults, sendfile.

A request goes: count -> latency -> route -> auth -> injected error -> endpoint -> response. The body
of a request is always consumed (or the connection closed) before the next request is read, so a
rejected upload cannot desynchronise a keep-alive connection. Downloads use ``socket.sendfile``
(zero copy) unless the bandwidth cap or a cut needs to shape the bytes.
"""

from __future__ import annotations

import logging
import re
import socket
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from acdfuse.server.bodies import BodyError, BodyReader, ChunkedReader, LengthReader, drain
from acdfuse.server.errors import ApiError
from acdfuse.server.faults import Throttle
from acdfuse.server.messages import AnyResponse, FileResponse, Request, Response, StreamResponse
from acdfuse.server.multipart import MultipartError
from acdfuse.server.util import dumps

if TYPE_CHECKING:
    from acdfuse.server.server import DriveServer

log = logging.getLogger(__name__)

# The rest of a rejected body is read and thrown away, so the client (still sending) gets to read our
# answer (e.g. a 409 with the nodeId it needs) instead of a connection reset. After a 413 only a
# moderate amount is drained; beyond that the connection is closed.
DRAIN_SLACK = 1024 * 1024
DRAIN_AFTER_413 = 64 * 1024 * 1024
_BLOCK = 256 * 1024


# Secrets that can travel in a request line: tokeninfo's ?access_token=, OAuth codes and tokens sent
# as query parameters, and the tempLink token (a download without Authorization) in its path.
_SECRET_QUERY = re.compile(
    r"((?:access_token|refresh_token|code|client_secret|password)=)[^&\s\"]+", re.IGNORECASE
)
_SECRET_PATH = re.compile(r"(/templink/)[^?\s\"]+")


def redact(text: str) -> str:
    """``text`` (a request line, a log message) with the secrets it may hold replaced by ``***``."""
    return _SECRET_PATH.sub(r"\1***", _SECRET_QUERY.sub(r"\1***", text))


class _CutConnection(Exception):
    """A fault cut the response body; the connection is closed."""


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], drive_server: DriveServer) -> None:
        self.drive_server = drive_server
        self.open_connections: set[socket.socket] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6  # --host ::1
        super().__init__(address, RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection's handler raised. socketserver's default prints a traceback to stderr: for a
        client that reset or dropped its connection (a cut download, a killed mount) that is just noise
        on the console, and anything else belongs in the log."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.debug("connection from %s ended: %s", client_address, exc)
        else:
            log.error("request from %s failed", client_address, exc_info=True)


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes; without TCP_NODELAY, Nagle + delayed ACK add 40 ms
    disable_nagle_algorithm = True
    server_version = "acdfuse"
    sys_version = ""
    server: HTTPServer

    def setup(self) -> None:
        # socketserver reads ``timeout`` in setup(); per-server value, so set on the instance
        self.timeout = self.server.drive_server.config.idle_timeout  # type: ignore[misc]
        super().setup()
        self.server.open_connections.add(self.connection)
        self._throttle: Throttle | None = None
        self._throttle_rate = 0
        self._status = 0  # status of the response being sent (decides whether to drain the body)

    def finish(self) -> None:
        self.server.open_connections.discard(self.connection)
        self.server.drive_server.db.release_thread()
        try:
            super().finish()
        except OSError:
            log.debug("connection closed while flushing")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), redact(format % args))

    def log_error(self, format: str, *args: Any) -> None:
        # e.g. request line too long or a timeout; the client got (or gets) a 4xx, nothing broke here
        log.info("%s %s", self.address_string(), redact(format % args))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Refusals by http.server itself (a malformed request line, 414, 431, 505, an unknown method)
        get the JSON error body every other error has, and always a status line: a garbage request
        line leaves the version at HTTP/0.9, for which http.server sends a bare HTML page that no
        HTTP/1.x client can parse."""
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        self.request_id = str(uuid.uuid4())
        self.close_connection = True
        text = message or self.responses.get(code, ("Error", ""))[0]
        self.log_error("code %d, message %s", code, text)
        self._send_error(ApiError(code, text, bare=True))

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        # a HEAD answer has no body; the client would misread one as the next response
        self.request_id = str(uuid.uuid4())
        self.close_connection = True
        self._start(405, "", 0, {"Allow": "GET, POST, PUT, PATCH, DELETE"})

    # -- the request ------------------------------------------------------------------------------
    def _throttle_fn(self) -> Throttle | None:
        rate = self.server.drive_server.faults.settings.bandwidth
        if rate <= 0:
            return None
        if self._throttle is None or self._throttle_rate != rate:
            self._throttle = Throttle(rate)
            self._throttle_rate = rate
        return self._throttle

    def _body_reader(self) -> tuple[BodyReader, int | None]:
        """The request body's reader; a framing we cannot follow closes the connection after the reply."""
        te = self.headers.get("Transfer-Encoding", "")
        throttle = self._throttle_fn()
        if te:
            if te.strip().lower() != "chunked":
                self.close_connection = True
                raise ApiError(501, f"Transfer-Encoding {te!r} not supported")
            return ChunkedReader(self.rfile, throttle), None
        cl = self.headers.get("Content-Length")
        if cl is None:
            return LengthReader(self.rfile, 0), 0
        try:
            length = int(cl)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise ApiError(400, f"Invalid Content-Length {cl!r}") from None
        return LengthReader(self.rfile, length, throttle), length

    def _dispatch(self) -> None:
        srv = self.server.drive_server
        srv.stats.incr("requests")
        self.request_id = str(uuid.uuid4())
        latency = srv.faults.settings.latency_ms
        if latency > 0:
            time.sleep(latency / 1000.0)
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        body: BodyReader | None = None
        self._status = 0
        try:
            body, length = self._body_reader()
            req = Request(self.command, url.path, query, self.headers, body, length, srv.config.max_json_body)
            resp = self._handle(req)
            self._send(resp)
        except ApiError as e:
            self._send_error(e)
        except (BodyError, MultipartError) as e:
            self._send_error(ApiError(400, f"Cannot read from request: {e}"))
        except _CutConnection:
            self.close_connection = True
            return
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as e:
            log.debug("client went away: %s", e)
            self.close_connection = True
            return
        except Exception:
            if srv.closing:
                # close() pulled the database and sockets away under a running request: expected
                log.debug("request %s %s ended by server shutdown", self.command, url.path, exc_info=True)
                self.close_connection = True
                return
            log.exception("internal error on %s %s", self.command, url.path)
            self._send_error(ApiError(500, "Internal failure", bare=True))
        finally:
            if body is not None and not body.complete:
                limit = DRAIN_AFTER_413 if self._status == 413 else srv.config.max_file_size + DRAIN_SLACK
                try:
                    if not drain(body, limit):
                        self.close_connection = True
                except (BodyError, OSError):
                    self.close_connection = True

    def _handle(self, req: Request) -> AnyResponse:
        srv = self.server.drive_server
        if not (req.path.startswith("/drive/v1/") or req.path.startswith("/cdproxy/")):
            if req.path.startswith("/ap/") or req.path.startswith("/auth/o2/"):
                srv.stats.incr("oauth")
            resp = srv.oauth.handle(req)
            if resp is None:
                raise ApiError(404, f"No such resource: {req.path}", "NOT_FOUND")
            return resp
        route, params = srv.api.match(req.method, req.path)
        req.params = params
        if not route.public:
            try:
                acc_id = srv.auth.account_for(self.headers.get("Authorization"))
            except ApiError:
                srv.stats.incr("unauthorized")
                raise
            req.account = srv.drive.account(acc_id)
        srv.stats.incr(route.stat)
        injected = srv.faults.pick_error()
        if injected is not None:
            srv.stats.incr("injected_errors")
            if injected == 429:
                raise ApiError(429, "Rate exceeded", bare=True, headers={"Retry-After": "1"})
            if injected == 503:
                raise ApiError(503, "Service Unavailable", bare=True, headers={"Retry-After": "1"})
            raise ApiError(500, "Internal failure", bare=True)
        return srv.api.call(route, req)

    # -- responses --------------------------------------------------------------------------------
    def _start(
        self,
        status: int,
        content_type: str,
        length: int | None,
        headers: dict[str, str],
        *,
        chunked: bool = True,
    ) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("x-amzn-RequestId", self.request_id)
        if content_type:
            self.send_header("Content-Type", content_type)
        if length is None:
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _write(self, data: bytes | memoryview) -> None:
        throttle = self._throttle_fn()
        if throttle is None:
            self.wfile.write(data)
            return
        view = memoryview(data)
        step = max(1024, min(65536, throttle.rate // 10))
        for i in range(0, len(view), step):
            piece = view[i : i + step]
            throttle(len(piece))
            self.wfile.write(piece)

    def _cut(self, partial: bytes | memoryview) -> None:
        self.server.drive_server.stats.incr("cut_bodies")
        self._write(partial)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            log.debug("shutdown after cut failed")
        raise _CutConnection()

    def _send_error(self, e: ApiError) -> None:
        if e.status >= 500:
            log.info("answering %d: %s", e.status, e.message)
        if e.raw is not None:
            ctype, body = e.raw
        else:
            ctype, body = "application/json", dumps(e.body())
        headers = dict(e.headers)
        headers["x-amzn-ErrorType"] = e.error_type
        try:
            self._start(e.status, ctype, len(body), headers)
            self._write(body)
        except OSError as err:
            log.debug("could not send error reply: %s", err)
            self.close_connection = True

    def _send(self, resp: AnyResponse) -> None:
        faults = self.server.drive_server.faults
        ok = 200 <= resp.status < 300
        if isinstance(resp, Response):
            self._start(resp.status, resp.content_type, len(resp.body), resp.headers)
            cut = faults.pick_cut(len(resp.body)) if ok else None
            if cut is not None:
                self._cut(resp.body[:cut])
            self._write(resp.body)
        elif isinstance(resp, FileResponse):
            self._send_file(resp, faults.pick_cut(resp.length) if ok else None)
        else:
            self._send_stream(resp)

    def _send_file(self, resp: FileResponse, cut: int | None) -> None:
        with open(resp.path, "rb") as f:
            self._start(resp.status, resp.content_type, resp.length, resp.headers)
            if resp.length == 0:
                return
            throttle = self._throttle_fn()
            if throttle is None and cut is None:
                sent = self.connection.sendfile(f, resp.start, resp.length)
                if sent != resp.length:
                    raise BrokenPipeError(f"sendfile stopped after {sent} of {resp.length} bytes")
                return
            f.seek(resp.start)
            left = resp.length if cut is None else cut
            while left > 0:
                data = f.read(min(_BLOCK, left))
                if not data:
                    raise BrokenPipeError("blob shorter than its recorded size")
                left -= len(data)
                self._write(data)
            if cut is not None:
                self._cut(b"")

    def _send_stream(self, resp: StreamResponse) -> None:
        faults = self.server.drive_server.faults
        cutting = faults.pick_cut(1) is not None
        # HTTP/1.0 has no chunked encoding: the end of the body is the end of the connection
        chunked = self.request_version != "HTTP/1.0"
        if not chunked:
            self.close_connection = True
        self._start(resp.status, resp.content_type, None, resp.headers, chunked=chunked)
        chunks = resp.chunks
        try:
            for data in chunks:
                frame = b"%x\r\n" % len(data) if chunked else b""
                if cutting and (data.startswith(b'{"end"') or faults.chance(0.5)):
                    # cut inside this chunk: the client never sees the end marker
                    n = faults.randrange(len(data))
                    self._cut(frame + data[:n])
                self._write(frame + data + (b"\r\n" if chunked else b""))
            if chunked:
                self._write(b"0\r\n\r\n")
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
