"""Login With Amazon look-alike endpoints: ``/ap/oa`` (login/consent page), ``/auth/o2/token``,
``/auth/o2/tokeninfo``.

``/ap/oa`` shows a small form (account name, and a password only when the server was started with
one) and redirects to ``redirect_uri?code=…&scope=…&state=…``. An account that does not exist yet is
created on consent: this is a personal drive bound to loopback by default.
"""

from __future__ import annotations

import hmac
import html
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

from acdfuse.server.auth import SCOPE, Auth, OAuthError
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
        # A refresh token is itself the secret: acd_cli's Appspot relay let clients refresh without the
        # app's credentials, so a refresh grant with no client credentials at all is accepted. Wrong
        # credentials are still refused, and a code grant always needs them.
        if not (grant == "refresh_token" and not form.get("client_id") and not basic):
            self.auth.check_client(form.get("client_id"), form.get("client_secret"), basic)
        if grant == "authorization_code":
            code = form.get("code")
            if not code:
                raise OAuthError("invalid_request", "The request is missing a required parameter : code")
            tokens = self.auth.grant_code(code, form.get("redirect_uri"))
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
        if not hmac.compare_digest(client_id, self.auth.client_id):
            return self._page_error(400, "Unknown client_id.")
        target = urlsplit(redirect_uri)
        if target.scheme not in ("http", "https") or not target.netloc:
            return self._page_error(400, "redirect_uri must be an absolute http(s) URL.")
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
        if self.config.login_password is not None and not hmac.compare_digest(
            form.get("password", ""), self.config.login_password
        ):
            return self._page(req, form, scope, error="Wrong password.", status=401)
        try:
            acc = self.drive.ensure_account(form.get("account", "default").strip() or "default")
        except ApiError as e:
            return self._page(req, form, scope, error=e.message, status=400)
        code = self.auth.new_code(acc.id, redirect_uri)
        return self._redirect(redirect_uri, {"code": code, "scope": scope, **extra})

    @staticmethod
    def _redirect(uri: str, params: dict[str, str]) -> Response:
        sep = "&" if urlsplit(uri).query else "?"
        return Response(302, b"", "", {"Location": uri + sep + urlencode(params)})

    def _page(
        self, req: Request, form: dict[str, str], scope: str, error: str = "", status: int = 200
    ) -> Response:
        keep = ("client_id", "redirect_uri", "response_type", "scope", "state")
        hidden = "\n".join(
            f'<input type="hidden" name="{k}" value="{html.escape(form[k])}">' for k in keep if k in form
        )
        password = (
            '<label>Password <input name="password" type="password" required></label><br>'
            if self.config.login_password is not None
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
