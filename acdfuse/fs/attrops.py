"""The attribute operations of the FUSE binding: chmod, chown, utimens, symlink, readlink and xattrs.

A mixin that DriveOperations inherits. The attributes live in node properties (vfs/posixattrs.py has
the format, vfs/nodeattrs.py sends the changes). A file that is not on the server yet (the write
side's pending files) keeps the same property map with the write side, which sends it with the upload.

- ``utimens`` stores the mtime with its nanoseconds; the atime is not stored (the drive has no
  reads to date, and a stat shows the mtime as atime), so ``touch -a`` changes nothing.
- ``chown``/``chmod``/explicit times follow the POSIX rules for the calling process: only root
  gives a file away or changes another's file; an owner may change the group to one of its own.
  Setting what a stat already shows sends nothing (``cp -p`` of a tree mostly does that).
- ``user.*`` xattrs are stored, up to nine per node, each within one property value (ENOSPC beyond).
  Other namespaces are not stored (ENOTSUP); reading them answers ENODATA at once, without even a
  lookup, because the kernel asks for ``security.capability`` before every write.
- Read-only xattrs ``system.acdfuse.id``, ``.md5``, ``.version`` and ``.content_version`` name the node
  on the server. They are in ``system.*`` and not listed by listxattr, so no copying tool takes them
  along: ``rsync -X`` never copies ``system.*`` (as root it copies every other namespace, as a user
  ``user.*``), and ``cp -a``/``tar --xattrs`` only copy what listxattr lists. Ask for them by name:
  ``getfattr -n system.acdfuse.id FILE``.

Lock order: no lock of its own (NodeAttrs serialises the changes of one node).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from acdfuse.fs.attrs import Ownership, node_attrs
from acdfuse.fs.binding import FuseOSError, caller
from acdfuse.fs.names import check_name, check_text
from acdfuse.fs.opbase import content_key, guard
from acdfuse.vfs import posixattrs as pa
from acdfuse.vfs.nodeattrs import NodeAttrs, app_props, record_change

if TYPE_CHECKING:
    from acdfuse.store import Node

log = logging.getLogger("acdfuse.fs.operations")

VIRTUAL_PREFIX = "system.acdfuse."
# utimensat's special nanosecond values; libfuse passes them with tv_sec 0, so with use_ns they arrive
# as these plain numbers
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

Plan = Callable[["Node | None", dict[str, str]], pa.Change]


class PendingAttrs(Protocol):
    """The write side's keeping of attributes for files whose content is not on the server yet."""

    def has_local(self, node_id: str) -> bool: ...
    def get_attrs(self, key: str) -> str | None: ...
    def set_attrs(self, key: str, attrs_json: str | None) -> bool: ...


