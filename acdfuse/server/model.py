"""Plain values of the drive: accounts, new content, and the validation of names, labels and ids."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import Any

from acdfuse.server.errors import ApiError, bad_request, not_found
from acdfuse.server.util import is_valid_id

MAX_NAME = 280
MAX_DESCRIPTION = 500
MAX_LABELS = 50
MAX_PROPERTY_KEYS = 10
MAX_PROPERTY_VALUE = 500


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    user_id: str
    root: str
    quota: int
    owner: str  # createdBy of nodes made by this server's app, and the properties owner


@dataclass(frozen=True)
class NewContent:
    blob: str
    size: int
    md5: str


# the discovery answer's key for acdfuse's protocol extensions, and what its "ifMatch" says an
# If-Match tag of an overwrite names (see routes.py)
EXTENSIONS_KEY = "acdfuse"
IF_MATCH_ON = "contentProperties.version"
# what "propertiesWithContent" says: the metadata part of these requests may carry properties
PROPERTIES_WITH = ("upload", "overwrite")


def content_version(row: Any) -> int:
    """A file's ``contentProperties.version`` as the node JSON reports it (1 before any content)."""
    return int(row["content_version"] or 1)


@dataclass(frozen=True)
class ContentCondition:
    """The If-Match of a conditional overwrite: the content versions it allows (None: any)."""

    header: str
    versions: frozenset[int] | None

    def check(self, node_id: str, current: int) -> None:
        """Raise 412 unless the node's current content version is one the condition allows."""
        if self.versions is None or current in self.versions:
            return
        raise ApiError(
            412,
            f"Node {node_id} has content version {current}; If-Match asked for {self.header}",
            "PRECONDITION_FAILED",
            {"contentVersion": current},
        )


def validate_name(name: Any) -> str:
    if not isinstance(name, str):
        raise bad_request("name must be a string")
    if not name:
        raise bad_request(
            "1 validation error detected: Value '' at 'name' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1"
        )
    if len(name) > MAX_NAME:
        raise bad_request(
            f"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_NAME}"
        )
    if "/" in name or "\x00" in name:
        raise bad_request(f"Invalid name {name!r}: '/' and NUL are not allowed")
    if name in (".", ".."):
        raise bad_request(f"Invalid name {name!r}")
    return name


def validate_labels(labels: Any) -> list[str]:
    if not isinstance(labels, list) or not all(isinstance(x, str) and 0 < len(x) <= 256 for x in labels):
        raise bad_request("labels must be a list of non-empty strings")
    if len(labels) > MAX_LABELS:
        raise bad_request(f"at most {MAX_LABELS} labels")
    return list(dict.fromkeys(labels))


def check_id(node_id: Any, what: str = "node id") -> str:
    if not isinstance(node_id, str) or not is_valid_id(node_id):
        raise not_found(f"Invalid {what}")
    return node_id


def content_type_for(name: str) -> tuple[str, str]:
    """(contentType, extension) guessed from the name, as Amazon derived them."""
    ext = name.rsplit(".", 1)[1].lower() if "." in name.strip(".") else ""
    ctype = mimetypes.guess_type("x." + ext)[0] if ext else None
    return ctype or "application/octet-stream", ext


def conflict(lname: str, parent: str, other: str) -> ApiError:
    return ApiError(
        409,
        f"Node with the name {lname} already exists under parentId {parent} conflicting NodeId: {other}",
        "NAME_ALREADY_EXISTS",
        {"nodeId": other},
    )
