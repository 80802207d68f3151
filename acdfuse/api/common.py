"""Errors of the Cloud Drive client and the one table that turns HTTP answers into them.

Also the service URLs (Amazon's, or those of an ``acdfuse serve`` named in the config dir) and
``is_valid_id``. Endpoint methods never compare status codes themselves: they call
:func:`error_from_response`, which picks the :class:`RequestError` subclass.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

__all__ = [
    "OK_CODES",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "IncompleteResult",
    "NotFound",
    "RateLimited",
    "RequestError",
    "ServerError",
    "ServiceUrls",
    "Unauthorized",
    "error_class",
    "error_from_response",
    "is_valid_id",
    "load_service_urls",
    "make_error",
    "write_private_json",
]

# status codes that indicate request success (seed name, kept for code written against acd_cli)
OK_CODES = [requests.codes.OK]

# how much of an error body goes into a message; bodies can be HTML pages of a proxy
_MAX_SERVER_MSG = 500


class RequestError(Exception):
    """Catch-all exception class for connection errors and error answers of the server.

    ``status_code`` is the HTTP status or one of :class:`CODE`; ``msg`` names the operation, the node
    and the server's message. ``body`` keeps the raw error body, ``request_id`` the server's
    ``x-amzn-RequestId`` when there was one.
    """

    class CODE:
        CONN_EXCEPTION = 1000
        FAILED_SUBREQUEST = 1002
        INCOMPLETE_RESULT = 1003
        REFRESH_FAILED = 1004
        INVALID_TOKEN = 1005

    codes = requests.codes

    def __init__(self, status_code: int, msg: str) -> None:
        super().__init__(status_code, msg)
        self.status_code = status_code
        self.msg = msg if msg else "[acdfuse.api] no body received."
        self.body: str = ""
        self.request_id: str | None = None

    def __str__(self) -> str:
        return f"{type(self).__name__}: {self.status_code}, {self.msg}"


class NotFound(RequestError):
    """404: the node (or property, or owner) does not exist."""


class Conflict(RequestError):
    """409: a node with that name exists (``node_id`` is the existing one, when the server said so)."""

    def __init__(self, status_code: int, msg: str, *, node_id: str | None = None) -> None:
        super().__init__(status_code, msg)
        self.node_id = node_id


class Unauthorized(RequestError):
    """401 that survived one token refresh."""


class Forbidden(RequestError):
    """403: not allowed (quota, permissions)."""


class RateLimited(RequestError):
    """429 that outlasted the back-off; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, status_code: int, msg: str, *, retry_after: float | None = None) -> None:
        super().__init__(status_code, msg)
        self.retry_after = retry_after


class ServerError(RequestError):
    """5xx that outlasted the back-off."""


class ConnectionFailed(RequestError):
    """No complete answer: refused, reset or timed out connection.

    ``request_sent`` is False when the request surely never reached the server (safe to repeat).
    """

    def __init__(self, status_code: int, msg: str, *, request_sent: bool = True) -> None:
        super().__init__(status_code, msg)
        self.request_sent = request_sent


class IncompleteResult(RequestError):
    """A truncated answer: a body shorter than announced or a changes stream without its end mark."""


