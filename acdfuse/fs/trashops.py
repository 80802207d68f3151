"""The operations on ``/.Trash`` (the view is fs/trashview.py): reading it, refusing changes in it, and
the two moves that cross its border.

- Every change inside ``/.Trash`` gets EROFS: the trash holds what the drive holds, and the drive's only
  ways out of its trash are restore and (for other apps) purge. mkdir of the view's own folders gets
  EEXIST, which GLib expects when it makes sure they are there.
- Moving an entry out restores it (``mv MNT/.Trash/x MNT/dir/y``). Back to where it was under its own
  name: one ``restore``. Anywhere else: the node is first moved and renamed while still in the trash
  (the drive checks no names there), then restored, so no in-between state can clash with a name at
  its old place. A file or folder at the destination is replaced as by any rename (it goes to the
  trash itself, so nothing is lost); a name there that differs only in case gets EEXIST, as everywhere.
  Moving something out of a trashed folder moves just that node, which is AVAILABLE on the drive.
- Renaming a file or folder into ``/.Trash/UID/files`` trashes it: the desktop trash (``gio trash``)
  lands in the drive's trash. As with unlink, a node that has other folders (a hard link) only leaves
  this one. A file with writes not uploaded yet is uploaded first (as by fsync), then trashed.
- The info files GLib writes into ``/.Trash/UID/info`` live in memory (fs/trashview.py).

Lock order: none of its own (the view's lock is a leaf).
"""

from __future__ import annotations

import errno
import logging
import os
from typing import TYPE_CHECKING, Any

from acdfuse.fs.attrs import Ownership, entry_mode, node_attrs
from acdfuse.fs.binding import FuseOSError
from acdfuse.fs.names import check_name, split
from acdfuse.fs.trashview import FILES, INFO, ROOT, UID_DIR, Found, TrashView, trash_path

if TYPE_CHECKING:
    from acdfuse.fs.handles import HandleTable
    from acdfuse.fs.writeops import DriveApi, NameIndex
    from acdfuse.store import Node
    from acdfuse.vfs.writes import WriteSide

log = logging.getLogger("acdfuse.fs.operations")

_VIEW_FOLDERS = (ROOT, UID_DIR, FILES, INFO)


