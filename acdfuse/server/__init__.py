"""The bundled Cloud-Drive-compatible server (``acdfuse serve``).

Amazon Cloud Drive REST API v1 under one base URL: discovery ``/drive/v1/account/endpoint``,
metadata ``/drive/v1/``, content ``/cdproxy/``, OAuth ``/ap/oa`` and ``/auth/o2/*``. Imports nothing
from the client layers. Module map: server (wiring, in-process helpers), handler (HTTP framing, faults,
sendfile), routes (endpoints), oauth (login page, token endpoints), auth (tokens, stored hashed),
drive (node tree operations), model (values, validation), nodejson (wire format), listing (filters,
paging), changes (checkpoints, stream), db (SQLite schema), blobs (content files), multipart and
bodies (streaming request parsing), filters (filter language), faults (fault switches + stats),
thumbnails, generate (bulk trees), command (``acdfuse serve``).
"""

from __future__ import annotations

from acdfuse.server.config import ServerConfig
from acdfuse.server.server import DriveServer

__all__ = ["DriveServer", "ServerConfig"]
