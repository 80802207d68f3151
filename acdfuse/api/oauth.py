"""OAuth 2 bearer tokens: load ``oauth_data``, refresh it before (or when) it expires, save it atomically.

Lock order: ``self.lock`` (threads of this process), then the ``flock`` on ``oauth_data.lock``
(other processes sharing the config dir). Both are held across the refresh request on purpose: a
refresh is single-flight, and every waiting caller needs its result. Before refreshing, the token file
is read again, so a token another process just fetched is used instead of being clobbered.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import threading
import time
import webbrowser
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import requests
from requests.auth import AuthBase

from acdfuse.common.locks import hold_lock

from .common import (
    AMAZON_LOGIN_URL,
    AMAZON_TOKEN_URL,
    RequestError,
    error_from_response,
    is_transient,
    json_object,
    load_service_urls,
    make_error,
    write_private_json,
)

logger = logging.getLogger(__name__)

# refresh this long before the server's expiry; short-lived tokens get a tenth of their lifetime
_EXPIRY_MARGIN = 120.0
_TOKEN_CALL_TIMEOUT = (30, 60)
_TOKEN_CALL_TRIES = 3


def create_handler(path: str) -> OAuthHandler:
    """A :class:`LocalOAuthHandler` if ``path`` has ``client_data``, else an :class:`AppspotOAuthHandler`."""
    if os.path.isfile(os.path.join(path, LocalOAuthHandler.CLIENT_DATA_FILE)):
        return LocalOAuthHandler(path)
    return AppspotOAuthHandler(path)


class OAuthHandler(AuthBase):
    """Attaches ``Authorization: Bearer`` to requests and keeps the token fresh."""

    OAUTH_DATA_FILE = "oauth_data"

    class KEYS:
        EXP_IN = "expires_in"
        ACC_TOKEN = "access_token"  # noqa: S105 - key names in oauth_data, no secrets
        REFR_TOKEN = "refresh_token"  # noqa: S105
        EXP_TIME = "exp_time"  # added by the client: epoch seconds when to refresh
        REDIRECT_URI = "redirect_uri"  # only for local

    def __init__(self, path: str) -> None:
        self.path = path
        self.oauth_data: dict[str, Any] = {}
        self.oauth_data_path = os.path.join(path, self.OAUTH_DATA_FILE)
        self.init_time = time.time()
        self.lock = threading.RLock()
        self.urls = load_service_urls(path)
        self._http = requests.Session()

    def close(self) -> None:
        """Close the connections kept for token calls."""
        self._http.close()

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self.get_auth_token()
        return r

    @property
    def exp_time(self) -> float:
        return float(self.oauth_data[self.KEYS.EXP_TIME])

    @classmethod
    def validate(cls, oauth: str) -> dict[str, Any]:
        """Parse and check an OAuth token JSON. :raises: RequestError(INVALID_TOKEN)"""
        try:
            data = json.loads(oauth)
            for key in (cls.KEYS.ACC_TOKEN, cls.KEYS.EXP_IN, cls.KEYS.REFR_TOKEN):
                data[key]
        except (ValueError, KeyError, TypeError) as exc:
            raise RequestError(
                RequestError.CODE.INVALID_TOKEN, f"invalid OAuth token data (bad JSON or missing {exc})"
            ) from exc
        return data

    def treat_auth_token(self, time_: float) -> None:
        """Adds expiration time to member OAuth dict using specified begin time."""
        lifetime = float(self.oauth_data[self.KEYS.EXP_IN])
        exp_time = time_ + lifetime - min(_EXPIRY_MARGIN, lifetime / 10)
        self.oauth_data[self.KEYS.EXP_TIME] = exp_time
        logger.info("New token expires at %s.", datetime.datetime.fromtimestamp(exp_time).isoformat(" "))

    def _read_file(self) -> dict[str, Any]:
        with open(self.oauth_data_path, encoding="utf-8") as f:
            text = f.read()
        try:
            return self.validate(text)
        except RequestError as exc:
            exc.msg = f"{self.oauth_data_path}: {exc.msg}; fix or delete the file"
            raise

    def load_oauth_data(self) -> None:
        """Loads oauth data file, validate and add expiration time if necessary.

        Does not refresh: an expired token is refreshed by the first request that needs it.
        """
        self.check_oauth_file_exists()
        with self.lock:
            self.oauth_data = self._read_file()
            if self.KEYS.EXP_TIME not in self.oauth_data:
                self.treat_auth_token(self.init_time)
                self.write_oauth_data()

    def get_auth_token(self, reload: bool = True) -> str:
        """Gets current access token, refreshes if necessary.

        :param reload: whether the oauth token file should be reloaded (external update)
        """
        with self.lock:
            if time.time() > self.exp_time:
                logger.info(
                    "Token expired at %s.", datetime.datetime.fromtimestamp(self.exp_time).isoformat(" ")
                )
                self._renew(rejected=None, reload=reload)
            return "Bearer " + self.oauth_data[self.KEYS.ACC_TOKEN]

    def on_unauthorized(self, rejected_header: str) -> bool:
        """The server answered 401 to ``rejected_header``: get a usable token. True if there is one now.

        Called by :class:`~acdfuse.api.backoff_req.BackOffRequest` once per request before it repeats it.
        """
        with self.lock:
            if rejected_header != "Bearer " + self.oauth_data[self.KEYS.ACC_TOKEN]:
                return True  # another thread refreshed meanwhile
            rejected = self.oauth_data[self.KEYS.ACC_TOKEN]
            self._renew(rejected=rejected, reload=True)
            return self.oauth_data[self.KEYS.ACC_TOKEN] != rejected

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        with contextlib.ExitStack() as held:
            try:
                # waits for another process's refresh: a short HTTP exchange, so no deadline
                held.enter_context(hold_lock(Path(self.oauth_data_path + ".lock")))
            except OSError as exc:
                # e.g. a read-only config dir: refreshing still works, only without the cross-process guard
                logger.warning("cannot lock %s.lock (%s); refreshing without it", self.oauth_data_path, exc)
            yield

    def _renew(self, rejected: str | None, reload: bool) -> None:
        """Adopt a newer token from the file if another process wrote one, else refresh. Lock held."""
        with self._file_lock():
            if reload:
                on_disk = self._read_file()
                token = on_disk[self.KEYS.ACC_TOKEN]
                fresh = time.time() <= float(on_disk.get(self.KEYS.EXP_TIME, 0))
                if fresh and token != rejected and token != self.oauth_data.get(self.KEYS.ACC_TOKEN):
                    logger.info("Externally updated token found in %s.", self.oauth_data_path)
                    self.oauth_data = on_disk
                    return
                self.oauth_data = on_disk
            self.refresh_auth_token()

    def _token_request(self, url: str, form: dict[str, Any], operation: str) -> dict[str, Any]:
        """POST ``form`` to a token URL, retrying connection errors and 5xx a few times."""
        last: RequestError | None = None
        for attempt in range(_TOKEN_CALL_TRIES):
            if attempt:
                time.sleep(0.5 * 2**attempt)  # a short, bounded pause: callers hold the token lock
            try:
                response = self._http.post(url, data=form, timeout=_TOKEN_CALL_TIMEOUT)
            except requests.RequestException as exc:
                last = make_error(RequestError.CODE.CONN_EXCEPTION, f"{operation}: {exc}")
                continue
            if response.status_code == requests.codes.ok:
                return self._token_answer(response.text)
            err = error_from_response(response, operation)
            if not is_transient(err):
                # the token server answered and said no: the credentials are refused
                raise RequestError(RequestError.CODE.REFRESH_FAILED, err.msg) from err
            last = err
        assert last is not None
        # still unreachable (or busy) after the tries: that is no verdict on the credentials, so the
        # caller gets the transport error itself and may treat it as offline
        raise last

    def _token_answer(self, text: str) -> dict[str, Any]:
        """Validate a token endpoint's answer; a refresh answer may omit the (unchanged) refresh token."""
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        old_refresh = self.oauth_data.get(self.KEYS.REFR_TOKEN)
        if isinstance(data, dict) and self.KEYS.REFR_TOKEN not in data and old_refresh:
            data[self.KEYS.REFR_TOKEN] = old_refresh
            text = json.dumps(data)
        return self.validate(text)

    def _store_new_token(self, new: dict[str, Any], started: float) -> None:
        self.oauth_data = new
        self.treat_auth_token(started)
        try:
            self.write_oauth_data()
        except OSError as exc:
            # the new token still serves this process; other processes will refresh on their own
            logger.warning("cannot save the refreshed token to %s: %s", self.oauth_data_path, exc)

    def write_oauth_data(self) -> None:
        """Dumps (treated) OAuth dict to file as JSON, atomically and with mode 0600."""
        write_private_json(self.oauth_data_path, self.oauth_data)

    def refresh_auth_token(self) -> None:
        """Fetches a new access token using the refresh token."""
        raise NotImplementedError

    def check_oauth_file_exists(self) -> None:
        """Checks for OAuth file existence and one-time initialize if necessary. Throws on error."""
        raise NotImplementedError

    def get_access_token_info(self) -> dict:
        """
        :returns:
        int exp: expiration time in sec,
        str aud: client id
        user_id, app_id, iat (exp time)
        """
        token = self.get_auth_token().split(" ", 1)[1]
        try:
            if self.urls.base_url is not None:
                # an acdfuse server takes the token in a form body: in a URL, urllib3's debug log
                # (and any proxy's access log) would write it down
                r = self._http.post(
                    self.urls.tokeninfo, data={"access_token": token}, timeout=_TOKEN_CALL_TIMEOUT
                )
            else:  # Amazon documented only GET, with the token in the query
                r = self._http.get(
                    self.urls.tokeninfo, params={"access_token": token}, timeout=_TOKEN_CALL_TIMEOUT
                )
        except requests.RequestException as exc:
            raise make_error(RequestError.CODE.CONN_EXCEPTION, f"token info: {exc}") from exc
        if r.status_code != requests.codes.ok:
            raise error_from_response(r, "token info")
        return json_object(r, "token info")


