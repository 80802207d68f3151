"""One upload of a dirty file: stream its spool, check the answer, and never lose an update.

The spool is streamed in constant memory: the client reads it piece by piece, hashes (MD5) what it sends
and compares that with the md5 and size in the server's answer (a mismatch is an error there); here the
answer must name an md5 and the local copy's size.

No lost update: an overwrite names the content version its local copy was based on, and a changed file
answers 412 (``PreconditionFailed``). The client makes that check itself on a server without the
conditional overwrite, just before the upload (``overwrite_stream``'s docstring names the race window
that leaves); ``Remote.conditional`` False makes this module check before calling it. A changed (or
trashed) file, or a new file whose name was taken meanwhile, gets the local version as a conflict copy
next to it, ``NAME (conflict YYYY-MM-DD HHMMSS).EXT`` (UTC), with a warning naming both. When the
server already holds exactly our bytes (a previous try landed but its answer was lost, e.g. the mount
was killed), that node is taken as the answer instead.

Errors: a failure that will never succeed on retry (a folder that is gone, a full quota, a file over
the size limit, a base content that vanished before its missing bytes were fetched) is raised as
``UploadRefused``; ``is_permanent`` classifies everything else.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from acdfuse.api.common import (
    Conflict,
    ConnectionFailed,
    IncompleteResult,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    RequestError,
    ServerError,
    TooLarge,
    is_client_error,
    is_transient,
)

from .spool import Spool, SpoolReader

log = logging.getLogger(__name__)

# (stream, name, parent id[, properties]) -> node JSON of the new file
# (a readable, seekable stream over the spool; properties only when ``Remote.with_properties()``)
UploadNew = Callable[..., dict]
# (stream, node id, expected content version or None[, properties]) -> node JSON
Overwrite = Callable[..., dict]
# the app's properties to store with the content: {owner: {key: value, or None to delete it}}
Properties = dict[str, dict[str, "str | None"]]
# (content version the request creates, whether it makes a new node) -> properties to send, or None
PropertiesFor = Callable[[int, bool], "Properties | None"]

_HASH_PIECE = 1024 * 1024
MAX_CONFLICT_NAMES = 50


@dataclass(frozen=True)
class Remote:
    """The server calls an upload needs, as plain callables (the mount builds them from its client)."""

    upload: UploadNew
    overwrite: Overwrite
    metadata: Callable[[str], dict]
    # True when ``overwrite`` raises PreconditionFailed once the content moved past the expected version
    # (the client's ``overwrite_stream(expected_content_version=)`` does, on any server)
    conditional: bool = False
    # node id -> trashed node JSON: takes back a file deleted locally while its upload ran
    trash: Callable[[str], dict] | None = None
    # (node id, its folder, new folder, new name) -> node JSON: follows a rename done locally while the
    # file's first upload ran
    move: Callable[[str, str, str, str], dict] | None = None
    # True when ``upload`` and ``overwrite`` take the node's properties along (one request instead of
    # one more per key); asked at each upload, so it may do network I/O once (the client caches it)
    with_properties: Callable[[], bool] = lambda: False


class UploadRefused(Exception):
    """An upload that will not succeed however often it is tried; the local copy is kept."""


class UploadCancelled(Exception):
    """The file is being deleted locally: no conflict copy of it is made. Not final: when the delete
    fails, the upload is tried again (when it succeeds, the upload is dropped anyway)."""


class UploadMismatch(Exception):
    """The server stored other bytes than we sent (a transient fault: the upload is repeated)."""


@dataclass(frozen=True)
class Job:
    """A snapshot of what to upload."""

    local_id: int
    spool: Spool
    size: int
    node_id: str | None           # None: a new file
    name: str
    parent_id: str | None
    base_version: int | None
    parent_available: Callable[[str], bool | None] = lambda _pid: None   # True/False, None: ask the server
    cancelled: Callable[[], bool] = lambda: False       # deleted locally meanwhile: make no copies
    properties: PropertiesFor | None = None     # what to store with the content, where the server can
    # md5s of this file's earlier attempts that failed in a way that may have landed (the answer was
    # lost), and where to note another: a version on the server with one of them is ours, no conflict
    ours: frozenset[str] = frozenset()
    sent: Callable[[str], None] = lambda _md5: None
    # a node id the mount shows as another file: never taken (or overwritten) as an earlier attempt of
    # this one, whatever bytes it holds (it took the name locally while this file's upload ran)
    foreign: Callable[[str], bool] = lambda _node_id: False


@dataclass(frozen=True)
class Result:
    answer: dict
    md5: str
    conflict_with: str | None = None   # the node id of the other version when ours became a copy


# ---- errors ------------------------------------------------------------------------------------

def folder_refused(exc: BaseException) -> bool:
    """An answer that may mean the target folder is gone: 404, or Amazon's 400 "One of the parentId
    doesn't exists" (a plain client error); the caller then asks whether the folder is there."""
    return isinstance(exc, NotFound) or (is_client_error(exc) and not isinstance(exc, Conflict))


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying the same upload can never succeed: a refusal of ours, or an answer of the
    server that is not transient (``is_transient``: offline, a timeout, a rate limit)."""
    if isinstance(exc, UploadRefused):
        return True
    if not isinstance(exc, RequestError):
        return False       # local I/O trouble, a torn transfer, a bug: retried with back-off
    return not is_transient(exc)


def refusal(exc: BaseException, what: str) -> UploadRefused | None:
    """The UploadRefused a server answer amounts to, or None when it is not a final refusal."""
    if isinstance(exc, TooLarge):
        return UploadRefused(f"{what} is larger than the server accepts per file ({exc.msg})")
    if isinstance(exc, QuotaExceeded):
        return UploadRefused(f"the drive is full: {what} does not fit ({exc.msg})")
    return None


# ---- naming ------------------------------------------------------------------------------------

def conflict_name(name: str, when: float, n: int = 1) -> str:
    """``NAME (conflict YYYY-MM-DD HHMMSS).EXT`` in UTC; ``n`` > 1 adds a number when that is taken."""
    stem, ext = os.path.splitext(name)
    stamp = datetime.fromtimestamp(when, tz=UTC).strftime("%Y-%m-%d %H%M%S")
    tag = f" (conflict {stamp})" if n == 1 else f" (conflict {stamp} {n})"
    return f"{stem}{tag}{ext}"


# ---- streaming ---------------------------------------------------------------------------------

def spool_md5(spool: Spool, size: int) -> str:
    reader = spool.reader(size)
    h = hashlib.md5(usedforsecurity=False)  # contentProperties.md5, not security
    while True:
        piece = reader.read(_HASH_PIECE)
        if not piece:
            return h.hexdigest()
        h.update(piece)


def _content(node: dict) -> tuple[str | None, int | None, int | None]:
    props = node.get("contentProperties") or {}
    size, version = props.get("size"), props.get("version")
    return (props.get("md5"), None if size is None else int(size),
            None if version is None else int(version))


# ---- the upload --------------------------------------------------------------------------------

class Uploader:
    """Runs ``Job``s against a ``Remote`` (see the module docstring)."""

    def __init__(self, remote: Remote, clock: Callable[[], float] = time.time) -> None:
        self._remote = remote
        self._clock = clock

    def run(self, job: Job) -> Result:
        stream = job.spool.reader(job.size)
        try:
            if job.node_id is None:
                answer, other = self._new_file(job, stream)
            else:
                answer, other = self._overwrite(job, job.node_id, stream)
        except (ServerError, IncompleteResult, ConnectionFailed):
            # the server may have stored it and the answer got lost: if the file changes before the next
            # attempt, that one must still know this version for its own (see _changed, _new_file); a
            # hash pass over the local copy, on failures only
            job.sent(spool_md5(job.spool, job.size))
            raise
        return Result(answer, self.check(job, answer), other)

    @staticmethod
    def check(job: Job, answer: dict) -> str:
        """The answer's md5, once it is known to describe the local copy: the client compared it with
        what it sent; an answer taken without sending (the server already had our bytes) was compared
        with the spool's md5 where it was found."""
        md5, size, _ = _content(answer)
        if size != job.size or not md5:
            raise UploadMismatch(f"{job.name}: the server reports {size} bytes with md5 {md5}; the local "
                                 f"copy has {job.size} bytes")
        return md5

    # ---- new files ---------------------------------------------------------------------------
    def _new_file(self, job: Job, stream: SpoolReader) -> tuple[dict, str | None]:
        assert job.parent_id is not None
        self._check_parent(job, job.parent_id)
        try:
            return self._upload(job, stream, job.name, job.parent_id), None
        except Exception as exc:
            if isinstance(exc, Conflict):
                existing = exc.node_id
                if existing and not job.foreign(existing):
                    node = self._same_content(job, existing)
                    if node is not None:
                        log.info("%s: the server already holds this content (node %s); taking it",
                                 job.name, existing)
                        return node, None
                    ours = self._ours(job, existing)
                    if ours is not None:
                        # an earlier attempt of ours created it (its answer was lost): it is our file
                        log.info("%s: node %s is an earlier upload of this file; overwriting it", job.name,
                                 existing)
                        stream.seek(0)
                        version = _content(ours)[2]
                        again = replace(job, node_id=existing, base_version=version, ours=frozenset())
                        return self._overwrite(again, existing, stream)
                return self._conflict_copy(job, stream, job.name, job.parent_id, other=existing,
                                           why="a file of that name was created on the server meanwhile")
            if folder_refused(exc) and not self._parent_ok(job, job.parent_id):
                raise UploadRefused(f"the folder {job.parent_id} that {job.name!r} was created in is "
                                    f"gone from the drive") from exc
            refused = refusal(exc, repr(job.name))
            if refused is not None:
                raise refused from exc
            raise

    def _properties(self, job: Job, content_version: int, new_node: bool) -> Properties | None:
        if job.properties is None or not self._remote.with_properties():
            return None
        return job.properties(content_version, new_node) or None

    def _upload(self, job: Job, stream: SpoolReader, name: str, parent_id: str) -> dict:
        """A new node (a new file, or a conflict copy), with its properties where the server takes them."""
        props = self._properties(job, 1, True)
        if props is None:
            return self._remote.upload(stream, name, parent_id)
        return self._remote.upload(stream, name, parent_id, props)

    def _check_parent(self, job: Job, parent_id: str) -> None:
        if not self._parent_ok(job, parent_id):
            raise UploadRefused(f"the folder {parent_id} that {job.name!r} belongs in is gone from the drive")

    def _parent_ok(self, job: Job, parent_id: str) -> bool:
        known = job.parent_available(parent_id)
        if known is not None:
            return known
        try:
            node = self._remote.metadata(parent_id)
        except NotFound:
            return False
        return node.get("status") == "AVAILABLE" and node.get("kind") == "FOLDER"

    # ---- overwrites --------------------------------------------------------------------------
    def _overwrite(self, job: Job, node_id: str, stream: SpoolReader) -> tuple[dict, str | None]:
        if not self._remote.conditional:
            # no If-Match on this server: look just before overwriting (the race left is documented above)
            current = self._metadata_or_none(node_id)
            if current is None or current.get("status") != "AVAILABLE":
                return self._gone(job, node_id, current, stream)
            if _content(current)[2] != job.base_version:
                return self._changed(job, node_id, current, stream)
        # the record's mtime is bound to the content version this overwrite makes: base + 1 (the
        # write side stores them again after the answer if it made another one)
        props = None if job.base_version is None else self._properties(job, job.base_version + 1, False)
        try:
            if props is None:
                return self._remote.overwrite(stream, node_id, job.base_version), None
            return self._remote.overwrite(stream, node_id, job.base_version, props), None
        except Exception as exc:
            # 412: changed since the base; 404: gone; 409: in the trash (acdfuse serve's NODE_IN_TRASH)
            if isinstance(exc, PreconditionFailed | NotFound | Conflict):
                current = self._metadata_or_none(node_id)
                if current is None or current.get("status") != "AVAILABLE":
                    return self._gone(job, node_id, current, stream)
                if isinstance(exc, PreconditionFailed) or _content(current)[2] != job.base_version:
                    return self._changed(job, node_id, current, stream)
            refused = refusal(exc, repr(job.name))
            if refused is not None:
                raise refused from exc
            raise

    def _metadata_or_none(self, node_id: str) -> dict | None:
        try:
            return self._remote.metadata(node_id)
        except NotFound:
            return None

    def _changed(self, job: Job, node_id: str, current: dict,
                 stream: SpoolReader) -> tuple[dict, str | None]:
        md5, size, version = _content(current)
        if size == job.size and md5 == spool_md5(job.spool, job.size):
            log.info("%s: the server already holds this content (node %s); taking it", job.name, node_id)
            return current, None
        if md5 is not None and md5 in job.ours:
            # the change on the server is an earlier attempt of ours whose answer was lost
            log.info("%s: the server holds an earlier upload of this file (node %s, version %s); "
                     "overwriting it", job.name, node_id, version)
            stream.seek(0)
            return self._overwrite(replace(job, base_version=version, ours=frozenset()), node_id, stream)
        parent = self._first_parent(job, current)
        return self._conflict_copy(job, stream, str(current.get("name") or job.name), parent, other=node_id,
                                   why="it was changed on the server since the local copy was based on it")

    def _gone(self, job: Job, node_id: str, current: dict | None,
              stream: SpoolReader) -> tuple[dict, str | None]:
        parent = self._first_parent(job, current)
        name = str((current or {}).get("name") or job.name)
        return self._conflict_copy(job, stream, name, parent, other=node_id,
                                   why="it was deleted or trashed on the server meanwhile")

    def _first_parent(self, job: Job, current: dict | None) -> str:
        for pid in (current or {}).get("parents") or []:
            if self._parent_ok(job, pid):
                return str(pid)
        if job.parent_id and self._parent_ok(job, job.parent_id):
            return job.parent_id
        raise UploadRefused(f"{job.name!r} changed on the server and no folder of it is left to put the "
                            f"local version next to it")

    # ---- conflict copies ---------------------------------------------------------------------
    def _conflict_copy(self, job: Job, stream: SpoolReader, name: str, parent_id: str, *,
                       other: str | None, why: str) -> tuple[dict, str | None]:
        if job.cancelled():
            raise UploadCancelled(f"{name!r} was deleted locally while its upload ran")
        when = self._clock()
        for n in range(1, MAX_CONFLICT_NAMES + 1):
            copy = conflict_name(name, when, n)
            stream.seek(0)
            try:
                answer = self._upload(job, stream, copy, parent_id)
            except Exception as exc:
                if isinstance(exc, Conflict):
                    existing = exc.node_id
                    node = self._same_content(job, existing) if existing else None
                    if node is not None:
                        answer = node       # our copy went up before (a repeat after a lost answer)
                    else:
                        continue
                else:
                    refused = refusal(exc, repr(copy))
                    if refused is not None:
                        raise refused from exc
                    if folder_refused(exc) and not self._parent_ok(job, parent_id):
                        raise UploadRefused(
                            f"the folder {parent_id} of {name!r} is gone from the drive") from exc
                    raise
            log.warning("conflict: %r (node %s): %s; the local version was uploaded next to it as %r "
                        "(node %s); both versions are kept", name, other or "-", why, copy, answer.get("id"))
            return answer, other or ""
        raise UploadRefused(f"no free conflict name for {name!r} after {MAX_CONFLICT_NAMES} tries")

    def _ours(self, job: Job, node_id: str) -> dict | None:
        """The node, when its content is one an earlier attempt of this file sent."""
        if not job.ours:
            return None
        node = self._metadata_or_none(node_id)
        if node is None or node.get("status") != "AVAILABLE" or _content(node)[0] not in job.ours:
            return None
        return node

    def _same_content(self, job: Job, node_id: str) -> dict | None:
        node = self._metadata_or_none(node_id)
        if node is None or node.get("status") != "AVAILABLE":
            return None
        md5, size, _ = _content(node)
        if size == job.size and md5 == spool_md5(job.spool, job.size):
            return node
        return None
