"""OAuth side of the server: the registered app, authorization codes, access and refresh tokens.

Tokens look like Login With Amazon's (``Atza|…`` access, ``Atzr|…`` refresh) and are stored only as
SHA-256 hashes, so a copy of the database grants nothing. Refreshing keeps the refresh token (Amazon's
did; clients such as acd_cli may not store a new one). Authorization codes are single use and live
five minutes. ``revoke`` deletes an account's tokens (all, or one); a revoked access token is refused
at once by this process, and within ``CACHE_TTL`` seconds by a server in another process sharing the
data dir (its cache of checked tokens forgets them after that long).
Lock order: ``Auth._cache_lock`` is a leaf; DB writes go through ``Database.write``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass

from acdfuse.server.db import Database
from acdfuse.server.errors import ApiError

CODE_LIFETIME = 300.0
# how long a checked access token is trusted without asking the database again
CACHE_TTL = 30.0
REFRESH_LIFETIME = 10 * 365 * 86400.0
SCOPE = "clouddrive:read_all clouddrive:write"
# the well-known public client (``acdfuse init``): no secret, PKCE S256 and a loopback redirect instead
PUBLIC_CLIENT_ID = "acdfuse-cli"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class OAuthError(Exception):
    """An OAuth endpoint error: ``{"error": ..., "error_description": ...}`` with a 400/401 status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_in: int
    issued: float

    def as_json(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }


