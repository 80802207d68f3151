"""Content read path of the mount: chunk cache (memory + disk) and read-ahead, FUSE-agnostic.

``ContentReader`` gets a plain ``fetch(node_id, offset, length)`` callable and serves byte ranges;
see ``reader.py`` for the design and lock order.
"""

from __future__ import annotations

from .options import GiB, MiB, ReaderOptions
from .reader import ContentReader, Fetch

__all__ = ["ContentReader", "Fetch", "GiB", "MiB", "ReaderOptions"]
