"""Errors of the Cloud Drive client, the one table that turns HTTP answers into them, and what they mean.

Endpoint methods never compare status codes themselves: they call :func:`error_from_response`, which
picks the :class:`RequestError` subclass. Code outside ``acdfuse.api`` never compares a status code or
searches a message either: it tests the class, or asks :func:`is_offline`, :func:`is_transient` and
:func:`credentials_refused`. Also the service URLs (Amazon's, or those of an ``acdfuse serve`` named in
the config dir) and ``is_valid_id``.
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
    "PreconditionFailed",
    "QuotaExceeded",
    "RateLimited",
    "RequestError",
    "ServerError",
    "ServiceUrls",
    "TooLarge",
    "Unauthorized",
    "credentials_refused",
    "error_class",
    "error_from_response",
    "invalid_answer",
    "is_client_error",
    "is_offline",
    "is_transient",
    "is_valid_id",
    "json_answer",
    "json_object",
    "load_service_urls",
    "make_error",
    "node_answer",
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
    """409: a node with that name exists (``node_id`` is the existing one, when the server said so).

    The id comes from the error body's ``info.nodeId``, or from a message ending in
    ``conflicting NodeId: <id>`` (both forms were seen from Amazon).
    """

    def __init__(self, status_code: int, msg: str, *, node_id: str | None = None) -> None:
        super().__init__(status_code, msg)
        self.node_id = node_id


class Unauthorized(RequestError):
    """401 that survived one token refresh."""


class Forbidden(RequestError):
    """403: not allowed (permissions, a gateway's refusal). A full drive is :class:`QuotaExceeded`."""


class PreconditionFailed(RequestError):
    """412: the node is no longer what the request was conditioned on (its content changed).

    Raised for a pinned download whose content changed on the server, and for a conditional
    overwrite (``overwrite_stream(..., expected_content_version=...)``) of a node whose content
    version moved on.
    """


class TooLarge(RequestError):
    """413: the file (or request body) is larger than the server accepts (``max_file_size``)."""


class QuotaExceeded(RequestError):
    """The drive is full: 507, or Amazon's 403 ``NO_ACTIVE_SUBSCRIPTION_FOUND`` ("File size exceeds
    account allowance", acd-api.md 6.2), which our server sends too. Not a refusal of the credentials.
    """


class RateLimited(RequestError):
    """429 that outlasted the back-off; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, status_code: int, msg: str, *, retry_after: float | None = None) -> None:
        super().__init__(status_code, msg)
        self.retry_after = retry_after


class ServerError(RequestError):
    """5xx that outlasted the back-off (507, a full drive, is :class:`QuotaExceeded`)."""


class ConnectionFailed(RequestError):
    """No complete answer: refused, reset or timed out connection.

    ``request_sent`` is False when the request surely never reached the server (safe to repeat).
    """

    def __init__(self, status_code: int, msg: str, *, request_sent: bool = True) -> None:
        super().__init__(status_code, msg)
        self.request_sent = request_sent


class IncompleteResult(RequestError):
    """A truncated or unusable answer: a body shorter than announced, a changes stream without its end
    mark, or a body that is not the JSON the protocol promises (it does not parse, or a node has no
    id). Either way the server did not answer properly, and a later try may get a whole answer."""


# The one status table. 5xx is a range and handled in error_class(); so is a full quota, whose 403
# is told apart from other 403s by the error body.
_STATUS_CLASSES: dict[int, type[RequestError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: TooLarge,
    429: RateLimited,
    507: QuotaExceeded,
    RequestError.CODE.CONN_EXCEPTION: ConnectionFailed,
    RequestError.CODE.INCOMPLETE_RESULT: IncompleteResult,
}

# what a 403 for a full drive carries (acd-api.md 6.2): the error code, or the words of its message
QUOTA_CODE = "NO_ACTIVE_SUBSCRIPTION_FOUND"
_QUOTA_WORDS = "exceeds account allowance"
# Amazon's 409 messages name the existing node in their text when the body has no info.nodeId
_CONFLICTING_ID = re.compile(r"conflicting NodeId:\s*([A-Za-z0-9_-]{22})")

# statuses (and client codes) that say the server refused these credentials
_REFUSED_CODES = frozenset({RequestError.CODE.REFRESH_FAILED, RequestError.CODE.INVALID_TOKEN})
# answers worth another try later, besides the offline ones: request timeout, rate limit
_TRANSIENT_STATUS = frozenset({408, 429})


def error_class(status_code: int, code: str | None = None, message: str = "") -> type[RequestError]:
    """The exception class for an HTTP status or a :class:`RequestError.CODE`.

    ``code`` and ``message`` are the server's error code and words, when known: they tell a full
    drive's 403 from other refusals.
    """
    if status_code == 403 and (code == QUOTA_CODE or _QUOTA_WORDS in message.lower()):
        return QuotaExceeded
    cls = _STATUS_CLASSES.get(status_code)
    if cls is not None:
        return cls
    if 500 <= status_code <= 599:
        return ServerError
    return RequestError


def make_error(status_code: int, msg: str, **extra: Any) -> RequestError:
    """Build the right :class:`RequestError` subclass; ``extra`` holds subclass-only keywords
    (``node_id``, ``retry_after``, ``request_sent``) and the server's ``code`` and ``server_message``
    (``msg`` stands in for the latter when it is not given)."""
    server_message = extra.get("server_message")
    text = msg if server_message is None else server_message
    cls = error_class(status_code, extra.get("code"), text)
    if cls is Conflict:
        node_id = extra.get("node_id") or conflicting_node_id(text)
        return Conflict(status_code, msg, node_id=node_id)
    if cls is RateLimited:
        return RateLimited(status_code, msg, retry_after=extra.get("retry_after"))
    if cls is ConnectionFailed:
        return ConnectionFailed(status_code, msg, request_sent=extra.get("request_sent", True))
    return cls(status_code, msg)


def conflicting_node_id(message: str) -> str | None:
    """The existing node's id in a 409 message ("... conflicting NodeId: <id>"), if there is one."""
    m = _CONFLICTING_ID.search(message or "")
    return m.group(1) if m else None


# --- what an error means, for code outside acdfuse.api -----------------------------------------

# what says "offline": our own classes, and failures of the transport itself that reach a caller
# without being turned into a RequestError (from a plain requests call, or the socket layer)
_OFFLINE: tuple[type[BaseException], ...] = (
    ConnectionFailed,
    IncompleteResult,
    ServerError,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    ConnectionError,
)


def _explicit_causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it explicitly wraps (``raise ... from``), outermost first."""
    seen: set[int] = set()
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out.append(current)
        current = current.__cause__
    return out


def is_offline(exc: BaseException) -> bool:
    """The server could not be reached or did not answer properly: a transport error, a
    :class:`ConnectionFailed`, a cut answer (:class:`IncompleteResult`) or a 5xx (:class:`ServerError`).

    Any other answer (a 4xx, a full quota) means the server is there; any other exception is ours.
    Wrappers (``raise SyncError(...) from exc``) are seen through along ``__cause__``; ``__context__``
    is not followed, since an exception raised while handling another is not a restatement of it.
    """
    return any(isinstance(e, _OFFLINE) for e in _explicit_causes(exc))


def is_transient(exc: BaseException) -> bool:
    """Worth trying again later: offline (:func:`is_offline`), a request timeout (408) or a rate
    limit (429, :class:`RateLimited`). Follows ``__cause__`` like :func:`is_offline`."""
    if is_offline(exc):
        return True
    return any(
        isinstance(e, RequestError) and (isinstance(e, RateLimited) or e.status_code in _TRANSIENT_STATUS)
        for e in _explicit_causes(exc)
    )


def is_client_error(exc: BaseException) -> bool:
    """The server refused the request as such (a 4xx without a class of its own, such as 400 or
    416): asking again the same way will not help."""
    return isinstance(exc, RequestError) and 400 <= exc.status_code <= 499


def credentials_refused(exc: BaseException) -> RequestError | None:
    """The error in ``exc``'s chain (``__cause__`` and ``__context__``) that says the credentials were
    refused, if any: a 401 (:class:`Unauthorized`), a 403 that is not a full drive
    (:class:`Forbidden`), a failed token refresh or an unusable token file."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Unauthorized | Forbidden):
            return current
        if isinstance(current, RequestError) and current.status_code in _REFUSED_CODES:
            return current
        current = current.__cause__ or current.__context__
    return None


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
    if status < 400:
        # not an error status, but not the one this call expects (200 for a create, 200 to a ranged
        # read, a redirect without a target): the server did not answer as the protocol says
        unexpected = invalid_answer(operation, f"unexpected HTTP {status}: {text[:100]!r}", node)
        unexpected.body = body
        unexpected.request_id = request_id
        return unexpected
    code = parsed.get("code") if isinstance(parsed, dict) else None
    detail = (
        f"HTTP {status}" + (f" {code}" if code else "") + (f", request {request_id}" if request_id else "")
    )
    msg = f"{describe(operation, node)}: {text or 'no body received'} [{detail}]"
    info = parsed.get("info") if isinstance(parsed, dict) else None
    if not isinstance(info, dict):
        info = {}
    node_id = info.get("nodeId")
    err = make_error(
        status,
        msg,
        node_id=node_id if isinstance(node_id, str) and node_id else None,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        code=code if isinstance(code, str) else None,
        server_message=text,
    )
    err.body = body
    err.request_id = request_id
    return err


def invalid_answer(operation: str, detail: str, node: str | None = None) -> IncompleteResult:
    """The error for an answer that is not what the protocol says (see :class:`IncompleteResult`)."""
    err = make_error(
        RequestError.CODE.INCOMPLETE_RESULT, f"{describe(operation, node)}: invalid answer: {detail}"
    )
    assert isinstance(err, IncompleteResult)
    return err


def json_answer(response: requests.Response, operation: str, node: str | None = None) -> Any:
    """The decoded JSON body of a success answer; :class:`IncompleteResult` if it is cut or not JSON."""
    try:
        return response.json()
    except ValueError as exc:  # requests' JSONDecodeError, also for bytes that are no text
        sample = response.content[:120]
        raise invalid_answer(operation, f"not JSON ({exc}): {sample!r}", node) from exc
    except requests.RequestException as exc:  # a streamed body cut while it was read
        raise make_error(
            RequestError.CODE.INCOMPLETE_RESULT, f"{describe(operation, node)}: answer cut: {exc}"
        ) from exc


def json_object(response: requests.Response, operation: str, node: str | None = None) -> dict[str, Any]:
    """Like :func:`json_answer`, for answers that must be a JSON object."""
    data = json_answer(response, operation, node)
    if not isinstance(data, dict):
        raise invalid_answer(operation, f"expected a JSON object, got {type(data).__name__}", node)
    return data


def node_answer(data: Any, operation: str, node: str | None = None) -> dict[str, Any]:
    """``data`` if it can be a node (an object with a non-empty string id), else IncompleteResult.

    Only what every user of a node relies on is checked here; the node store checks the fields it
    keeps (acdfuse.store.node.staged_row)."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
        raise invalid_answer(operation, f"not a node (no id): {str(data)[:200]}", node)
    return data


def is_valid_id(id: str) -> bool:
    """True for a 22 character node id made of letters, digits, ``-`` and ``_``."""
    return bool(id) and len(id) == 22 and re.fullmatch(r"[a-zA-Z0-9_-]+", id) is not None


# --- where the service lives -------------------------------------------------------------------

SERVER_FILE = "acdfuse_server"
"""config-dir file naming an ``acdfuse serve`` base URL (Contract 2)"""

AMAZON_ENDPOINT_URL = "https://drive.amazonaws.com/drive/v1/account/endpoint"
AMAZON_LOGIN_URL = "https://amazon.com/ap/oa"
AMAZON_TOKEN_URL = "https://api.amazon.com/auth/o2/token"  # noqa: S105 - a URL, no password
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