class AppspotOAuthHandler(OAuthHandler):
    """Tokens obtained and refreshed through acd_cli's Appspot relay (no client secret needed)."""

    APPSPOT_URL = "https://tensile-runway-92512.appspot.com/"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.load_oauth_data()
        logger.info("%s initialized", type(self).__name__)

    def check_oauth_file_exists(self) -> None:
        """Asks the user to save the relay's answer as ``oauth_data`` if the file is missing.

        :raises: FileNotFoundError if the file is still missing afterwards
        """
        if os.path.isfile(self.oauth_data_path):
            return
        input(
            f"For the one-time authentication a browser (tab) will be opened at {self.APPSPOT_URL}.\n"
            f'Accept the request and save the plain-text answer into a file called "{self.OAUTH_DATA_FILE}" '
            f'in the directory "{self.path}".\nPress Enter to open a browser.\n'
        )
        webbrowser.open_new_tab(self.APPSPOT_URL)
        input(f'Press Enter once "{self.OAUTH_DATA_FILE}" is saved in "{self.path}".\n')
        with open(self.oauth_data_path):
            pass

    def refresh_auth_token(self) -> None:
        """:raises: RequestError"""
        logger.info("Refreshing authentication token.")
        started = time.time()
        form = {self.KEYS.REFR_TOKEN: self.oauth_data[self.KEYS.REFR_TOKEN]}
        url = self.APPSPOT_URL
        if self.urls.base_url is not None:
            # an acdfuse server is its own OAuth provider: a refresh grant without client credentials,
            # which is what the relay did on the client's behalf
            url = self.urls.token
            form["grant_type"] = "refresh_token"
        self._store_new_token(self._token_request(url, form, "refresh token"), started)