class Auth:
    def __init__(self, db: Database, token_lifetime: float) -> None:
        self._db = db
        self.token_lifetime = token_lifetime
        # token hash -> (account, token expiry, recheck the database after)
        self._cache: dict[str, tuple[int, float, float]] = {}
        self._cache_lock = threading.Lock()
        self.client_id = ""
        self.client_secret = ""

    def open(self) -> None:
        """Load or create the server's registered app (one client id/secret per data dir)."""
        with self._db.write() as c:
            cid = self._db.get_meta("client_id")
            secret = self._db.get_meta("client_secret")
            if cid is None or secret is None:
                cid = "amzn1.application-oa2-client." + secrets.token_hex(16)
                secret = secrets.token_hex(32)
                c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('client_id', ?)", (cid,))
                c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('client_secret', ?)", (secret,))
        self.client_id, self.client_secret = cid, secret

    # -- tokens -----------------------------------------------------------------------------------
    def _store(self, token: str, kind: str, account: int, lifetime: float, extra: str = "") -> float:
        now = time.time()
        with self._db.write() as c:
            c.execute(
                "INSERT INTO tokens(hash, kind, account, issued, expires, extra) VALUES (?, ?, ?, ?, ?, ?)",
                (token_hash(token), kind, account, now, now + lifetime, extra),
            )
        return now

    def issue(
        self, account: int, lifetime: float | None = None, refresh_token: str | None = None
    ) -> TokenSet:
        life = self.token_lifetime if lifetime is None else lifetime
        access = "Atza|" + secrets.token_urlsafe(48)
        issued = self._store(access, "access", account, life)
        if refresh_token is None:
            refresh_token = "Atzr|" + secrets.token_urlsafe(48)
            # the refresh token remembers the access lifetime it was created with
            self._store(refresh_token, "refresh", account, REFRESH_LIFETIME, extra=repr(float(life)))
        return TokenSet(access, refresh_token, int(life), issued)

    def _lookup(self, token: str, kind: str) -> tuple[int, float, float, str] | None:
        row = (
            self._db.conn()
            .execute(
                "SELECT account, issued, expires, extra FROM tokens WHERE hash=? AND kind=?",
                (token_hash(token), kind),
            )
            .fetchone()
        )
        return None if row is None else (int(row[0]), float(row[1]), float(row[2]), str(row[3]))

    def account_for(self, authorization: str | None) -> int:
        """The account of a valid ``Authorization: Bearer`` header, else ApiError 401/403."""
        if not authorization:
            raise ApiError(401, "Token has expired", bare=True)
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            raise ApiError(401, "Token has expired", bare=True)
        if not token:
            # what the AWS gateway in front of Amazon answered for an empty bearer value
            raise ApiError(
                403, "Authorization header requires 'Credential' parameter. Authorization=Bearer", bare=True
            )
        h = token_hash(token)
        now = time.time()
        with self._cache_lock:
            hit = self._cache.get(h)
        if hit is None or now >= hit[2]:
            found = self._lookup(token, "access")
            if found is None:
                with self._cache_lock:
                    self._cache.pop(h, None)
                raise ApiError(401, "Token has expired", bare=True)
            hit = (found[0], found[2], now + CACHE_TTL)
            with self._cache_lock:
                if len(self._cache) > 10000:
                    self._cache.clear()
                self._cache[h] = hit
        if now >= hit[1]:
            raise ApiError(401, "Token has expired", bare=True)
        return hit[0]

    def revoke(self, account: int, token: str | None = None) -> int:
        """Delete the account's tokens (access, refresh and unused codes), or only ``token`` if it is
        one of them; returns how many went. Requests with them get 401 from now on."""
        with self._db.write() as c:
            if token is None:
                cur = c.execute("DELETE FROM tokens WHERE account=?", (account,))
            else:
                cur = c.execute("DELETE FROM tokens WHERE account=? AND hash=?", (account, token_hash(token)))
            count = cur.rowcount
        with self._cache_lock:
            if token is None:
                self._cache = {h: v for h, v in self._cache.items() if v[0] != account}
            else:
                self._cache.pop(token_hash(token), None)
        return count

    def token_info(self, token: str) -> dict[str, object]:
        found = self._lookup(token, "access")
        if found is None or time.time() >= found[2]:
            raise OAuthError("invalid_token", "The request has an invalid parameter : access_token", 400)
        account, issued, expires, _ = found
        return {
            "aud": self.client_id,
            "app_id": self.client_id.replace("application-oa2-client", "application"),
            "user_id": user_id_of(account),
            "iss": "acdfuse",
            "exp": int(expires - time.time()),
            "iat": int(issued),
        }

    # -- grants -----------------------------------------------------------------------------------
    def check_client(self, client_id: str | None, client_secret: str | None, basic: str | None) -> None:
        if basic and basic.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(basic[6:].strip()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise OAuthError("invalid_client", "Client authentication failed", 401) from None
            client_id, _, client_secret = decoded.partition(":")
        if not client_id:
            raise OAuthError("invalid_request", "The request is missing a required parameter : client_id")
        if not hmac.compare_digest(client_id, self.client_id) or not hmac.compare_digest(
            client_secret or "", self.client_secret
        ):
            raise OAuthError("invalid_client", "Client authentication failed", 401)

    def new_code(
        self, account: int, redirect_uri: str, challenge: str | None = None, public: bool = False
    ) -> str:
        """A single-use code. With a PKCE challenge or for the public client, ``extra`` is a JSON object
        (a plain redirect URI otherwise, as codes always were; a URI never starts with ``{``)."""
        code = secrets.token_urlsafe(24)
        extra = redirect_uri
        if challenge or public:
            extra = json.dumps({"redirect_uri": redirect_uri, "challenge": challenge, "public": public})
        self._store(code, "code", account, CODE_LIFETIME, extra=extra)
        return code

    def grant_code(
        self, code: str, redirect_uri: str | None, public: bool = False, verifier: str | None = None
    ) -> TokenSet:
        h = token_hash(code)
        with self._db.write() as c:
            row = c.execute(
                "SELECT account, expires, extra FROM tokens WHERE hash=? AND kind='code'", (h,)
            ).fetchone()
            if row is not None:
                c.execute("DELETE FROM tokens WHERE hash=?", (h,))  # single use
        if row is None or time.time() >= float(row[1]):
            raise OAuthError("invalid_grant", "The request has an invalid grant parameter : code")
        stored = str(row[2])
        challenge: str | None = None
        issued_public = False
        if stored.startswith("{"):
            info = json.loads(stored)
            stored, challenge, issued_public = info["redirect_uri"], info["challenge"], bool(info["public"])
        if issued_public != public:
            # a code of the public client cannot be redeemed with the app's secret, nor the reverse
            raise OAuthError("invalid_grant", "The request has an invalid grant parameter : client_id")
        if public and redirect_uri is None:
            raise OAuthError("invalid_request", "The request is missing a required parameter : redirect_uri")
        if redirect_uri is not None and stored and redirect_uri != stored:
            raise OAuthError("invalid_grant", "The request has an invalid grant parameter : redirect_uri")
        if challenge is not None and not _pkce_ok(verifier, challenge):
            raise OAuthError("invalid_grant", "The request has an invalid grant parameter : code_verifier")
        return self.issue(int(row[0]))

    def grant_refresh(self, refresh_token: str) -> TokenSet:
        found = self._lookup(refresh_token, "refresh")
        if found is None or time.time() >= found[2]:
            raise OAuthError("invalid_grant", "The request has an invalid grant parameter : refresh_token")
        account, _, _, extra = found
        try:
            life = float(extra) if extra else None
        except ValueError:
            life = None
        return self.issue(account, life, refresh_token=refresh_token)

    def purge_expired(self) -> int:
        with self._db.write() as c:
            cur = c.execute("DELETE FROM tokens WHERE expires < ?", (time.time() - 86400,))
            return cur.rowcount


def pkce_challenge(verifier: str) -> str:
    """RFC 7636's S256 code challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _pkce_ok(verifier: str | None, challenge: str) -> bool:
    if not verifier or not 43 <= len(verifier) <= 128 or not verifier.isascii():
        return False
    return hmac.compare_digest(pkce_challenge(verifier), challenge)


def user_id_of(account: int) -> str:
    return f"amzn1.account.ACDFUSE{account:08d}"
