"""Changing the POSIX attributes and xattrs of nodes that are on the server (format: posixattrs.py).

Every change is a few property requests (a PUT or DELETE per key) under the app's owner id, and then
``NodeStore.set_properties``, so a stat right after shows the new value; other clients see it after
their next sync, because the server's node JSON carries the properties. Changes of one node run one
after the other (each reads what the one before wrote); different nodes change in parallel.

The owner id is learned once: from the mirror when it holds properties (the server shows an app only
its own, so a single owner found there is this app), else by the client's probe (``get_owner_id``
creates a small file and trashes it).

Any property request moves the node's modifiedDate on the server, which is what a node without a
stored mtime shows. So a change that leaves the record without a valid mtime also stores the mtime
shown until then: ``chmod`` or ``setxattr`` never move a file's mtime.

Lock order: ``NodeAttrs._lock`` is a leaf. It is never held across HTTP or a store write; a node
being changed is marked busy under it, and a second change of that node waits on the condition.
"""

from __future__ import annotations

import errno
import logging
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Protocol

from acdfuse.store import Node
from acdfuse.vfs import posixattrs as pa
from acdfuse.vfs.posixattrs import Change, PosixRecord

log = logging.getLogger(__name__)


class AttrStore(Protocol):
    def get(self, node_id: str) -> Node | None: ...
    def properties(self, node_id: str) -> dict[str, dict[str, str]]: ...
    def property_owners(self, limit: int = 2) -> list[str]: ...
    def set_properties(self, node_id: str, owner: str, put: Mapping[str, str],
                       delete: Any = (), *, requests: int = 1) -> Node | None: ...
    def apply_local(self, node_json: Mapping[str, Any]) -> Node: ...


PutProperty = Callable[[str, str, str, str], Any]          # (node id, owner, key, value)
DeleteProperty = Callable[[str, str, str], Any]            # (node id, owner, key)
# (content, name, parent id, properties {owner: {key: value}}) -> the new node's JSON
UploadSmall = Callable[[bytes, str, str, dict[str, dict[str, str]]], Mapping[str, Any]]

_KEEP: Any = object()   # "leave this field as it is" (None means "back to the mount's default")


def _mtime_holds(node: Node, record: PosixRecord) -> bool:
    return record.mtime_ns is not None and record.mtime_cv in (None, node.content_version)


def shown_mtime_ns(node: Node, record: PosixRecord) -> int:
    """The mtime a stat shows for ``node`` (the same rule as fs/attrs.py ``node_attrs``)."""
    if record.mtime_ns is not None and _mtime_holds(node, record):
        return record.mtime_ns
    return round(node.modified * 1000) * 1_000_000


def record_change(node: Node | None, props: Mapping[str, str], *, mode: Any = _KEEP, uid: Any = _KEEP,
                  gid: Any = _KEEP, mtime_ns: Any = _KEEP) -> Change:
    """The change of a node's properties that sets some record fields (``node`` None: a file that is
    not on the server yet, whose mtime binds to its upload, see posixattrs.properties_for_upload)."""
    record = pa.current_record(props)
    fields: dict[str, Any] = {}
    if mode is not _KEEP:
        fields["mode"] = mode
    if uid is not _KEEP:
        fields["uid"] = uid
    if gid is not _KEEP:
        fields["gid"] = gid
    if mtime_ns is not _KEEP:
        fields["mtime_ns"] = mtime_ns
        fields["mtime_cv"] = node.content_version if node is not None and node.is_file else None
    changed = replace(record, **fields)
    if changed == record:
        return pa.Change({})
    return pa.set_record(props, replace(changed, ctime_ns=time.time_ns()))


def app_props(every: Mapping[str, Mapping[str, str]], owner: str | None) -> dict[str, str]:
    """The app's own map among a node's properties (owner -> key -> value). With the owner not known
    yet, whatever there is: the server shows an app only its own properties anyway."""
    if owner is not None:
        return dict(every.get(owner, {}))
    merged: dict[str, str] = {}
    for kv in every.values():
        merged.update(kv)
    return merged


