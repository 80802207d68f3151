"""Signing in to a Cloud Drive server with the authorization-code flow (``acdfuse init``).

The client is the server's well-known public client ``acdfuse-cli``: it has no secret, so it proves
with PKCE (S256) that the code it redeems is the one its own login URL asked for. The browser comes
back to a one-shot HTTP listener on 127.0.0.1 (any free port) that catches ``?code=...&state=...``.
The tokens land in a client config dir (``acdfuse_server``, ``oauth_data``, ``endpoint_data``; all
0600, each written atomically); without ``client_data`` the token handler refreshes with a refresh
grant and no client credentials, which the server accepts.

Lock order: ``_Catcher.lock`` is a leaf (the listener thread stores the first redirect under it).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from .backoff_req import explain_failure
from .common import SERVER_FILE, write_private_json

log = logging.getLogger(__name__)

PUBLIC_CLIENT_ID = "acdfuse-cli"
SCOPE = "clouddrive:read_all clouddrive:write"
CALLBACK_PATH = "/callback"
_HTTP_TIMEOUT = (30, 60)
# files of an earlier sign-in that would contradict the new one (another app's secret, old endpoints)
_STALE_FILES = ("client_data", "endpoint_data")


class LoginError(Exception):
    """The sign-in failed; the message is for the user."""


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) as in RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class _Catcher:
    lock: threading.Lock
    done: threading.Event
    params: dict[str, str] | None = None
    # only a redirect with this state counts: another local process cannot end the wait with a fake
    state: str | None = None


def _handler_class(catcher: _Catcher) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != CALLBACK_PATH:
                self.send_error(404)
                return
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            with catcher.lock:
                first = catcher.params is None and params.get("state") == catcher.state
                if first:
                    catcher.params = params
            ok = first and "code" in params
            body = (
                b"<!doctype html><html><body><p>Signed in: you can close this window.</p></body></html>"
                if ok
                else b"<!doctype html><html><body><p>Sign-in failed: see the terminal.</p></body></html>"
            )
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if first:
                catcher.done.set()

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("redirect listener: " + format, *args)

    return Handler


class RedirectListener:
    """A one-shot HTTP listener on 127.0.0.1 for the browser's redirect (use as a context manager)."""

    def __init__(self) -> None:
        self._catcher = _Catcher(threading.Lock(), threading.Event())
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self._catcher))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="redirect-listener", daemon=True
        )

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{CALLBACK_PATH}"

    def __enter__(self) -> RedirectListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def expect(self, state: str) -> None:
        """Accept only the redirect that carries ``state``."""
        with self._catcher.lock:
            self._catcher.state = state

    def wait(self, timeout: float) -> dict[str, str]:
        """The redirect's query parameters; LoginError after ``timeout`` seconds. Ctrl-C interrupts."""
        if not self._catcher.done.wait(timeout):
            raise LoginError(f"no answer from the browser within {timeout:g} s")
        with self._catcher.lock:
            assert self._catcher.params is not None
            return dict(self._catcher.params)


@dataclass(frozen=True)
class LoginRequest:
    """One sign-in attempt: the URL to open, and what redeeming its code needs."""

    base_url: str
    redirect_uri: str
    state: str
    verifier: str
    url: str

    @classmethod
    def new(cls, base_url: str, redirect_uri: str) -> LoginRequest:
        base = base_url.rstrip("/")
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        query = {
            "client_id": PUBLIC_CLIENT_ID,
            "response_type": "code",
            "scope": SCOPE,
            "redirect_uri": redirect_uri,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return cls(base, redirect_uri, state, verifier, f"{base}/ap/oa?{urlencode(query)}")

    def code_from(self, params: dict[str, str]) -> str:
        """The code of a redirect's parameters, after checking its state; LoginError otherwise."""
        if params.get("state") != self.state:
            raise LoginError("the redirect does not belong to this sign-in (state differs)")
        if "error" in params:
            raise LoginError(f"the server refused: {params.get('error_description') or params['error']}")
        code = params.get("code")
        if not code:
            raise LoginError("the redirect carries no code")
        return code

    def exchange(self, code: str) -> dict[str, Any]:
        """Trade ``code`` for tokens at the server's token endpoint."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": PUBLIC_CLIENT_ID,
            "redirect_uri": self.redirect_uri,
            "code_verifier": self.verifier,
        }
        try:
            r = requests.post(self.base_url + "/auth/o2/token", data=form, timeout=_HTTP_TIMEOUT)
        except requests.RequestException as e:
            raise LoginError(f"cannot reach {explain_failure(e, self.base_url)}: is the server running, "
                             f"and is that its address?") from e
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code != 200 or not isinstance(data, dict) or "access_token" not in data:
            detail = data.get("error_description") if isinstance(data, dict) else r.text[:200]
            raise LoginError(f"the code exchange failed ({r.status_code}): {detail}")
        return data

    def submit_form(self, account: str, password: str) -> None:
        """The non-interactive sign-in: post the login form as a browser would and follow its redirect
        to the listener."""
        query = parse_qs(urlsplit(self.url).query)
        form = {k: v[0] for k, v in query.items()}
        form.update(account=account, password=password, decision="allow")
        try:
            r = requests.post(
                self.base_url + "/ap/oa", data=form, allow_redirects=False, timeout=_HTTP_TIMEOUT
            )
            if r.status_code != 302 or "Location" not in r.headers:
                reason = "wrong account or password" if r.status_code == 401 else f"status {r.status_code}"
                raise LoginError(f"the login page refused the sign-in: {reason}")
            requests.get(r.headers["Location"], timeout=_HTTP_TIMEOUT).raise_for_status()
        except requests.RequestException as e:
            raise LoginError(f"cannot reach {explain_failure(e, self.base_url)}: is the server running, "
                             f"and is that its address?") from e


def save_tokens(cdir: Path, base_url: str, tokens: dict[str, Any], started: float) -> None:
    """Make ``cdir`` the client config for this server and account (0700 dir, 0600 files)."""
    cdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in _STALE_FILES:
        try:
            os.unlink(cdir / name)
        except FileNotFoundError:
            pass
    write_private_json(str(cdir / SERVER_FILE), {"base_url": base_url.rstrip("/")})
    lifetime = float(tokens.get("expires_in", 3600))
    # the token handler's convention: refresh a little before the end (a tenth for short lifetimes)
    data = {**tokens, "exp_time": started + lifetime - min(120.0, lifetime / 10)}
    write_private_json(str(cdir / "oauth_data"), data)

