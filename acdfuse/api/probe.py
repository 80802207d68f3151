"""A cheap reachability check of a client's content server: one TCP connect, no request, no retries."""

from __future__ import annotations

import logging
import socket
import urllib.parse
from typing import Any

log = logging.getLogger(__name__)


def client_base(client: Any) -> str:
    """scheme://host:port of the content server, for messages."""
    try:
        url = urllib.parse.urlsplit(client.content_url)
    except Exception:  # endpoint discovery failed: nothing better to name
        return "(unknown address)"
    return f"{url.scheme}://{url.netloc}"


def server_accepts(client: Any, timeout: float) -> bool:
    """Whether the content server accepts a TCP connection now (cheap: no request, no retries)."""
    try:
        url = urllib.parse.urlsplit(client.content_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        with socket.create_connection((url.hostname or "localhost", port), timeout=timeout):
            return True
    except (OSError, ValueError) as exc:
        log.debug("the content server does not accept connections: %s", exc)
        return False
    except Exception as exc:  # endpoint discovery failed: no server to ask
        log.debug("no content server address: %r", exc)
        return False