class NodeAttrs:
    """Attribute reads and changes of server nodes; see the module docstring."""

    def __init__(self, store: AttrStore, *, put_property: PutProperty, delete_property: DeleteProperty,
                 upload: UploadSmall, owner_probe: Callable[[], str]) -> None:
        self._store = store
        self._put = put_property
        self._delete = delete_property
        self._upload = upload
        self._probe = owner_probe
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy: set[str] = set()
        self._owner: str | None = None

    # ---- the owner id --------------------------------------------------------------------------
    def owner(self) -> str:
        """This app's owner id (asks the server once if the mirror cannot tell)."""
        if self._owner is not None:
            return self._owner
        owners = self._store.property_owners(2)
        if len(owners) == 1:
            owner = owners[0]
        else:
            owner = self._probe()
            log.info("attributes: the app's owner id is %r (asked the server)", owner)
        with self._lock:
            self._owner = owner
        return owner

    # ---- reads -------------------------------------------------------------------------------
    def props(self, node: Node) -> dict[str, str]:
        """This app's properties of a node as the mirror shows them (no request)."""
        return app_props(self._store.properties(node.id), self._owner)

    def xattrs(self, node: Node) -> dict[str, bytes]:
        return {name: value for name, (_key, value) in pa.xattr_slots(self.props(node)).items()}

    # ---- changes -----------------------------------------------------------------------------
    @contextmanager
    def _exclusive(self, node_id: str) -> Iterator[None]:
        with self._lock:
            while node_id in self._busy:
                self._idle.wait()
            self._busy.add(node_id)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(node_id)
                self._idle.notify_all()

    def change(self, node_id: str, plan: Callable[[Node, dict[str, str]], Change]) -> Node:
        """Apply ``plan(node, props)`` to a node on the server and in the store; returns the node as
        the store shows it afterwards. The plan sees the node's latest state and may raise OSError."""
        with self._exclusive(node_id):
            node = self._store.get(node_id)
            if node is None:
                raise OSError(errno.ENOENT, f"node {node_id} is gone")
            props = self.props(node)
            change = self._keep_mtime(node, props, plan(node, props))
            if change.is_empty:
                return node
            return self._send(node, change)

    @staticmethod
    def _keep_mtime(node: Node, props: Mapping[str, str], change: Change) -> Change:
        if change.is_empty:
            return change
        after = pa.apply_change(props, change)
        record = pa.current_record(after)
        if _mtime_holds(node, record):
            return change
        pinned = replace(record, mtime_ns=shown_mtime_ns(node, pa.current_record(props)),
                         mtime_cv=node.content_version if node.is_file else None)
        return Change({**change.put, pa.RECORD_KEY: pinned.encode()},
                      tuple(k for k in change.delete if k != pa.RECORD_KEY))

    def _send(self, node: Node, change: Change) -> Node:
        owner = self.owner()
        done_put: dict[str, str] = {}
        done_delete: list[str] = []
        shown = None
        try:
            # the record first: a failure after it leaves a pinned mtime, never a moved one
            for key in sorted(change.put, key=lambda k: k != pa.RECORD_KEY):
                self._put(node.id, owner, key, change.put[key])
                done_put[key] = change.put[key]
            for key in change.delete:
                self._delete(node.id, owner, key)
                done_delete.append(key)
        finally:
            requests = len(done_put) + len(done_delete)
            if requests:
                shown = self._store.set_properties(node.id, owner, done_put, done_delete, requests=requests)
        log.debug("attributes of %s (%s): put %s, deleted %s", node.name, node.id, sorted(done_put),
                  done_delete)
        return shown or node

    def set_fields(self, node_id: str, **fields: Any) -> Node:
        """Set record fields (mode, uid, gid, mtime_ns); see ``record_change``."""
        return self.change(node_id, lambda node, props: record_change(node, props, **fields))

    def set_xattr(self, node_id: str, name: str, value: bytes, flags: int = 0) -> Node:
        return self.change(node_id, lambda node, props: pa.set_xattr(props, name, value, flags))

    def remove_xattr(self, node_id: str, name: str) -> Node:
        return self.change(node_id, lambda node, props: pa.remove_xattr(props, name))

    @staticmethod
    def _wanted(props: Mapping[str, str], attrs_json: str | None, content_version: int,
                mtime_ns: int | None) -> dict[str, str]:
        """The properties a file has once its local content is uploaded: those kept for it while it
        was local (``attrs_json``), else the server's without their mtime (it described the old
        content); the record's mtime bound to the new content version, and without one set by a
        tool, ``mtime_ns``: the time of the last local write, which the file showed until now (and
        not the later time of the upload)."""
        text = attrs_json if attrs_json is not None else pa.pending_json(pa.without_mtime(props))
        return pa.properties_for_upload(text, content_version, mtime_ns)

    def upload_properties(self, node: Node | None, attrs_json: str | None, mtime_ns: int | None,
                          content_version: int, new_node: bool) -> dict[str, dict[str, str | None]]:
        """What to send with an upload (the write side's hook, for a server that stores properties
        with the content): ``node`` is the server file the local copy was based on (None for a new
        file), ``content_version`` the one the request makes. An overwrite also deletes this app's
        keys the file no longer has (None values); a new node has none to delete."""
        wanted: dict[str, str | None] = dict(
            self._wanted(self.props(node) if node is not None else {}, attrs_json, content_version, mtime_ns))
        if not new_node:
            for key in (pa.RECORD_KEY, *pa.XATTR_KEYS):
                wanted.setdefault(key, None)
        return {self.owner(): wanted}

    def after_upload(self, node: Node, attrs_json: str | None, mtime_ns: int | None = None) -> None:
        """Give a just uploaded file the attributes it had while its content was local (the write
        side's hook, see ``_wanted``). Sends nothing when the upload carried them already."""

        def plan(current: Node, props: dict[str, str]) -> Change:
            wanted = self._wanted(props, attrs_json, current.content_version, mtime_ns)
            ours = (pa.RECORD_KEY, *pa.XATTR_KEYS)
            put = {k: v for k, v in wanted.items() if props.get(k) != v}
            return Change(put, tuple(k for k in ours if k in props and k not in wanted))

        self.change(node.id, plan)

    # ---- symlinks ----------------------------------------------------------------------------
    def create_symlink(self, parent_id: str, name: str, target: str) -> Node:
        """A new symlink node: a file holding the target, created with its record in one request."""
        data = target.encode("utf-8")
        if len(data) > pa.LINK_MAX:
            raise OSError(errno.ENAMETOOLONG, f"symlink target of {len(data)} bytes")
        props = {pa.RECORD_KEY: PosixRecord(mode=stat.S_IFLNK | 0o777, link=target).encode()}
        owner = self.owner()
        answer = self._upload(data, name, parent_id, {owner: props})
        node = self._store.apply_local(answer)
        if node.posix is None:
            # a server that does not echo properties in the answer: show the record anyway
            node = self._store.set_properties(node.id, owner, props, requests=0) or node
        return node
