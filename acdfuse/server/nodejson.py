"""The wire format of a node, produced by SQLite (JSON1), and a page of a listing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

NODE_COLUMNS = (
    "n.id, n.account, n.kind, n.name, n.status, n.version, n.labels, n.description, n.created_by, "
    "n.created, n.modified, n.etag, n.is_root, n.size, n.md5, n.content_type, n.extension, "
    "n.content_version, n.content_date, n.blob, n.seq, n.trashed, n.rowid AS rid"
)


def date_sql(col: str) -> str:
    # integer math, so the milliseconds are exact (no float rounding of epoch seconds)
    return f"(strftime('%Y-%m-%dT%H:%M:%S', {col} / 1000, 'unixepoch') || printf('.%03dZ', {col} % 1000))"


# The app's own properties, as {"properties": {owner: {key: value}}}. Every account has one app, whose
# owner id is OWNER_PREFIX + account (``Drive.owner_of``); another owner's properties are never shown,
# as Amazon showed an app only its own (acd-api.md section 9). A client's mirror learns them from
# ``changes`` like any other field.
OWNER_PREFIX = "acdfuse-app-"
_OWNER_SQL = f"('{OWNER_PREFIX}' || n.account)"
PROPERTIES_JSON = f"""(SELECT json_object('properties', json_object({_OWNER_SQL},
        json_group_object(pr.key, pr.value)))
    FROM properties pr WHERE pr.node = n.id AND pr.owner = {_OWNER_SQL})"""

# The node JSON is built by SQLite itself (JSON1): a page of 1000 nodes for ``changes`` or a list then
# costs a few microseconds per node instead of tens in Python. This expression is the one definition
# of the wire format of a node. ``json_patch`` with ``"name": null`` drops the name of the root.
_BASE_JSON = f"""json_patch(json_object(
    'id', n.id, 'name', n.name, 'kind', n.kind,
    'parents', json(n.parents_json),
    'status', n.status, 'version', n.version, 'labels', json(n.labels), 'description', n.description,
    'createdBy', n.created_by, 'createdDate', {date_sql("n.created")},
    'modifiedDate', {date_sql("n.modified")}, 'eTagResponse', n.etag,
    'restricted', json('false'), 'isShared', json('false')),
  CASE WHEN n.kind = 'FILE' THEN json_object('contentProperties', json_object(
        'size', COALESCE(n.size, 0), 'md5', COALESCE(n.md5, 'd41d8cd98f00b204e9800998ecf8427e'),
        'contentType', COALESCE(n.content_type, 'application/octet-stream'),
        'extension', COALESCE(n.extension, ''), 'version', COALESCE(n.content_version, 1),
        'contentDate', {date_sql("COALESCE(n.content_date, n.created)")}))
    WHEN n.is_root THEN '{{"isRoot":true,"name":null}}'
    WHEN n.name IS NULL THEN '{{"name":null}}'
    ELSE '{{}}' END)"""
# json_patch re-parses the whole object, so only a node that has properties pays for it (a full dump
# of 200k nodes took 35% longer when every node went through it)
NODE_JSON = f"""CASE
    WHEN EXISTS (SELECT 1 FROM properties pr WHERE pr.node = n.id AND pr.owner = {_OWNER_SQL})
    THEN json_patch({_BASE_JSON}, {PROPERTIES_JSON})
    ELSE {_BASE_JSON} END"""


@dataclass(frozen=True)
class Page:
    """One page of a listing; ``data`` holds node JSON texts, spliced into the body unparsed."""

    count: int
    data: list[str]
    next_token: str | None

    def to_bytes(self) -> bytes:
        body = '{"count":%d,"data":[%s]' % (self.count, ",".join(self.data))  # noqa: UP031
        if self.next_token:
            body += ',"nextToken":"%s"' % self.next_token  # noqa: UP031
        return (body + "}").encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count, "data": [json.loads(d) for d in self.data]}
        if self.next_token:
            out["nextToken"] = self.next_token
        return out
