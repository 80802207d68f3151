"""The write half of the fusepy Operations: file content through the write side, namespace changes
straight to the server.

Content (create, open for writing, write, truncate, fsync) goes to ``WriteSide`` (vfs/writes.py), which
spools it locally and uploads it later. Namespace changes (mkdir, unlink, rmdir, rename, link) are made
on the server at once and its answer goes into the store (``apply_local``), so the change shows without
waiting for a sync. Pending new files (no node id yet) are renamed and deleted in the write side only.

Lock order: ``NameIndex._lock`` is a leaf; no I/O runs under it.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from acdfuse.fs.binding import FuseOSError
from acdfuse.fs.handles import OpenFile
from acdfuse.fs.names import check_name, split
from acdfuse.fs.opbase import guard

if TYPE_CHECKING:
    from collections.abc import Mapping

    from acdfuse.fs.handles import HandleTable
    from acdfuse.store import Node
    from acdfuse.vfs.writes import WriteHandle, WriteSide

log = logging.getLogger("acdfuse.fs.operations")


class DriveApi(Protocol):
    """The namespace calls of the client (ACDClient has them all)."""

    def create_folder(self, name: str, parent: str | None = None) -> dict: ...
    def move_to_trash(self, node_id: str) -> dict: ...
    def restore(self, node_id: str) -> dict: ...
    def rename_node(self, node_id: str, new_name: str) -> dict: ...
    def update_metadata(self, node_id: str, properties: dict) -> dict: ...
    def move_node_from(self, node_id: str, old_parent_id: str, new_parent_id: str) -> dict: ...
    def add_child(self, parent_id: str, child_id: str) -> dict: ...
    def remove_child(self, parent_id: str, child_id: str) -> dict: ...


class WriteStore(Protocol):
    def resolve(self, path: str) -> Node | None: ...
    def children(self, folder_id: str) -> list[Node]: ...
    def child(self, folder_id: str, name: str) -> Node | None: ...
    def get(self, node_id: str) -> Node | None: ...
    def apply_local(self, node_json: Mapping[str, Any], *, ino: int | None = None) -> Node: ...


class NameIndex:
    """Per folder, lower-cased name -> name, to find case-insensitive clashes without a scan per create.

    The drive's names are unique case-insensitively (acd-api.md section 5); the local side is
    case-sensitive, so creating ``A.txt`` next to ``a.txt`` must fail here, with a clear log line, rather
    than at upload time. Built from the store on first use per folder, kept current by this mount's own
    changes, dropped after every sync. A hit is checked against the store before it is believed.
    """

    MAX_FOLDERS = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: OrderedDict[str, dict[str, str]] = OrderedDict()

    def clear(self) -> None:
        with self._lock:
            self._folders.clear()

    def lookup(self, folder_id: str, name: str, build: Any) -> str | None:
        """The name in ``folder_id`` equal to ``name`` ignoring case, if any (``build()`` lists names)."""
        with self._lock:
            names = self._folders.get(folder_id)
            if names is not None:
                self._folders.move_to_end(folder_id)
        if names is None:
            names = {n.lower(): n for n in build()}
            with self._lock:
                self._folders[folder_id] = names
                while len(self._folders) > self.MAX_FOLDERS:
                    self._folders.popitem(last=False)
        return names.get(name.lower())

    def add(self, folder_id: str, name: str) -> None:
        with self._lock:
            names = self._folders.get(folder_id)
            if names is not None:
                names[name.lower()] = name

    def remove(self, folder_id: str, name: str) -> None:
        with self._lock:
            names = self._folders.get(folder_id)
            if names is not None and names.get(name.lower()) == name:
                del names[name.lower()]


class WriteOperations:
    """Mixin of DriveOperations: the write side of the filesystem (see the module docstring)."""

    _store: Any
    _writes: WriteSide | None
    _api: DriveApi | None
    _handles: HandleTable
    _names: NameIndex

    def _lookup(self, path: str) -> Node | None:  # provided by DriveOperations
        raise NotImplementedError

    if TYPE_CHECKING:   # TrashOperations (trashops.py): /.Trash has its own rules
        def _in_trash(self, path: str) -> bool: ...
        def _trash_refuse(self, what: str, path: str) -> None: ...
        def _trash_create(self, path: str, fi: Any) -> int: ...
        def _trash_write(self, path: str, data: bytes, offset: int) -> int: ...
        def _trash_truncate(self, path: str, length: int) -> int: ...
        def _trash_unlink(self, path: str) -> int: ...
        def _trash_mkdir(self, path: str) -> int: ...
        def _trash_rename(self, old: str, new: str) -> int: ...
        def _trash_added(self, node: Node) -> None: ...

    def _forget_subfolders(self, *folder_ids: str) -> None:  # provided by DriveOperations
        raise NotImplementedError

    def _kernel_size_differs(self, node: Node) -> bool:  # provided by DriveOperations
        raise NotImplementedError

    if TYPE_CHECKING:   # AttrOperations (attrops.py); a stub here would shadow it
        def _initial_mode(self, path: str, node: Node, mode: int) -> None: ...

    # ----- helpers ------------------------------------------------------------------------------
    def _writer(self) -> tuple[WriteSide, DriveApi]:
        if self._writes is None or self._api is None:
            raise FuseOSError(errno.EROFS)
        return self._writes, self._api

    def _folder(self, path: str) -> Node:
        node = self._lookup(path)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        if not node.is_folder:
            raise FuseOSError(errno.ENOTDIR)
        return node

    def _parent_and_name(self, path: str) -> tuple[Node, str]:
        parent_path, name = split(path)
        check_name(name)
        return self._folder(parent_path), name

    def _children(self, folder_id: str, overlay: bool = True) -> list[Node]:
        """A folder's entries as the mount shows them (listings, ``/.Trash``): the write side is asked
        before the mirror, so a new file whose upload is recorded in between is seen in both (and shown
        once), never in neither; a pending new file shadows a server entry of the same name (see
        _lookup); with ``overlay``, a file with a local copy has that copy's size and times."""
        w = self._writes
        pending = w.pending_children(folder_id) if w is not None else []
        children: list[Node] = self._store.children(folder_id)
        if w is None or not (pending or overlay):
            return children
        shadowed = {p.name for p in pending}
        kept = [c for c in children if c.name not in shadowed]
        if overlay:
            kept = [w.overlay(c) if c.is_file else c for c in kept]
        return kept + pending

    def _entries(self, folder_id: str) -> list[str]:
        # the write side before the mirror: a new file whose upload is recorded in between is seen in
        # one of them (an rmdir must not find the folder empty), never in neither
        names = [n.name for n in self._writes.pending_children(folder_id)] if self._writes is not None else []
        names.extend(n.name for n in self._store.children(folder_id))
        return names

    def _exists(self, folder_id: str, name: str) -> bool:
        w = self._writes       # (first, as in _entries)
        return ((w is not None and w.lookup_pending(folder_id, name) is not None)
                or self._store.child(folder_id, name) is not None)

    def _check_free(self, parent: Node, name: str, moving: Node | None = None) -> None:
        """EEXIST when ``name`` (or a name differing only in case) is taken in ``parent``; ``moving``
        is the entry being renamed there, which may keep its own name in another case."""
        other = self._names.lookup(parent.id, name, lambda: self._entries(parent.id))
        if other is None or other == name:
            return
        if not self._exists(parent.id, other):
            self._names.remove(parent.id, other)        # stale: gone since the index was built
            return
        if moving is not None and other == moving.name and moving.parents[:1] == (parent.id,):
            return                                      # a case-only rename of that very entry
        existing = self._store.child(parent.id, other)
        ident = existing.id if existing is not None else "a new file not uploaded yet"
        log.warning("cannot create %r in folder %s: the drive's names ignore case and %r (node %s) is "
                    "there", name, parent.id, other, ident)
        raise FuseOSError(errno.EEXIST)

    def _add_write_handle(self, wh: WriteHandle, node: Node, fi: Any, path: str, direct: bool = False) -> int:
        key = f"local:{wh.file.local_id}"
        fh, mode = self._handles.add_file(OpenFile(node.id, key, None, node.ino, node=node, write=wh,
                                                   path=path), direct=direct)
        fi.fh = fh
        fi.keep_cache = 1 if mode.keep_cache else 0
        fi.direct_io = 1 if mode.direct_io else 0
        return 0

    def _write_handle(self, fi: Any) -> WriteHandle:
        entry = self._handles.file(fi.fh)
        if entry is None:
            raise FuseOSError(errno.EBADF)
        if entry.write is None or not entry.write.writable:
            raise FuseOSError(errno.EBADF)
        wh: WriteHandle = entry.write
        return wh

    # ----- files --------------------------------------------------------------------------------
    @guard
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        writes, _ = self._writer()
        if self._in_trash(path):
            return self._trash_create(path, fi)
        parent, name = self._parent_and_name(path)
        if self._exists(parent.id, name):
            raise FuseOSError(errno.EEXIST)
        self._check_free(parent, name)
        wh = writes.create(parent.id, name)
        self._names.add(parent.id, name)
        node = writes.node_of(wh)
        self._initial_mode(path, node, mode)
        if fi is None:      # fusepy without raw_fi: the file handle is the return value
            fh, _ = self._handles.add_file(OpenFile(node.id, f"local:{wh.file.local_id}", None, node.ino,
                                                    node=node, write=wh, path=path))
            return fh
        return self._add_write_handle(wh, node, fi, path)

    @guard
    def mknod(self, path: str, mode: int, dev: int) -> int:
        writes, _ = self._writer()
        if self._in_trash(path):
            self._trash_refuse("mknod", path)
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):     # mknod(2): no type bits is a regular file
            # FIFOs, sockets and devices have no place on the drive
            raise FuseOSError(errno.EPERM)
        parent, name = self._parent_and_name(path)
        if self._exists(parent.id, name):
            raise FuseOSError(errno.EEXIST)
        self._check_free(parent, name)
        wh = writes.create(parent.id, name)
        self._initial_mode(path, writes.node_of(wh), mode)
        writes.release(wh)
        self._names.add(parent.id, name)
        return 0

    def _open_write(self, path: str, fi: Any) -> int:
        writes, _ = self._writer()
        node = self._lookup(path)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        if node.is_folder:
            raise FuseOSError(errno.EISDIR)
        flags = fi.flags
        writing = flags & os.O_ACCMODE != os.O_RDONLY
        if flags & os.O_TRUNC and not writing:
            writes.truncate_node(node, 0)       # O_RDONLY|O_TRUNC: Linux truncates, then reads
        wh = writes.open(node, write=writing, truncate=bool(flags & os.O_TRUNC) and writing,
                         append=bool(flags & os.O_APPEND))
        if wh is None:
            return -1           # read-only and clean after all: the read path takes it
        mine = writes.node_of(wh)
        return self._add_write_handle(wh, mine, fi, path, direct=self._kernel_size_differs(mine))

    @guard
    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        writes, _ = self._writer()
        if fi.fh == 0 and self._in_trash(path):
            return self._trash_write(path, data, offset)
        return writes.write(self._write_handle(fi), offset, data)

    @guard
    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        writes, _ = self._writer()
        entry = self._handles.file(fh.fh) if fh is not None else None
        if entry is None and self._in_trash(path):
            return self._trash_truncate(path, length)
        if entry is not None and entry.write is not None and entry.write.writable:
            writes.truncate(entry.write, length)
            return 0
        node = self._lookup(path)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        if node.is_folder:
            raise FuseOSError(errno.EISDIR)
        writes.truncate_node(node, length)
        return 0

    @guard
    def fsync(self, path: str, datasync: int, fi: Any) -> int:
        if fi.fh == 0 and self._in_trash(path):
            return 0        # an info file in memory (trashops.py): nothing to make durable
        entry = self._handles.file(fi.fh)
        if entry is None:
            raise FuseOSError(errno.EBADF)
        if entry.write is not None and self._writes is not None:
            self._writes.fsync(entry.write)
        return 0

    # ----- folders ------------------------------------------------------------------------------
    @guard
    def mkdir(self, path: str, mode: int) -> int:
        if self._in_trash(path):
            return self._trash_mkdir(path)
        _, api = self._writer()
        parent, name = self._parent_and_name(path)
        if self._exists(parent.id, name):
            raise FuseOSError(errno.EEXIST)
        self._check_free(parent, name)
        node = self._store.apply_local(api.create_folder(name, parent.id))
        self._names.add(parent.id, name)
        self._forget_subfolders(parent.id)
        self._initial_mode(path, node, mode)
        return 0

    @guard
    def rmdir(self, path: str) -> int:
        _, api = self._writer()
        if self._in_trash(path):
            self._trash_refuse("rmdir", path)
        parent, name = self._parent_and_name(path)
        node = self._store.child(parent.id, name)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        if not node.is_folder:
            raise FuseOSError(errno.ENOTDIR)
        if self._entries(node.id):
            raise FuseOSError(errno.ENOTEMPTY)
        self._remove_entry(api, parent, node)
        self._forget_subfolders(parent.id, node.id)
        return 0

    @guard
    def unlink(self, path: str) -> int:
        writes, api = self._writer()
        if self._in_trash(path):
            return self._trash_unlink(path)
        parent, name = self._parent_and_name(path)
        if writes.unlink_pending(parent.id, name):
            self._names.remove(parent.id, name)
            return 0
        node = self._store.child(parent.id, name)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        if node.is_folder:
            raise FuseOSError(errno.EISDIR)
        self._remove_entry(api, parent, node)
        return 0

    def _remove_entry(self, api: DriveApi, parent: Node, node: Node, *, forget_now: bool = True) -> None:
        """Take ``node`` out of ``parent``: its other folders keep it (a hard link); the last one
        sends it to the drive's trash. ``forget_now``: the kernel holds no folder of ``/.Trash``
        locked for this operation (false for moves into and out of it)."""
        if len(node.parents) > 1 and parent.id in node.parents:
            self._store.apply_local(api.remove_child(parent.id, node.id))
        else:
            if self._writes is not None:
                # an upload of its local copy that finds it trashed meanwhile must not bring it back as
                # a conflict copy: the delete is announced to the write side while it runs
                with self._writes.deleting(node.id):
                    gone = self._store.apply_local(api.move_to_trash(node.id))
                    self._writes.forget_node(node.id)
            else:
                gone = self._store.apply_local(api.move_to_trash(node.id))
            if forget_now:
                self._trash_added(gone)
        self._names.remove(parent.id, node.name)

    # ----- rename and link ----------------------------------------------------------------------
    @guard
    def rename(self, old: str, new: str) -> int:
        writes, api = self._writer()
        if self._in_trash(old) or self._in_trash(new):
            return self._trash_rename(old, new)
        src_parent, src_name = self._parent_and_name(old)
        dst_parent, dst_name = self._parent_and_name(new)
        if (src_parent.id, src_name) == (dst_parent.id, dst_name):
            return 0
        src = self._lookup(old)
        if src is None:
            raise FuseOSError(errno.ENOENT)
        dst = self._lookup(new)
        if dst is not None:
            if dst.id == src.id:
                return 0            # two names of one node (hard links): POSIX does nothing
            if dst.is_folder and not src.is_folder:
                raise FuseOSError(errno.EISDIR)
            if src.is_folder and not dst.is_folder:
                raise FuseOSError(errno.ENOTDIR)
            if dst.is_folder and self._entries(dst.id):
                raise FuseOSError(errno.ENOTEMPTY)
        else:
            self._check_free(dst_parent, dst_name, moving=src)
        dst_pending = dst is not None and dst.id.startswith("local:")
        if src.id.startswith("local:"):
            replaced = dst if dst is not None and not dst_pending else None
            if not writes.rename_pending(src_parent.id, src_name, dst_parent.id, dst_name, replaced=replaced):
                # its upload was recorded since the lookup: a node of the server now, renamed as such
                src = self._lookup(old)
                if src is None or src.id.startswith("local:"):
                    raise FuseOSError(errno.ENOENT)
                self._rename_node(api, src, src_parent, dst_parent=dst_parent, dst_name=dst_name, dst=dst)
        else:
            self._rename_node(api, src, src_parent, dst_parent=dst_parent, dst_name=dst_name, dst=dst)
        self._names.remove(src_parent.id, src_name)
        self._names.add(dst_parent.id, dst_name)
        self._handles.rename_paths(old, new)
        if src.is_folder:
            self._forget_subfolders(src_parent.id, dst_parent.id)
        return 0

    def _rename_node(self, api: DriveApi, src: Node, src_parent: Node, *, dst_parent: Node, dst_name: str,
                     dst: Node | None) -> None:
        """Rename/move a server node; a server node at the target goes to the trash first (and comes
        back if the rename then fails), a pending file there is discarded."""
        assert self._writes is not None
        trashed: dict | None = None
        if dst is not None and dst.id.startswith("local:"):
            if self._writes.unlink_pending(dst_parent.id, dst_name):
                dst = None          # discarded: nothing is left there
            else:
                dst = self._store.child(dst_parent.id, dst_name)    # uploaded since the lookup: the server's
        if dst is not None:
            if len(dst.parents) > 1:
                self._store.apply_local(api.remove_child(dst_parent.id, dst.id))
            else:
                with self._writes.deleting(dst.id):         # (as in _remove_entry)
                    trashed = api.move_to_trash(dst.id)
                    self._trash_added(self._store.apply_local(trashed))
                    self._writes.forget_node(dst.id)
        try:
            answer = self._move(api, src, src_parent, dst_parent, dst_name)
        except BaseException:
            if trashed is not None:
                try:
                    self._store.apply_local(api.restore(dst.id))      # type: ignore[union-attr]
                except Exception as exc:  # the rename's own error is the one to report
                    log.warning("rename onto %s failed and restoring it from the trash failed too: %s",
                                dst_name, exc)
            raise
        self._store.apply_local(answer)

    @staticmethod
    def _move(api: DriveApi, src: Node, src_parent: Node, dst_parent: Node, dst_name: str) -> dict:
        if src_parent.id == dst_parent.id:
            return api.rename_node(src.id, dst_name)
        if len(src.parents) <= 1:
            # one request does both, so no in-between state can clash with a name in either folder
            body: dict[str, Any] = {"parents": [dst_parent.id]}
            if dst_name != src.name:
                body["name"] = dst_name
            return api.update_metadata(src.id, body)
        # a node in several folders: move only this edge, then rename (the name is the node's own)
        answer = api.move_node_from(src.id, src_parent.id, dst_parent.id)
        if dst_name != src.name:
            answer = api.rename_node(src.id, dst_name)
        return answer

    @guard
    def link(self, target: str, source: str) -> int:
        """``ln source target``: the drive's hard link is one more folder for the same node, under
        the node's one name; what it cannot express gets EPERM (as filesystems without links do)."""
        _, api = self._writer()
        if self._in_trash(target) or self._in_trash(source):
            self._trash_refuse("link", target)
        node = self._lookup(source)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        parent, name = self._parent_and_name(target)
        if node.id.startswith("local:"):
            log.debug("link %s -> %s: a file not uploaded yet cannot be linked", target, source)
            raise FuseOSError(errno.EPERM)
        if name != node.name:
            log.debug("link %s -> %s: the drive keeps one name per node", target, source)
            raise FuseOSError(errno.EPERM)
        if self._exists(parent.id, name) or parent.id in node.parents:
            raise FuseOSError(errno.EEXIST)
        self._check_free(parent, name)
        self._store.apply_local(api.add_child(parent.id, node.id))
        self._names.add(parent.id, name)
        return 0
