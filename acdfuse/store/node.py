"""The ``Node`` record the store hands out, and the conversions between node JSON, rows and Nodes."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from acdfuse.store.errors import MalformedChange

FOLDER = "FOLDER"
FILE = "FILE"
AVAILABLE = "AVAILABLE"
TRASH = "TRASH"
PENDING = "PENDING"
PURGED = "PURGED"

# The property key (under the app's owner) of a node's POSIX record: mode, uid, gid, mtime, symlink.
# Its value is read with every node row, so a stat needs no second query; its format belongs to
# acdfuse/vfs/posixattrs.py and the store never looks inside it.
ATTRS_KEY = "posix"

# Separator used by group_concat() to pack a node's parent ids into one column; node ids are
# [A-Za-z0-9_-] on the wire, and a control character never occurs in them.
PARENT_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class Node:
    """One drive node as mirrored locally. Times are epoch seconds (UTC)."""

    id: str
    name: str
    kind: str
    status: str
    parents: tuple[str, ...]
    size: int
    md5: str | None
    content_version: int
    version: int
    created: float
    modified: float
    ino: int
    is_root: bool
    # the raw POSIX record (property ATTRS_KEY), None when the node has none
    posix: str | None = None

    @property
    def is_folder(self) -> bool:
        return self.kind == FOLDER

    @property
    def is_file(self) -> bool:
        return self.kind == FILE

    @property
    def is_available(self) -> bool:
        return self.status == AVAILABLE


# Column list shared by every SELECT that builds a Node; keep in step with node_from_row().
# The POSIX record comes from the properties table's primary key (ino, owner, key): a range of one
# node's few properties, whatever the owner -- the server shows an app only its own properties
# (acd-api.md section 9), so any owner found in the mirror is this app.
NODE_COLUMNS = (
    "n.ino, n.id, n.name, n.kind, n.status, n.size, n.md5, n.content_version, n.version, "
    "n.created, n.modified, n.is_root, "
    "(SELECT group_concat(p.parent, char(31)) FROM {parentage} p WHERE p.child = n.ino), "
    "(SELECT a.value FROM {properties} a WHERE a.ino = n.ino AND a.key = '" + ATTRS_KEY + "' LIMIT 1)"
)


def node_from_row(row: tuple[Any, ...]) -> Node:
    parents = row[12]
    return Node(
        id=row[1],
        name=row[2],
        kind=row[3],
        status=row[4],
        parents=tuple(parents.split(PARENT_SEP)) if parents else (),
        size=row[5],
        md5=row[6],
        content_version=row[7],
        version=row[8],
        created=row[9] or 0.0,
        modified=row[10] or 0.0,
        ino=row[0],
        is_root=bool(row[11]),
        posix=row[13],
    )


# A node normalised for staging/writing: (id, name, kind, status, size, md5, content_version,
# version, createdDate, modifiedDate, is_root, parents_json, properties_json).
# Dates stay ISO strings here; SQLite's julianday() turns them into epoch seconds in C, which is
# several times cheaper than datetime parsing for a million nodes.
StagedRow = tuple[str, "str | None", str, str, int, "str | None", int, int,
                  "str | None", "str | None", int, str, "str | None"]


_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]+")
# SQLite integers are signed 64-bit; a size or version beyond that is no real node
_MAX_INT = 2**63 - 1


def _count(value: Any) -> int:
    """A size or version: a non-negative integer (a numeric string is taken, as before) that SQLite can
    store; anything else (negative, fractional, infinite, beyond 64 bits) raises ValueError."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not an integer: {value!r:.40}")
    n = int(value)
    if not 0 <= n <= _MAX_INT:
        raise ValueError(f"out of range: {value!r:.40}")
    return n


def _optional_text(value: Any) -> str | None:
    if value is not None and type(value) is not str:
        raise TypeError(f"not a string: {value!r:.40}")
    return value


