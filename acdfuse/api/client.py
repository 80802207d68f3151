"""``ACDClient``: the Cloud Drive client, built from a config dir (tokens, endpoints, server URL).

The constructor reads files only. Endpoint discovery (when ``endpoint_data`` is missing or older than
``ENDPOINT_VAL_TIME``) and token refresh happen on first use. Lock order: ``_endpoint_lock`` alone;
it is held across the discovery request so concurrent first calls fetch the endpoints once.
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
from .common import OK_CODES, RequestError, error_from_response, load_service_urls, write_private_json
from .content import ContentMixin
from .metadata import MetadataMixin
from .trash import TrashMixin

logger = logging.getLogger(__name__)

ENDPOINT_VAL_TIME = 259200
"""number of seconds for endpoint validity (3 days)"""

ENDPOINT_DATA_FILE = "endpoint_data"
_EXP_TIME_KEY = "exp_time"


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
            data = self._endpoint_data
            if not data or time.time() > float(data.get(_EXP_TIME_KEY, 0)):
                if data:
                    logger.info("Endpoint data expired.")
                self._endpoint_data = data = self._get_endpoints()
            return data

    def _get_endpoints(self) -> dict[str, Any]:
        """Ask the discovery URL for the metadata and content URLs and cache them on disk."""
        r = self.BOReq.get(self.urls.endpoint, operation="endpoint discovery")
        if r.status_code not in OK_CODES:
            raise error_from_response(r, "endpoint discovery")
        try:
            data = r.json()
        except ValueError as exc:
            raise RequestError(
                RequestError.CODE.FAILED_SUBREQUEST, f"endpoint discovery: invalid JSON {r.text[:200]!r}"
            ) from exc
        if not data.get("customerExists", True):
            raise RequestError(
                RequestError.CODE.FAILED_SUBREQUEST, "endpoint discovery: the account has no Cloud Drive"
            )
        if not data.get("metadataUrl") or not data.get("contentUrl"):
            raise RequestError(
                RequestError.CODE.FAILED_SUBREQUEST, f"endpoint discovery: URLs missing in {data!r}"
            )
        data[_EXP_TIME_KEY] = time.time() + ENDPOINT_VAL_TIME
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
