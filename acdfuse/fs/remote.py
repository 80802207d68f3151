"""Glue of the write side: the client's calls as the plain callables vfs takes, and the read cache's.

vfs never sees the client (DESIGN.md: it gets callables); these adapters are built once where the
mount is wired.
"""

from __future__ import annotations

import inspect
from typing import Any

from acdfuse.vfs.reader import ContentReader
from acdfuse.vfs.upload import Properties, Remote
from acdfuse.vfs.writes import ReadHooks


def remote_for(client: Any) -> Remote:
    """The upload calls of an ``ACDClient``.

    ``overwrite_stream(expected_content_version=)`` refuses with PreconditionFailed once the content
    moved on (the server checks it in the write itself where it can, else the client just before);
    an older client without the keyword leaves that check to the write side (vfs/upload.py).
    """
    conditional = "expected_content_version" in inspect.signature(client.overwrite_stream).parameters

    def upload(stream: Any, name: str, parent_id: str, properties: Properties | None = None) -> dict:
        return dict(client.upload_stream(stream, name, parent_id, properties=properties))

    def overwrite(stream: Any, node_id: str, base_version: int | None,
                  properties: Properties | None = None) -> dict:
        extra: dict[str, Any] = {"properties": properties} if properties else {}
        if conditional:
            extra["expected_content_version"] = base_version
        return dict(client.overwrite_stream(stream, node_id, **extra))

    def with_properties() -> bool:
        return bool(getattr(client, "properties_with_content", False))

    def metadata(node_id: str) -> dict:
        return dict(client.get_metadata(node_id, temp_link=False))

    def trash(node_id: str) -> dict:
        return dict(client.move_to_trash(node_id))

    def move(node_id: str, parent_id: str, new_parent_id: str, name: str) -> dict:
        if parent_id == new_parent_id:
            return dict(client.rename_node(node_id, name))
        # a new file has one folder: one request moves and renames it
        return dict(client.update_metadata(node_id, {"parents": [new_parent_id], "name": name}))

    return Remote(upload=upload, overwrite=overwrite, metadata=metadata, conditional=conditional,
                  trash=trash, move=move, with_properties=with_properties)


def read_hooks(reader: ContentReader) -> ReadHooks:
    """Base content through the read cache (a cached chunk is never downloaded again), and the
    hand-over of an uploaded file's bytes to it."""

    def fetch(node_id: str, content_key: str, size: int, offset: int, length: int) -> bytes:
        fh = reader.open(node_id, content_key, size)
        try:
            return reader.read(fh, offset, length)
        finally:
            reader.release(fh)

    return ReadHooks(fetch=fetch, adopt=reader.adopt, invalidate=reader.invalidate,
                     adopt_file=reader.adopt_file)
