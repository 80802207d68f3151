"""Builders for node JSON and change streams used by the store tests (no server needed)."""

from __future__ import annotations

import itertools
from collections import namedtuple
from collections.abc import Iterator
from typing import Any

ChangeSet = namedtuple("ChangeSet", ["nodes", "purged_nodes", "checkpoint", "reset"])

_ids = itertools.count(1)


def new_id() -> str:
    return f"id{next(_ids):020d}"


def folder(name: str | None, parents: list[str], *, node_id: str | None = None, status: str = "AVAILABLE",
           version: int = 1, is_root: bool = False) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": node_id or new_id(), "kind": "FOLDER", "parents": parents, "status": status,
        "version": version, "createdDate": "2024-01-02T03:04:05.678Z",
        "modifiedDate": "2024-01-02T03:04:06.000Z",
    }
    if name is not None:
        node["name"] = name
    if is_root:
        node["isRoot"] = True
    return node


EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def file(name: str, parents: list[str], *, node_id: str | None = None, size: int = 3,
         status: str = "AVAILABLE", version: int = 1, content_version: int = 1,
         md5: str = EMPTY_MD5) -> dict[str, Any]:
    node = folder(name, parents, node_id=node_id, status=status, version=version)
    node["kind"] = "FILE"
    node["contentProperties"] = {"size": size, "md5": md5, "version": content_version,
                                 "contentType": "application/octet-stream"}
    return node


class Feed:
    """A get_changes stand-in: each call yields the next scripted response.

    A response is a list of ChangeSets; an Exception instance in it is raised at that point
    (a truncated stream). Records the checkpoints it was called with.
    """

    def __init__(self) -> None:
        self.responses: list[list[Any]] = []
        self.calls: list[tuple[str, bool]] = []

    def push(self, *items: Any) -> None:
        self.responses.append(list(items))

    def __call__(self, checkpoint: str = "", include_purged: bool = False) -> Iterator[ChangeSet]:
        self.calls.append((checkpoint, include_purged))
        items = self.responses.pop(0)
        return self._gen(items)

    @staticmethod
    def _gen(items: list[Any]) -> Iterator[ChangeSet]:
        for item in items:
            if isinstance(item, BaseException):
                raise item
            yield item
