"""The bundled Cloud-Drive-compatible server (``acdfuse serve``).

Amazon Cloud Drive REST API v1 under one base URL: discovery ``/drive/v1/account/endpoint``,
metadata ``/drive/v1/``, content ``/cdproxy/``, OAuth ``/ap/oa`` and ``/auth/o2/*``. Imports nothing
from the client layers. Module map: server (wiring), handler (HTTP), routes (endpoints), oauth,
auth (tokens), drive (node tree), db (SQLite), blobs (content files), multipart, bodies, filters,
faults (fault switches + stats), thumbnails, generate (bulk trees), command (CLI).
"""

from __future__ import annotations

from acdfuse.server.config import ServerConfig
from acdfuse.server.server import DriveServer

__all__ = ["DriveServer", "ServerConfig"]
