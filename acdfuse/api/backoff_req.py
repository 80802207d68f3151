"""HTTP with bounded, jittered exponential back-off over one pooled ``requests.Session``.

Back-off state lives in a :class:`Backoff` per logical request, so a thread stuck behind a failing
request never delays the others. Retried: connection errors, 429 (honouring Retry-After), 500, 502,
503, 504. Other 4xx answers are returned at once. A request that is not idempotent (an upload, a
create) is only repeated when the failure proves the server did not act on it (connection never made,
429, 503); everything else is handed back so the caller can first check what happened.

No lock is held here: ``requests.Session`` with its urllib3 pool is shared by threads as is, and the
token refresh serialises itself inside the auth handler.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from .common import (
    OK_CODES,
    Conflict,
    ConnectionFailed,
    IncompleteResult,
    NotFound,
    PreconditionFailed,
    RequestError,
    describe,
    error_from_response,
    invalid_answer,
    json_object,
    make_error,
    node_answer,
    parse_retry_after,
)

logger = logging.getLogger(__name__)

CONN_TIMEOUT = 30
"""timeout for establishing a connection"""
IDLE_TIMEOUT = 60
"""read timeout"""
REQUESTS_TIMEOUT = (CONN_TIMEOUT, IDLE_TIMEOUT)
"""http://docs.python-requests.org/en/latest/user/advanced/#timeouts"""

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
"""answers worth another try"""
REJECTED_STATUS = frozenset({429, 503})
"""answers that say the server did not act on the request, so even an upload may be repeated"""
UNSURE_STATUS = frozenset({408, 500, 502, 504})
"""answers after which a create or upload may or may not have happened (acd-api.md 13.5)"""

POOL_SIZE = 16
"""connections kept per host; the mount reads with several threads at once"""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one logical request is retried (immutable; one per client)."""

    max_retries: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    # wall-clock budget of one logical request including its waits; None = only max_retries bounds it
    deadline: float | None = 120.0

    def start(self) -> Backoff:
        return Backoff(self)

    def with_deadline(self, deadline: float | None) -> RetryPolicy:
        return replace(self, deadline=deadline)


class Backoff:
    """Retry state of one logical request: how many tries so far and when its deadline passes."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.retries = 0
        self._deadline_at = None if policy.deadline is None else time.monotonic() + policy.deadline

    def remaining(self) -> float | None:
        return None if self._deadline_at is None else self._deadline_at - time.monotonic()

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next try, or None when the retry budget is spent."""
        if self.retries >= self.policy.max_retries:
            return None
        self.retries += 1
        cap = min(self.policy.max_delay, self.policy.base_delay * 2 ** (self.retries - 1))
        # "equal jitter": at least half the step so retries do spread out, the rest random
        delay = cap / 2 + random.uniform(0, cap / 2)  # noqa: S311 - jitter, no secret
        if retry_after is not None:
            delay = max(delay, retry_after)
        remaining = self.remaining()
        if remaining is not None and delay > remaining:
            return None
        return delay


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps (requests and urllib3 nest the real cause several levels deep)."""
    seen: set[int] = set()
    out: list[BaseException] = []
    stack: list[object] = [exc]
    while stack:
        cur = stack.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        out.append(cur)
        stack.extend([cur.__cause__, cur.__context__, getattr(cur, "reason", None), *cur.args])
    return out