class TrashOperations:
    """Mixin of DriveOperations: ``/.Trash`` (see the module docstring)."""

    _trash: TrashView | None
    _store: Any
    _owner: Ownership
    _writes: WriteSide | None
    _api: DriveApi | None
    _handles: HandleTable
    _names: NameIndex

    if TYPE_CHECKING:   # provided by DriveOperations and WriteOperations
        def _lookup(self, path: str) -> Node | None: ...
        def _nlink(self, node: Node) -> int: ...
        def _writer(self) -> tuple[WriteSide, DriveApi]: ...
        def _forget_subfolders(self, *folder_ids: str) -> None: ...
        def _remove_entry(self, api: DriveApi, parent: Node, node: Node, *,
                          forget_now: bool = True) -> None: ...
        def _check_free(self, parent: Node, name: str, moving: Node | None = None) -> None: ...
        def _entries(self, folder_id: str) -> list[str]: ...
        def _children(self, folder_id: str, overlay: bool = True) -> list[Node]: ...
        def _rename_node(self, api: DriveApi, src: Node, src_parent: Node, *, dst_parent: Node,
                         dst_name: str, dst: Node | None) -> None: ...

    # ---- where ----------------------------------------------------------------------------------
    def _in_trash(self, path: str) -> bool:
        """``path`` is ``/.Trash`` or below, and the view is there (no real ``.Trash`` at the root)."""
        return self._trash is not None and trash_path(path) and self._trash.active()

    def _trash_find(self, path: str) -> Found | None:
        assert self._trash is not None
        return self._trash.resolve(path)

    def _trash_added(self, node: Node) -> None:
        """After unlink, rmdir or a rename over a file outside the view sent ``node`` to the trash (the
        kernel holds no folder of the view locked for these)."""
        if self._trash is not None:
            self._trash.added(node, now=True)

    def _trash_refuse(self, what: str, path: str) -> None:
        log.debug("refused %s of %s: the trash is read-only; move an entry out to restore it", what, path)
        raise FuseOSError(errno.EROFS)

    # ---- reading --------------------------------------------------------------------------------
    def _trash_getattr(self, path: str) -> dict[str, int]:
        found = self._trash_find(path)
        if found is None:
            raise FuseOSError(errno.ENOENT)
        assert self._trash is not None
        return self._trash.attrs(found, node_attrs(found.node, self._owner, self._nlink(found.node)))

    def _trash_listing(self, path: str, folder_id: str, plus: bool) -> list[Any]:
        """The entries of a folder in the view (its own folders, or a trashed folder's content)."""
        assert self._trash is not None
        view = self._trash
        if folder_id in _VIEW_FOLDERS:
            children = view.listing(folder_id)
        else:
            # a trashed folder's content, with new files not uploaded yet (they land in it)
            children = [(c.name, c) for c in self._children(folder_id)]
        dot: list[Any] = [(".", None), ("..", None)] if plus else [".", ".."]
        if plus:
            top = folder_id in (ROOT, FILES)
            out = list(dot)
            for name, c in children:
                # an info file's mode depends on who wrote it: ask the view as a lookup would
                found = view.resolve(f"{path}/{name}") if folder_id == INFO else Found(c, top=top)
                if found is not None:
                    out.append((name, view.attrs(found, node_attrs(c, self._owner, self._nlink(c)))))
            return out
        dir_mode, file_mode = self._owner.dir_mode(), self._owner.file_mode()
        return dot + [(name, {"st_ino": c.ino, "st_mode": entry_mode(c, dir_mode, file_mode)}, 0)
                      for name, c in children]

    def _trash_open(self, path: str, fi: Any) -> int:
        """Open in the view: the drive's trashed files are read as any file (the caller does that when
        this answers -1); an info file is served from memory, by path (handle 0)."""
        assert self._trash is not None
        writing = fi.flags & os.O_ACCMODE != os.O_RDONLY or fi.flags & os.O_TRUNC
        name = self._trash.info_name(path)
        if name is None:
            if writing:
                self._trash_refuse("open for writing", path)
            return -1
        found = self._trash_find(path)
        if found is None:
            raise FuseOSError(errno.ENOENT)
        if writing:
            if not found.scratch:
                self._trash_refuse("open for writing", path)
            self._writer()      # EROFS on a read-only mount
            if fi.flags & os.O_TRUNC:
                self._trash.put_scratch(name, b"")
        fi.fh = 0
        fi.direct_io = 1        # its bytes change under the path; never from the page cache
        return 0

    def _trash_read(self, path: str, size: int, offset: int) -> bytes:
        found = self._trash_find(path)
        if found is None or found.info is None:
            raise FuseOSError(errno.ENOENT)
        return found.info[offset:offset + size]

    # ---- changes --------------------------------------------------------------------------------
    def _trash_create(self, path: str, fi: Any) -> int:
        """A tool's info file (GLib creates ``NAME.trashinfo`` with O_EXCL to pick a free name)."""
        assert self._trash is not None
        self._writer()
        name = self._trash.info_name(path)
        if name is None:
            self._trash_refuse("create", path)
        assert name is not None
        check_name(name)
        if self._trash_find(path) is not None:
            raise FuseOSError(errno.EEXIST)
        self._trash.put_scratch(name, b"")
        if fi is not None:
            fi.fh = 0
            fi.direct_io = 1
        return 0

    def _trash_write(self, path: str, data: bytes, offset: int) -> int:
        assert self._trash is not None
        name = self._trash.info_name(path)
        old = self._trash.scratch(name) if name is not None else None
        if name is None or old is None:
            raise FuseOSError(errno.EBADF)
        if len(old) < offset:
            old += bytes(offset - len(old))
        self._trash.put_scratch(name, old[:offset] + bytes(data) + old[offset + len(data):])
        return len(data)

    def _trash_truncate(self, path: str, length: int) -> int:
        assert self._trash is not None
        name = self._trash.info_name(path)
        old = self._trash.scratch(name) if name is not None else None
        if name is None or old is None:
            self._trash_refuse("truncate", path)
        assert name is not None and old is not None
        self._trash.put_scratch(name, old[:length] + bytes(max(0, length - len(old))))
        return 0

    def _trash_unlink(self, path: str) -> int:
        assert self._trash is not None
        self._writer()
        name = self._trash.info_name(path)
        if name is not None and self._trash.drop_scratch(name):
            return 0
        if self._trash_find(path) is None:
            raise FuseOSError(errno.ENOENT)
        self._trash_refuse("unlink", path)
        return 0

    def _trash_mkdir(self, path: str) -> int:
        found = self._trash_find(path)
        if found is not None and found.virtual:
            raise FuseOSError(errno.EEXIST)
        self._writer()
        self._trash_refuse("mkdir", path)
        return 0

    def _trash_rename(self, old: str, new: str) -> int:
        """A rename with ``old`` or ``new`` in the view (see the module docstring)."""
        assert self._trash is not None
        view = self._trash
        _, api = self._writer()
        old_in, new_in = self._in_trash(old), self._in_trash(new)
        if old_in and new_in:
            old_info, new_info = view.info_name(old), view.info_name(new)
            if old_info is not None and new_info is not None:
                if not view.rename_scratch(old_info, new_info):     # GLib writes a temp file, renames it
                    self._trash_refuse("rename", old)
                return 0
            self._trash_refuse("rename", old)
        if new_in:
            return self._trash_by_rename(api, old, new)
        return self._restore(api, old, new)

    def _trash_by_rename(self, api: DriveApi, old: str, new: str) -> int:
        assert self._trash is not None and self._writes is not None
        chosen = self._trash.files_name(new)
        if chosen is None:
            self._trash_refuse("rename into", new)
        parent_path, name = split(old)
        check_name(name)
        parent = self._lookup(parent_path)
        node = self._lookup(old)
        if parent is None or node is None:
            raise FuseOSError(errno.ENOENT)
        if node.is_file and self._writes.has_local(node.id):
            # written here and not uploaded yet: upload it first (as fsync does), so what the desktop
            # trashed is in the drive's trash and can be restored, rather than dropped as unlink drops it
            handle = self._writes.open(node, write=False)
            if handle is not None:
                try:
                    self._writes.fsync(handle)
                finally:
                    self._writes.release(handle)
                node = self._lookup(old) or node
        if node.id.startswith("local:"):
            self._writes.unlink_pending(parent.id, name)    # as unlink: a file never uploaded has no trash
            self._names.remove(parent.id, name)
        else:
            self._remove_entry(api, parent, node, forget_now=False)
            if node.is_folder:
                self._forget_subfolders(parent.id, node.id)
        self._handles.rename_paths(old, new)
        self._trash.changed(trashed_as=chosen)
        return 0

    def _restore(self, api: DriveApi, old: str, new: str) -> int:
        assert self._trash is not None
        found = self._trash_find(old)
        if found is None:
            raise FuseOSError(errno.ENOENT)
        if found.virtual or found.info is not None:
            self._trash_refuse("rename", old)
        dst_parent_path, dst_name = split(new)
        check_name(dst_name)
        dst_parent = self._lookup(dst_parent_path)
        if dst_parent is None:
            raise FuseOSError(errno.ENOENT)
        if not dst_parent.is_folder:
            raise FuseOSError(errno.ENOTDIR)
        src = found.node
        if not found.top:
            # a node inside a trashed folder is AVAILABLE: moving it out is a plain move
            src_parent = self._trash_find(split(old)[0])
            assert src_parent is not None
            self._rename_node(api, src, src_parent.node, dst_parent=dst_parent, dst_name=dst_name,
                              dst=self._replaceable(src, new))
        else:
            self._restore_entry(api, src, dst_parent, dst_name, self._replaceable(src, new))
        self._names.add(dst_parent.id, dst_name)
        self._handles.rename_paths(old, new)
        if src.is_folder:
            self._forget_subfolders(dst_parent.id)
        self._trash.changed()
        return 0

    def _replaceable(self, src: Node, new: str) -> Node | None:
        """What a move of ``src`` to ``new`` replaces, after the checks any rename makes there."""
        dst = self._lookup(new)
        parent_path, name = split(new)
        if dst is None:
            parent = self._lookup(parent_path)
            assert parent is not None
            self._check_free(parent, name)
            return None
        if dst.is_folder and not src.is_folder:
            raise FuseOSError(errno.EISDIR)
        if src.is_folder and not dst.is_folder:
            raise FuseOSError(errno.ENOTDIR)
        if dst.is_folder and self._entries(dst.id):
            raise FuseOSError(errno.ENOTEMPTY)
        return dst

    def _restore_entry(self, api: DriveApi, src: Node, dst_parent: Node, dst_name: str,
                       dst: Node | None) -> None:
        assert self._writes is not None
        if dst is not None:
            if dst.id.startswith("local:"):
                self._writes.unlink_pending(dst_parent.id, dst_name)
            else:
                self._remove_entry(api, dst_parent, dst, forget_now=False)
        if dst_parent.id not in src.parents or dst_name != src.name:
            body: dict[str, Any] = {"parents": [dst_parent.id]}
            if dst_name != src.name:
                body["name"] = dst_name
            # still in the trash, where the drive checks no names: nothing can clash on the way
            self._store.apply_local(api.update_metadata(src.id, body))
        self._store.apply_local(api.restore(src.id))
