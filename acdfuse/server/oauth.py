"""Login With Amazon look-alike endpoints: ``/ap/oa`` (login/consent page), ``/auth/o2/token``,
``/auth/o2/tokeninfo``.

``/ap/oa`` shows a small form (account name, and a password only when the server was started with
one) and redirects to ``redirect_uri?code=…&scope=…&state=…``. An account that does not exist yet is
created on consent: this is a personal drive bound to loopback by default; once some account has a
password (``acdfuse serve account add``) only existing accounts can sign in.

Passwords: an account with its own password needs it; otherwise the server-wide ``login_password``
(when set) is asked for, as before per-account passwords existed.

Besides the data dir's registered (confidential) app, the well-known public client ``acdfuse-cli``
(``acdfuse init``) may sign in without a secret: it must use PKCE (S256) and redirect to a loopback
listener (``http://127.0.0.1:PORT/...`` or ``http://localhost:PORT/...``).
"""

from __future__ import annotations

import hmac
import html
import secrets
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

from acdfuse.server.accounts import any_password, check_password, hash_password, password_of
from acdfuse.server.auth import PUBLIC_CLIENT_ID, SCOPE, Auth, OAuthError
from acdfuse.server.config import ServerConfig
from acdfuse.server.drive import Drive
from acdfuse.server.errors import ApiError
from acdfuse.server.messages import Request, Response
from acdfuse.server.util import dumps

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>acdfuse drive: sign in</title>
<style>body{{font-family:sans-serif;max-width:28em;margin:3em auto}}input{{margin:.3em 0}}</style></head>
<body><h1>Sign in to the acdfuse drive</h1>
<p>The application <b>{client}</b> asks for access to your drive ({scope}).</p>
{error}
<form method="post" action="{action}">
{hidden}
<label>Account <input name="account" value="default" required></label><br>
{password}
<button name="decision" value="allow" type="submit">Allow</button>
<button name="decision" value="deny" type="submit">Deny</button>
</form></body></html>
"""


# checked against for unknown accounts (any valid hash will do; its password is unknowable)
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def _form(req: Request) -> dict[str, str]:
    if req.method == "GET":
        return dict(req.query)
    ctype = req.headers.get("Content-Type", "").split(";")[0].strip().lower()
    raw = req.read_body()
    if raw and ctype not in ("application/x-www-form-urlencoded", ""):
        raise OAuthError("invalid_request", "The request body must be application/x-www-form-urlencoded")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "The request body is not UTF-8") from None
    form = dict(req.query)
    form.update(parse_qsl(text, keep_blank_values=True))
    return form


def _oauth_error(e: OAuthError) -> Response:
    return Response(e.status, dumps({"error": e.error, "error_description": e.description}))


class OAuthPages:
    def __init__(
        self, config: ServerConfig, auth: Auth, drive: Drive, base_url: Callable[[str | None], str]
    ) -> None:
        self.config = config
        self.auth = auth
        self.drive = drive
        self.base_url = base_url

    def handle(self, req: Request) -> Response | None:
        """The response for an OAuth path, or None when the path is not an OAuth one."""
        path = req.path.rstrip("/")
        try:
            if path == "/ap/oa" and req.method in ("GET", "POST"):
                return self.login(req)
            if path == "/auth/o2/token" and req.method == "POST":
                return self.token(req)
            if path == "/auth/o2/tokeninfo" and req.method in ("GET", "POST"):
                form = _form(req)
                return Response(200, dumps(self.auth.token_info(form.get("access_token", ""))))
        except OAuthError as e:
            return _oauth_error(e)
        return None

    def token(self, req: Request) -> Response:
        form = _form(req)
        grant = form.get("grant_type")
        basic = req.headers.get("Authorization")
        public = form.get("client_id") == PUBLIC_CLIENT_ID and not form.get("client_secret") and not basic
        # A refresh token is itself the secret: acd_cli's Appspot relay let clients refresh without the
        # app's credentials, so a refresh grant with no client credentials at all is accepted. Wrong
        # credentials are still refused, and a code grant always needs them.
        # The public client has no secret to check: PKCE binds its code to the requester instead.
        if not public and not (grant == "refresh_token" and not form.get("client_id") and not basic):
            self.auth.check_client(form.get("client_id"), form.get("client_secret"), basic)
        if grant == "authorization_code":
            code = form.get("code")
            if not code:
                raise OAuthError("invalid_request", "The request is missing a required parameter : code")
            tokens = self.auth.grant_code(
                code, form.get("redirect_uri"), public=public, verifier=form.get("code_verifier")
            )
        elif grant == "refresh_token":
            refresh = form.get("refresh_token")
            if not refresh:
                raise OAuthError(
                    "invalid_request", "The request is missing a required parameter : refresh_token"
                )
            tokens = self.auth.grant_refresh(refresh)
        else:
            raise OAuthError("unsupported_grant_type", f"Unsupported grant_type {grant!r}")
        return Response(200, dumps(tokens.as_json()), headers={"Cache-Control": "no-store"})

    def login(self, req: Request) -> Response:
        form = _form(req)
        client_id = form.get("client_id", "")
        redirect_uri = form.get("redirect_uri", "")
        public = client_id == PUBLIC_CLIENT_ID
        if not public and not hmac.compare_digest(client_id, self.auth.client_id):
            return self._page_error(400, "Unknown client_id.")
        target = urlsplit(redirect_uri)
        if target.scheme not in ("http", "https") or not target.netloc:
            return self._page_error(400, "redirect_uri must be an absolute http(s) URL.")
        challenge = form.get("code_challenge")
        if public:
            problem = _public_client_problem(redirect_uri, challenge, form.get("code_challenge_method"))
            if problem:
                return self._page_error(400, problem)
        if form.get("response_type", "code") != "code":
            return self._page_error(400, "Only response_type=code is supported.")
        scope = form.get("scope", SCOPE)
        state = form.get("state")
        if req.method == "GET":
            return self._page(req, form, scope)
        extra = {"state": state} if state is not None else {}
        if form.get("decision") != "allow":
            return self._redirect(
                redirect_uri,
                {"error": "access_denied", "error_description": "The user denied the request", **extra},
            )
        name = form.get("account", "default").strip() or "default"
        problem = self._check_login(name, form.get("password", ""))
        if problem:
            return self._page(req, form, scope, error=problem, status=401)
        try:
            acc = self.drive.ensure_account(name)
        except ApiError as e:
            return self._page(req, form, scope, error=e.message, status=400)
        code = self.auth.new_code(acc.id, redirect_uri, challenge=challenge, public=public)
        return self._redirect(redirect_uri, {"code": code, "scope": scope, **extra})

    def _check_login(self, name: str, password: str) -> str:
        """Why ``name``/``password`` may not sign in, or "" when they may."""
        db = self.drive.db
        stored = password_of(db, name)
        if stored is not None:
            return "" if check_password(password, stored) else "Wrong account or password."
        if self.config.login_password is not None:
            if hmac.compare_digest(password.encode("utf-8"), self.config.login_password.encode("utf-8")):
                return ""
            return "Wrong account or password."
        if any_password(db) and self.drive.account_by_name(name) is None:
            # accounts are managed with `acdfuse serve account add` here: no sign-up on the login page.
            # Hash anyway, so the answer's timing does not tell which account names exist.
            check_password(password, _DUMMY_HASH)
            return "Wrong account or password."
        return ""

    @staticmethod
    def _redirect(uri: str, params: dict[str, str]) -> Response:
        sep = "&" if urlsplit(uri).query else "?"
        return Response(302, b"", "", {"Location": uri + sep + urlencode(params)})

    def _page(
        self, req: Request, form: dict[str, str], scope: str, error: str = "", status: int = 200
    ) -> Response:
        keep = (
            "client_id", "redirect_uri", "response_type", "scope", "state", "code_challenge",
            "code_challenge_method",
        )
        hidden = "\n".join(
            f'<input type="hidden" name="{k}" value="{html.escape(form[k])}">' for k in keep if k in form
        )
        password = (
            '<label>Password <input name="password" type="password" required></label><br>'
            if self.config.login_password is not None or any_password(self.drive.db)
            else ""
        )
        body = _PAGE.format(
            client=html.escape(form.get("client_id", "")),
            scope=html.escape(scope),
            error=f'<p style="color:#b00">{html.escape(error)}</p>' if error else "",
            action=html.escape(self.base_url(req.headers.get("Host")) + "/ap/oa"),
            hidden=hidden,
            password=password,
        )
        return Response(status, body.encode("utf-8"), "text/html; charset=utf-8")

    @staticmethod
    def _page_error(status: int, message: str) -> Response:
        body = f"<!doctype html><html><body><h1>Error</h1><p>{html.escape(message)}</p></body></html>"
        return Response(status, body.encode("utf-8"), "text/html; charset=utf-8")


def _public_client_problem(redirect_uri: str, challenge: str | None, method: str | None) -> str:
    """Why a login request of the public client is refused, or "" when it is fine."""
    target = urlsplit(redirect_uri)
    try:
        port = target.port
    except ValueError:
        port = None
    if target.scheme != "http" or target.hostname not in ("127.0.0.1", "localhost") or not port:
        return f"The client {PUBLIC_CLIENT_ID} may only redirect to http://127.0.0.1:PORT/ or http://localhost:PORT/."
    if target.username or target.password:
        return "redirect_uri must not hold credentials."
    if not challenge or method != "S256":
        return f"The client {PUBLIC_CLIENT_ID} must use PKCE: code_challenge with code_challenge_method=S256."
    if not 43 <= len(challenge) <= 128:
        return "code_challenge must be 43 to 128 characters."
    return ""