def _request_was_sent(exc: requests.RequestException) -> bool:
    """False if the connection was never established, so the server cannot have seen the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    never = urllib3.exceptions.NewConnectionError | ConnectionRefusedError
    return not any(isinstance(c, never) for c in _causes(exc))


def explain_failure(exc: requests.RequestException, url: str) -> str:
    """A short cause for a failed exchange, e.g. "127.0.0.1:9: Connection refused"."""
    host = urlsplit(url).netloc
    if isinstance(exc, requests.ConnectTimeout):
        return f"{host}: connection timed out"
    if isinstance(exc, requests.ReadTimeout):
        return f"{host}: no answer within the read timeout"
    for cause in _causes(exc):
        if isinstance(cause, http.client.IncompleteRead | urllib3.exceptions.IncompleteRead):
            return f"{host}: answer cut ({cause!r})"
        if isinstance(cause, http.client.RemoteDisconnected):
            return f"{host}: server closed the connection without answering"
        if isinstance(cause, OSError) and cause.strerror:
            return f"{host}: {cause.strerror}"
    return f"{host}: {exc}"


def _rewind(data: Any) -> bool:
    """Prepare a request body for another send; False if it cannot be sent again."""
    if data is None or isinstance(data, bytes | str | dict | list | tuple):
        return True
    rewind = getattr(data, "rewind", None)
    if callable(rewind):
        return bool(rewind())
    return False  # a generator or plain stream: consumed by the first try


class BackOffRequest:
    """Wrapper for requests that implements a bounded, jittered exponential back-off.

    https://developer.amazon.com/public/apis/experience/cloud-drive/content/best-practices
    One instance (and one connection pool) serves all threads of a client.
    """

    def __init__(
        self,
        auth_callback: requests.auth.AuthBase,
        *,
        timeout: tuple[float, float] = REQUESTS_TIMEOUT,
        policy: RetryPolicy | None = None,
        pool_size: int = POOL_SIZE,
    ) -> None:
        """:param auth_callback: callable object that attaches auth info to a request"""
        self.auth_callback = auth_callback
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self._session = requests.Session()
        # no urllib3-level retries: every retry decision is made (and logged) here
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        # set by close(): wakes every back-off wait so shutdown does not hang for minutes
        self._closing = threading.Event()

    @property
    def session(self) -> requests.Session:
        return self._session

    def close(self) -> None:
        self._closing.set()
        self._session.close()

    def sleep(self, seconds: float) -> None:
        """Wait out a back-off delay; returns early (raising) when the client is closed."""
        if self._closing.wait(seconds):
            raise make_error(
                RequestError.CODE.CONN_EXCEPTION, "client closed during back-off", request_sent=False
            )

    def request(
        self,
        method: str,
        url: str,
        acc_codes: Iterable[int] = OK_CODES,
        *,
        idempotent: bool = True,
        retry: bool = True,
        backoff: Backoff | None = None,
        operation: str | None = None,
        node: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send a request, retrying transient failures; returns the final response.

        A 401 is answered by one token refresh and one repeat. ``acc_codes`` are never retried.
        Raises :class:`ConnectionFailed` when no answer was received in the end.
        ``retry=False`` sends once (the 401 repeat aside); ``backoff`` lets a caller share the state
        of a longer operation across calls.
        """
        acc = set(acc_codes)
        backoff = backoff or self.policy.start()
        what = describe(operation or f"{method} {url}", node)
        kwargs.setdefault("timeout", self.timeout)
        data = kwargs.get("data")
        refreshed = False
        first = True
        while True:
            if not first and not _rewind(data):
                raise RequestError(RequestError.CODE.FAILED_SUBREQUEST, f"{what}: body cannot be sent twice")
            first = False
            try:
                response = self._session.request(method, url, auth=self.auth_callback, **kwargs)
            except requests.RequestException as exc:
                sent = _request_was_sent(exc)
                err: RequestError
                why = explain_failure(exc, url)
                if isinstance(exc, requests.exceptions.ChunkedEncodingError):
                    # the server answered, but its body was cut short of its length
                    err = make_error(RequestError.CODE.INCOMPLETE_RESULT, f"{what}: {why}")
                else:
                    err = make_error(RequestError.CODE.CONN_EXCEPTION, f"{what}: {why}", request_sent=sent)
                may_repeat = retry and (idempotent or not sent) and _rewind_possible(data)
                delay = backoff.next_delay() if may_repeat else None
                if delay is None:
                    raise err from exc
                logger.warning("%s failed (%s); retry %d in %.1fs", what, why, backoff.retries, delay)
                self.sleep(delay)
                continue

            status = response.status_code
            if status == 401 and status not in acc and not refreshed and _rewind_possible(data):
                refreshed = True
                rejected = response.request.headers.get("Authorization", "")
                if self._renew_token(rejected):
                    response.close()
                    logger.info("%s: token rejected, repeating with a fresh one", what)
                    continue
                return response
            if status in acc or status not in RETRY_STATUS or not retry:
                return response
            if not (idempotent or status in REJECTED_STATUS) or not _rewind_possible(data):
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            delay = backoff.next_delay(retry_after)
            if delay is None:
                return response
            logger.warning("%s: HTTP %d; retry %d in %.1fs", what, status, backoff.retries, delay)
            response.close()
            self.sleep(delay)

    def request_confirmed(
        self,
        send: Callable[[Backoff], requests.Response],
        ok_codes: Iterable[int],
        confirm: Callable[[], dict | None],
        *,
        operation: str,
        node: str | None = None,
        parse: Callable[[requests.Response], dict] | None = None,
        replayable: Callable[[], bool] = lambda: True,
    ) -> dict:
        """Run a request that must not be repeated blindly (create, upload, move, some deletes).

        ``send(backoff)`` performs one try (it may retry failures that prove nothing happened). After
        an unsure failure (5xx other than 503, a connection lost after sending) ``confirm()`` looks
        whether the change was made anyway and returns the node if so; only if not is ``send`` run
        again, within the same back-off budget.
        """
        ok = set(ok_codes)
        if parse is None:
            def parse(r: requests.Response) -> dict:
                return json_object(r, operation, node)
        backoff = self.policy.start()
        unsure_before = False
        while True:
            failure: RequestError
            try:
                response = send(backoff)
            except (ConnectionFailed, IncompleteResult) as exc:
                if not getattr(exc, "request_sent", True):
                    raise
                failure = exc
            else:
                if response.status_code in ok:
                    return parse(response)
                failure = error_from_response(response, operation, node)
                # after an unsure try, 409 (created), 404 (deleted) or 412 (a conditional overwrite
                # whose content version our own earlier try moved on) may be that earlier try,
                # finished late (acd-api.md 13.5): look before reporting it
                late = unsure_before and isinstance(failure, Conflict | NotFound | PreconditionFailed)
                if response.status_code not in UNSURE_STATUS and not late:
                    raise failure
                if late:
                    found = confirm()
                    if found is None:
                        raise failure
                    logger.info("%s: an earlier try did it after all", describe(operation, node))
                    return found
            unsure_before = True
            found = confirm()
            if found is not None:
                logger.info("%s: the server did it despite %s", describe(operation, node), failure)
                return found
            delay = backoff.next_delay(getattr(failure, "retry_after", None))
            if delay is None or not replayable():
                raise failure
            logger.warning("%s; not done, retry %d in %.1fs", failure, backoff.retries, delay)
            self.sleep(delay)

    def _renew_token(self, rejected_header: str) -> bool:
        renew: Callable[[str], bool] | None = getattr(self.auth_callback, "on_unauthorized", None)
        if renew is None:
            return False
        return renew(rejected_header)

    def _request(self, type_: str, url: str, acc_codes: Iterable[int], **kwargs: Any) -> requests.Response:
        """Performs a HTTP request (seed name)."""
        return self.request(type_, url, acc_codes, **kwargs)

    # HTTP verbs

    def get(self, url: str, acc_codes: Iterable[int] = OK_CODES, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, acc_codes, **kwargs)

    def post(self, url: str, acc_codes: Iterable[int] = OK_CODES, **kwargs: Any) -> requests.Response:
        # POST creates things on this API; callers say idempotent=True for the read-only ones (changes)
        kwargs.setdefault("idempotent", False)
        return self.request("POST", url, acc_codes, **kwargs)

    def patch(self, url: str, acc_codes: Iterable[int] = OK_CODES, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", url, acc_codes, **kwargs)

    def put(self, url: str, acc_codes: Iterable[int] = OK_CODES, **kwargs: Any) -> requests.Response:
        return self.request("PUT", url, acc_codes, **kwargs)

    def delete(self, url: str, acc_codes: Iterable[int] = OK_CODES, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", url, acc_codes, **kwargs)

    def paginated_get(
        self, url: str, params: dict | None = None, *, operation: str = "list", node: str | None = None
    ) -> list[dict]:
        """Gets node list in segments of 200.

        A page that is not a list of node objects, or a ``nextToken`` the server already gave (a
        server that would page forever), raises IncompleteResult.
        """
        params = dict(params or {})
        params.setdefault("limit", 200)
        nodes: list[dict] = []
        seen_tokens: set[str] = set()
        while True:
            r = self.get(url, params=params, operation=operation, node=node)
            if r.status_code not in OK_CODES:
                raise error_from_response(r, operation, node)
            page = json_object(r, operation, node)
            data = page.get("data", [])
            if not isinstance(data, list):
                raise invalid_answer(operation, f"page data is not a list of nodes: {str(data)[:200]}", node)
            nodes.extend(node_answer(n, operation, node) for n in data)
            token = page.get("nextToken")
            if not token or not data:
                break
            if not isinstance(token, str) or token in seen_tokens:
                detail = f"nextToken {str(token)[:60]!r} repeats or is no string"
                raise invalid_answer(operation, detail, node)
            seen_tokens.add(token)
            params["startToken"] = token
        if "count" in page and page["count"] != len(nodes):
            logger.warning("%s: server counted %s nodes, received %d", url, page["count"], len(nodes))
        return nodes


def _rewind_possible(data: Any) -> bool:
    """True if ``data`` can be sent again (without rewinding it yet)."""
    if data is None or isinstance(data, bytes | str | dict | list | tuple):
        return True
    return bool(getattr(data, "replayable", False))