class LocalOAuthHandler(OAuthHandler):
    """A local OAuth handler that works with a whitelisted security profile (``client_data``).

    Runs the authorization-code flow once and refreshes with the client id and secret. Against an
    ``acdfuse serve`` named in ``acdfuse_server`` the login and token URLs are that server's.
    """

    CLIENT_DATA_FILE = "client_data"

    AMAZON_OA_LOGIN_URL = AMAZON_LOGIN_URL
    AMAZON_OA_TOKEN_URL = AMAZON_TOKEN_URL
    REDIRECT_URI = "http://localhost"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.client_data: dict[str, str] = {}
        self.login_url = self.urls.login
        self.token_url = self.urls.token
        self.load_client_data()
        self.load_oauth_data()
        logger.info("%s initialized.", type(self).__name__)

    def client_id(self) -> str:
        return self.client_data.get("CLIENT_ID", "")

    def client_secret(self) -> str:
        return self.client_data.get("CLIENT_SECRET", "")

    def load_client_data(self) -> None:
        """:raises: OSError if the client data file is missing
        :raises: KeyError if it lacks the client id or secret"""
        with open(os.path.join(self.path, self.CLIENT_DATA_FILE), encoding="utf-8") as f:
            self.client_data = json.load(f)
        if not self.client_id() or not self.client_secret():
            raise KeyError(f"{self.CLIENT_DATA_FILE}: CLIENT_ID or CLIENT_SECRET empty or absent")

    def login_page_url(self) -> str:
        """The page where the user grants access (step one of the authorization-code flow)."""
        query = {
            "client_id": self.client_id(),
            "response_type": "code",
            "scope": "clouddrive:read_all clouddrive:write",
            "redirect_uri": self.REDIRECT_URI,
        }
        return self.login_url + "?" + urlencode(query)

    def exchange_code(self, redirected_url: str) -> None:
        """Step two: trade the code in the URL the browser was sent to for tokens; save them."""
        codes = parse_qs(urlparse(redirected_url).query).get("code")
        if not codes:
            raise RequestError(RequestError.CODE.INVALID_TOKEN, f"no ?code= in {redirected_url!r}")
        started = time.time()
        form = {
            "grant_type": "authorization_code",
            "code": codes[0],
            "client_id": self.client_id(),
            "client_secret": self.client_secret(),
            "redirect_uri": self.REDIRECT_URI,
        }
        self.oauth_data = self._token_request(self.token_url, form, "authorization code exchange")
        self.treat_auth_token(started)
        self.write_oauth_data()

    def check_oauth_file_exists(self) -> None:
        """Runs the one-time browser login if there is no ``oauth_data`` yet."""
        if os.path.isfile(self.oauth_data_path):
            return
        url = self.login_page_url()
        webbrowser.open_new_tab(url)
        answer = input(
            f"A browser window will have opened at {url}\n"
            "Please log in or accept and enter the URL you have been redirected to: "
        )
        self.exchange_code(answer.strip())

    def refresh_auth_token(self) -> None:
        """:raises: RequestError"""
        logger.info("Refreshing authentication token.")
        started = time.time()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self.oauth_data[self.KEYS.REFR_TOKEN],
            "client_id": self.client_id(),
            "client_secret": self.client_secret(),
            "redirect_uri": self.REDIRECT_URI,
        }
        self._store_new_token(self._token_request(self.token_url, form, "refresh token"), started)