# The one status table. 5xx is a range and handled in error_class().
_STATUS_CLASSES: dict[int, type[RequestError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    RequestError.CODE.CONN_EXCEPTION: ConnectionFailed,
    RequestError.CODE.INCOMPLETE_RESULT: IncompleteResult,
}


def error_class(status_code: int) -> type[RequestError]:
    """The exception class for an HTTP status or a :class:`RequestError.CODE`."""
    if 500 <= status_code <= 599:
        return ServerError
    return _STATUS_CLASSES.get(status_code, RequestError)


def make_error(status_code: int, msg: str, **extra: Any) -> RequestError:
    """Build the right :class:`RequestError` subclass; ``extra`` holds subclass-only keywords."""
    cls = error_class(status_code)
    if cls is Conflict:
        return Conflict(status_code, msg, node_id=extra.get("node_id"))
    if cls is RateLimited:
        return RateLimited(status_code, msg, retry_after=extra.get("retry_after"))
    if cls is ConnectionFailed:
        return ConnectionFailed(status_code, msg, request_sent=extra.get("request_sent", True))
    return cls(status_code, msg)


def describe(operation: str, node: str | None = None) -> str:
    """``operation`` plus the node it acted on, the prefix of every error message."""
    return f"{operation} (node {node})" if node else operation


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds; an HTTP date is turned into a delta)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _server_message(body: str) -> tuple[str, dict[str, Any]]:
    """The human part of an error body: Amazon's ``message``, OAuth's ``error_description``, or text."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("message", "error_description", "error"):
            if parsed.get(key):
                return str(parsed[key])[:_MAX_SERVER_MSG], parsed
        return body.strip()[:_MAX_SERVER_MSG], parsed
    return body.strip()[:_MAX_SERVER_MSG], {}


def error_from_response(response: requests.Response, operation: str, node: str | None = None) -> RequestError:
    """Turn an unexpected answer into the matching :class:`RequestError`; reads (and closes) the body."""
    try:
        body = response.text
    except requests.RequestException as exc:  # the error body itself was cut
        body = f"<error body unreadable: {exc}>"
    finally:
        response.close()
    text, parsed = _server_message(body)
    status = response.status_code
    request_id = response.headers.get("x-amzn-RequestId")
    code = parsed.get("code") if isinstance(parsed, dict) else None
    detail = (
        f"HTTP {status}" + (f" {code}" if code else "") + (f", request {request_id}" if request_id else "")
    )
    msg = f"{describe(operation, node)}: {text or 'no body received'} [{detail}]"
    info = parsed.get("info") if isinstance(parsed, dict) else None
    if not isinstance(info, dict):
        info = {}
    err = make_error(
        status,
        msg,
        node_id=info.get("nodeId"),
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )
    err.body = body
    err.request_id = request_id
    return err


def is_valid_id(id: str) -> bool:
    """True for a 22 character node id made of letters, digits, ``-`` and ``_``."""
    return bool(id) and len(id) == 22 and re.fullmatch(r"[a-zA-Z0-9_-]+", id) is not None


# --- where the service lives -------------------------------------------------------------------

SERVER_FILE = "acdfuse_server"
"""config-dir file naming an ``acdfuse serve`` base URL (Contract 2)"""

AMAZON_ENDPOINT_URL = "https://drive.amazonaws.com/drive/v1/account/endpoint"
AMAZON_LOGIN_URL = "https://amazon.com/ap/oa"
AMAZON_TOKEN_URL = "https://api.amazon.com/auth/o2/token"
AMAZON_TOKENINFO_URL = "https://api.amazon.com/auth/o2/tokeninfo"


@dataclass(frozen=True)
class ServiceUrls:
    """Discovery and OAuth URLs of one Cloud Drive service."""

    endpoint: str = AMAZON_ENDPOINT_URL
    login: str = AMAZON_LOGIN_URL
    token: str = AMAZON_TOKEN_URL
    tokeninfo: str = AMAZON_TOKENINFO_URL
    base_url: str | None = None

    @classmethod
    def for_base(cls, base_url: str) -> ServiceUrls:
        base = base_url.rstrip("/")
        return cls(
            endpoint=f"{base}/drive/v1/account/endpoint",
            login=f"{base}/ap/oa",
            token=f"{base}/auth/o2/token",
            tokeninfo=f"{base}/auth/o2/tokeninfo",
            base_url=base,
        )


def load_service_urls(path: str) -> ServiceUrls:
    """Amazon's URLs, or those derived from ``path/acdfuse_server`` when that file exists."""
    server_file = os.path.join(path, SERVER_FILE)
    try:
        with open(server_file, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return ServiceUrls()
    except ValueError as exc:
        raise RequestError(
            RequestError.CODE.INVALID_TOKEN, f"{server_file} is not valid JSON: {exc}"
        ) from exc
    base = data.get("base_url") if isinstance(data, dict) else None
    if not isinstance(base, str) or not base:
        raise RequestError(RequestError.CODE.INVALID_TOKEN, f'{server_file} lacks a "base_url" string')
    return ServiceUrls.for_base(base)


def write_private_json(path: str, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically by ``data`` as JSON with mode 0600 (readers never see half a file)."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=4, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