def _parents_json(parents: list[str]) -> str:
    # Hot path of a first sync: node ids are plain [A-Za-z0-9_-], so the JSON array can be
    # assembled directly; anything else goes through json.dumps.
    if len(parents) == 1 and _PLAIN_ID.fullmatch(parents[0]):
        return f'["{parents[0]}"]'
    return json.dumps(parents)


def staged_row(node: Mapping[str, Any]) -> StagedRow:
    """Validate and flatten one node JSON object; raises MalformedChange (a ValueError) on malformed input."""
    try:
        node_id = node["id"]
        name = node.get("name")
        parents = node.get("parents") or []
        content = node.get("contentProperties")
        if (type(node_id) is not str or not node_id or (name is not None and type(name) is not str)
                or type(parents) is not list or not all(type(p) is str for p in parents)
                or (content is not None and not isinstance(content, Mapping))):
            raise TypeError
        props = node.get("properties")
        if content:
            size = _count(content.get("size"))
            md5 = _optional_text(content.get("md5"))
            content_version = _count(content.get("version"))
        else:
            size, md5, content_version = 0, None, 0
        return (
            node_id,
            name,
            str(node.get("kind") or ""),
            str(node.get("status") or AVAILABLE),
            size,
            md5,
            content_version,
            _count(node.get("version")),
            _optional_text(node.get("createdDate")),
            _optional_text(node.get("modifiedDate")),
            1 if node.get("isRoot") else 0,
            _parents_json(parents),
            json.dumps(props) if isinstance(props, Mapping) and props else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        raise MalformedChange(f"malformed node in change set: {node!r:.300}") from None


def _iso(epoch: float) -> str:
    # the server's format, to the millisecond the mirror keeps (EPOCH_SQL reads it back exactly)
    seconds, ms = divmod(round(epoch * 1000), 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms:03d}Z"


def restaged_row(node: Node, props: Mapping[str, Mapping[str, str]], version: int) -> StagedRow:
    """A stored node as a staged row again, with other properties and version (a local update)."""
    return (node.id, node.name or None, node.kind, node.status, node.size, node.md5, node.content_version,
            version, _iso(node.created) if node.created else None,
            _iso(node.modified) if node.modified else None, 1 if node.is_root else 0,
            json.dumps(list(node.parents)), json.dumps(props) if props else None)


def purged_row(node_id: str) -> StagedRow:
    if not isinstance(node_id, str) or not node_id:
        raise MalformedChange(f"purged entry without a valid id: {node_id!r:.200}")
    return (node_id, None, "", PURGED, 0, None, 0, 0, None, None, 0, "[]", None)


def is_storable(status: str, name: str | None, is_root: int) -> bool:
    """PENDING nodes (unfinished uploads) and nameless non-root nodes never enter the mirror."""
    return status not in (PENDING, PURGED) and (bool(is_root) or bool(name))


def iso_to_epoch(value: str | None) -> float:
    """Python fallback for building a Node from JSON without touching the database."""
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def record_of(props: Mapping[str, Any] | None) -> str | None:
    """The POSIX record in a node's properties map (owner -> key -> value), whatever the owner."""
    for kv in (props or {}).values():
        if isinstance(kv, Mapping) and isinstance(kv.get(ATTRS_KEY), str):
            return str(kv[ATTRS_KEY])
    return None


def transient_node(row: StagedRow, ino: int = 0) -> Node:
    """A Node for an answer the mirror does not keep (PENDING, nameless, purged)."""
    return Node(
        id=row[0], name=row[1] or "", kind=row[2], status=row[3], parents=tuple(json.loads(row[11])),
        size=row[4], md5=row[5], content_version=row[6], version=row[7],
        created=iso_to_epoch(row[8]), modified=iso_to_epoch(row[9]), ino=ino, is_root=bool(row[10]),
        posix=record_of(json.loads(row[12])) if row[12] else None,
    )
