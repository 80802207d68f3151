"""Content read path of the mount: chunk cache (memory + disk) and read-ahead, FUSE-agnostic.

Usage (the mount builds the options once and passes any ``fetch(node_id, offset, length, content_key)``,
which must return exactly that content's bytes, e.g. by pinning the range request to it)::

    def fetch(node_id, offset, length, content_key):
        return client.download_chunk(node_id, offset, length, content_md5=content_key)

    reader = ContentReader(fetch, ReaderOptions(cache_dir=..., memory_cache=...))
    reader.start()
    fh = reader.open(node.id, node.md5 or str(node.content_version), node.size)
    data = reader.read(fh, offset, length)     # bytes; short only at end of file
    reader.release(fh)
    reader.invalidate(node.id, keep_content=new_key)   # after a sync saw new content
    reader.close()                                      # writes out queued disk-cache chunks

Errors: whatever ``fetch`` raises propagates unchanged; a read that cannot finish within
``timeout`` raises ``OSError(EIO)``; bad handles/ranges raise EBADF/EINVAL.  Design, lock order
and the read-ahead policy are described in ``reader.py`` and the modules it names.
"""

from __future__ import annotations

from .options import GiB, MiB, ReaderOptions
from .reader import ContentReader, Fetch

__all__ = ["ContentReader", "Fetch", "GiB", "MiB", "ReaderOptions"]