@contextmanager
def _expected_errors(what: str, path: str) -> Iterator[None]:
    """OSErrors of the attribute rules (ENODATA, EEXIST, ENOSPC, ...) are answers, not failures: they
    reach the caller as their errno without the guard's warning."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or exc.errno <= 0:
            raise
        level = logging.INFO if exc.errno == errno.ENOSPC else logging.DEBUG
        log.log(level, "%s %s: %s", what, path, exc.strerror or exc)
        raise FuseOSError(exc.errno) from None


class AttrOperations:
    """chmod, chown, utimens, symlink, readlink, getxattr, setxattr, listxattr, removexattr."""

    _owner: Ownership
    _store: Any
    _reader: Any
    _attrs: NodeAttrs | None = None
    # the write side, for files not on the server yet (see _pending_key)
    _pending: PendingAttrs | None = None
    # (uid, gid, pid) of the process making the call; replaced in tests that run without a kernel
    _caller: Callable[[], tuple[int, int, int]] = staticmethod(caller)

    def _node(self, path: str) -> Node:
        raise NotImplementedError   # DriveOperations._node

    def _in_trash(self, path: str) -> bool:
        return False                # TrashOperations._in_trash: the trash is read-only

    # ---- helpers -----------------------------------------------------------------------------
    def _pending_key(self, node: Node) -> str | None:
        """The write side's key of a file whose content is not on the server yet (a new file, or one
        written to and not uploaded since), None for a node whose content is the server's."""
        w = self._pending
        return node.id if w is not None and w.has_local(node.id) else None

    def _changer(self, what: str, path: str) -> NodeAttrs:
        if not self._owner.writable or self._attrs is None or self._in_trash(path):
            log.debug("refused %s of %s: the mount is read-only", what, path)
            raise FuseOSError(errno.EROFS)
        return self._attrs

    def _server_props(self, node: Node) -> dict[str, str]:
        if pa.is_local_id(node.id):
            return {}
        if self._attrs is None:   # a read-only mount still shows what other mounts stored
            return app_props(self._store.properties(node.id), None)
        return self._attrs.props(node)

    def _props(self, node: Node) -> dict[str, str]:
        key = self._pending_key(node)
        if key is not None and self._pending is not None:
            kept = self._pending.get_attrs(key)
            if kept is not None:
                return pa.pending_props(kept)
        return self._server_props(node)

    def _apply(self, what: str, path: str, node: Node, plan: Plan) -> None:
        attrs = self._changer(what, path)
        with _expected_errors(what, path):
            key = self._pending_key(node)
            if key is not None and self._pending is not None:
                kept = self._pending.get_attrs(key)
                # a file being rewritten starts from what the server holds, without the mtime: that
                # one described the old content (the upload binds a new one, see properties_for_upload)
                if kept is not None:
                    props = pa.pending_props(kept)
                else:
                    props = pa.without_mtime(self._server_props(node))
                change = plan(None, props)
                if change.is_empty:
                    return
                if self._pending.set_attrs(key, pa.pending_json(pa.apply_change(props, change))):
                    return
                # uploaded meanwhile: the file is the server's now (and a new one has its real id)
                node = self._node(path)
            attrs.change(node.id, plan)

    def _initial_mode(self, path: str, node: Node, mode: int) -> None:
        """A file or folder just created keeps the permissions it was created with (the kernel has
        applied the umask) when they are not what the mount shows by default: ``cp`` of a script,
        ``mkdir -m 700``, git's read-only objects. A new file keeps them with the write side until its
        upload; a new folder costs one more request."""
        if self._attrs is None:
            return
        default = self._owner.dir_mode() if node.is_folder else self._owner.file_mode()
        if stat.S_IMODE(mode) == stat.S_IMODE(default):
            return
        new_mode = stat.S_IFMT(default) | stat.S_IMODE(mode)
        self._apply("create", path, node, lambda n, props: record_change(n, props, mode=new_mode))

    def _owner_only(self, st: dict[str, int], what: str, path: str) -> int:
        """The caller's uid; EPERM unless it is root or the owner the stat shows."""
        uid = self._caller()[0]
        if uid != 0 and uid != st["st_uid"]:
            log.debug("refused %s of %s: uid %d does not own it", what, path, uid)
            raise FuseOSError(errno.EPERM)
        return uid

    # ---- modes, owners, times ----------------------------------------------------------------
    @guard
    def chmod(self, path: str, mode: int) -> int:
        node = self._node(path)
        self._changer("chmod", path)
        st = node_attrs(node, self._owner)
        self._owner_only(st, "chmod", path)
        new_mode = stat.S_IFMT(st["st_mode"]) | stat.S_IMODE(mode)
        if new_mode != st["st_mode"]:
            self._apply("chmod", path, node, lambda n, props: record_change(n, props, mode=new_mode))
        return 0

    @guard
    def chown(self, path: str, uid: int, gid: int) -> int:
        node = self._node(path)
        self._changer("chown", path)
        st = node_attrs(node, self._owner)
        new_uid = st["st_uid"] if uid == -1 else uid
        new_gid = st["st_gid"] if gid == -1 else gid
        if (new_uid, new_gid) == (st["st_uid"], st["st_gid"]):
            return 0
        caller_uid, caller_gid, _pid = self._caller()
        if caller_uid != 0:
            # POSIX: only root gives a file away; the owner may pick one of its own groups
            own_groups = {caller_gid, *(os.getgroups() if caller_uid == os.getuid() else ())}
            if new_uid != st["st_uid"] or caller_uid != st["st_uid"] or new_gid not in own_groups:
                log.debug("refused chown of %s to %d:%d by uid %d", path, new_uid, new_gid, caller_uid)
                raise FuseOSError(errno.EPERM)
        self._apply("chown", path, node, lambda n, props: record_change(n, props, uid=new_uid, gid=new_gid))
        return 0

    @guard
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        node = self._node(path)
        self._changer("utimens", path)
        mtime = UTIME_NOW if times is None else times[1]
        if mtime == UTIME_OMIT:
            return 0    # only the atime, which is not kept
        st = node_attrs(node, self._owner)
        if mtime == UTIME_NOW:
            mtime = time.time_ns()   # anyone who may write may do that; we do not check modes
        else:
            self._owner_only(st, "utimens", path)
        if mtime != st["st_mtime"]:
            self._apply("utimens", path, node, lambda n, props: record_change(n, props, mtime_ns=mtime))
        return 0

    # ---- symlinks ----------------------------------------------------------------------------
    @guard
    def symlink(self, target: str, source: str) -> int:
        """Create the symlink ``target`` pointing to ``source`` (fusepy's names: ``ln -s source target``)."""
        attrs = self._changer("symlink", target)
        parent_path, _, name = target.rpartition("/")
        check_name(name)     # the same ENAMETOOLONG / EINVAL as every other new name
        check_text(source, pa.LINK_MAX, "symlink target")
        parent = self._node(parent_path or "/")
        if not parent.is_folder:
            raise FuseOSError(errno.ENOTDIR)
        try:
            existing = self._node(target)
        except FuseOSError as exc:
            if exc.errno != errno.ENOENT:
                raise
        else:
            log.debug("symlink %s: %s exists (node %s)", target, existing.name, existing.id)
            raise FuseOSError(errno.EEXIST)
        node = attrs.create_symlink(parent.id, name, source)
        log.debug("symlink %s -> %s: node %s", target, source, node.id)
        return 0

    @guard
    def readlink(self, path: str) -> str:
        node = self._node(path)
        record = pa.PosixRecord.decode(node.posix)
        if record is None or not record.is_symlink or not node.is_file:
            raise FuseOSError(errno.EINVAL)
        if record.link is not None:
            return record.link
        # a target too long for the record: the file's content (at most 4095 bytes)
        handle = self._reader.open(node.id, content_key(node), node.size)
        try:
            data = self._reader.read(handle, 0, min(node.size, pa.LINK_MAX))
        finally:
            self._reader.release(handle)
        return bytes(data).decode("utf-8", "replace")

    # ---- xattrs ------------------------------------------------------------------------------
    @guard
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        if name.startswith(pa.USER_PREFIX):
            value = pa.xattr_slots(self._props(self._node(path))).get(name)
            if value is None:
                raise FuseOSError(errno.ENODATA)
            return value[1]
        if name.startswith(VIRTUAL_PREFIX):
            return self._virtual(self._node(path), name[len(VIRTUAL_PREFIX):])
        raise FuseOSError(errno.ENODATA)

    def _virtual(self, node: Node, what: str) -> bytes:
        pending = pa.is_local_id(node.id)
        value: str | None = None
        if what == "id" and not pending:
            value = node.id
        elif what == "version" and not pending:
            value = str(node.version)
        elif what == "md5" and node.is_file and not pending:
            value = node.md5
        elif what == "content_version" and node.is_file and not pending:
            value = str(node.content_version)
        if value is None:
            raise FuseOSError(errno.ENODATA)
        return value.encode("ascii")

    @guard
    def listxattr(self, path: str) -> list[str]:
        return sorted(pa.xattr_slots(self._props(self._node(path))))

    @guard
    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> int:
        if name.startswith(VIRTUAL_PREFIX):
            raise FuseOSError(errno.EPERM)    # read-only: they describe the node on the server
        if not name.startswith(pa.USER_PREFIX):
            raise FuseOSError(errno.ENOTSUP)
        node = self._node(path)
        self._apply("setxattr", path, node, lambda n, props: pa.set_xattr(props, name, bytes(value), options))
        return 0

    @guard
    def removexattr(self, path: str, name: str) -> int:
        if name.startswith(VIRTUAL_PREFIX):
            raise FuseOSError(errno.EPERM)
        if not name.startswith(pa.USER_PREFIX):
            raise FuseOSError(errno.ENODATA)
        node = self._node(path)
        self._apply("removexattr", path, node, lambda n, props: pa.remove_xattr(props, name))
        return 0
