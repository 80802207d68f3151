"""``ACDClient``: the Cloud Drive client, built from a config dir (tokens, endpoints, server URL).

The constructor reads files only. Endpoint discovery (when ``endpoint_data`` is missing or older than
``ENDPOINT_VAL_TIME``) and token refresh happen on first use. The discovery answer of ``acdfuse
serve`` also names its protocol extensions (key ``acdfuse``, see ``acdfuse.server.routes``); an
``endpoint_data`` written without that key (by the server's ``--credentials-out``, or before the
extensions existed) is fetched anew the first time an extension is asked about, once. Lock order:
``_endpoint_lock`` alone; it is held across the discovery request so concurrent first calls fetch
the endpoints once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from types import TracebackType
from typing import Any

from . import oauth
from .account import AccountMixin
from .backoff_req import REQUESTS_TIMEOUT, BackOffRequest, RetryPolicy
from .common import (
    OK_CODES,
    RequestError,
    error_from_response,
    invalid_answer,
    json_object,
    load_service_urls,
    write_private_json,
)
from .content import ContentMixin
from .metadata import MetadataMixin
from .trash import TrashMixin

logger = logging.getLogger(__name__)

ENDPOINT_VAL_TIME = 259200
"""number of seconds for endpoint validity (3 days)"""

ENDPOINT_DATA_FILE = "endpoint_data"
_EXP_TIME_KEY = "exp_time"

EXTENSIONS_KEY = "acdfuse"
"""key of the discovery answer naming acdfuse's protocol extensions (absent on other servers)"""
IF_MATCH_CONTENT_VERSION = "contentProperties.version"
"""what the ``ifMatch`` extension says an If-Match tag of an overwrite names"""
DEFAULT_MAX_FILE_SIZE = 50_000 * 1024**2
"""the largest file Amazon took (acd-api.md section 11), for servers that do not say theirs"""


class ACDClient(AccountMixin, ContentMixin, MetadataMixin, TrashMixin):
    """Provides a client to the Amazon Cloud Drive RESTful interface (or any compatible server).

    :param path: config dir with ``oauth_data`` and optionally ``client_data``, ``endpoint_data``,
        ``acdfuse_server``
    :param timeout: (connect, read) timeout of each HTTP request
    :param retry_deadline: seconds one logical request may spend retrying; None keeps the default
    """

    def __init__(
        self,
        path: str = "",
        *,
        timeout: tuple[float, float] = REQUESTS_TIMEOUT,
        retry_deadline: float | None = None,
    ) -> None:
        self.cache_path = path
        logger.info('Initializing ACD with path "%s".', path)
        self.urls = load_service_urls(path)
        self.handler = oauth.create_handler(path)
        policy = RetryPolicy() if retry_deadline is None else RetryPolicy().with_deadline(retry_deadline)
        self.BOReq = BackOffRequest(self.handler, timeout=timeout, policy=policy)
        self._endpoint_lock = threading.Lock()
        self._endpoint_data: dict[str, Any] = self._read_endpoint_file()

    # --- endpoints -----------------------------------------------------------------------------

    @property
    def _endpoint_data_path(self) -> str:
        return os.path.join(self.cache_path, ENDPOINT_DATA_FILE)

    def _read_endpoint_file(self) -> dict[str, Any]:
        try:
            with open(self._endpoint_data_path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except ValueError:
            logger.warning("%s is not valid JSON; fetching endpoints anew", self._endpoint_data_path)
            return {}
        return data if isinstance(data, dict) else {}

    def _endpoints(self) -> dict[str, Any]:
        with self._endpoint_lock:
            return self._endpoints_locked()

    def _endpoints_locked(self) -> dict[str, Any]:
        data = self._endpoint_data
        if not data or time.time() > float(data.get(_EXP_TIME_KEY, 0)):
            if data:
                logger.info("Endpoint data expired.")
            self._endpoint_data = data = self._get_endpoints()
        return data

    def server_extensions(self) -> dict[str, Any]:
        """The protocol extensions the server advertised (``{}`` for a server without any)."""
        with self._endpoint_lock:
            data = self._endpoints_locked()
            if EXTENSIONS_KEY not in data:
                # written by someone who did not record them: ask the server itself, once
                logger.info("Asking the server which protocol extensions it has.")
                self._endpoint_data = data = self._get_endpoints()
            ext = data.get(EXTENSIONS_KEY)
            return ext if isinstance(ext, dict) else {}

    @property
    def conditional_overwrite(self) -> bool:
        """Whether the server itself checks ``overwrite_stream(..., expected_content_version=...)``
        (atomically, with If-Match); without it the client compares just before the upload."""
        return self.server_extensions().get("ifMatch") == IF_MATCH_CONTENT_VERSION

    @property
    def properties_with_content(self) -> bool:
        """Whether an upload and an overwrite may carry the node's properties in their metadata part
        (``upload_stream(properties=)``, ``overwrite_stream(properties=)``), stored with the content
        in one request. Amazon ignored an overwrite's metadata, and whether its uploads kept them is
        not known for sure (acd-api.md section 6.2), so only a server that says so is trusted."""
        return set(self.server_extensions().get("propertiesWithContent") or ()) >= {"upload", "overwrite"}

    @property
    def max_file_size(self) -> int:
        """The largest file the server takes, in bytes: what it advertises, else Amazon's 50,000 MiB.
        A bigger upload or overwrite would end in :class:`~acdfuse.api.common.TooLarge`."""
        size = self.server_extensions().get("maxFileSize")
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return size
        return DEFAULT_MAX_FILE_SIZE

    def _get_endpoints(self) -> dict[str, Any]:
        """Ask the discovery URL for the metadata and content URLs and cache them on disk."""
        r = self.BOReq.get(self.urls.endpoint, operation="endpoint discovery")
        if r.status_code not in OK_CODES:
            raise error_from_response(r, "endpoint discovery")
        data = json_object(r, "endpoint discovery")
        if not data.get("customerExists", True):
            raise RequestError(
                RequestError.CODE.FAILED_SUBREQUEST, "endpoint discovery: the account has no Cloud Drive"
            )
        urls = (data.get("metadataUrl"), data.get("contentUrl"))
        if not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
            raise invalid_answer("endpoint discovery", f"URLs missing in {str(data)[:300]}")
        data[_EXP_TIME_KEY] = time.time() + ENDPOINT_VAL_TIME
        data.setdefault(EXTENSIONS_KEY, None)  # recorded as asked, also when the server has none
        write_private_json(self._endpoint_data_path, data)
        return data

    @property
    def metadata_url(self) -> str:
        return str(self._endpoints()["metadataUrl"])

    @property
    def content_url(self) -> str:
        return str(self._endpoints()["contentUrl"])

    # --- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close pooled connections and wake any back-off wait."""
        self.BOReq.close()
        self.handler.close()

    def __enter__(self) -> ACDClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
