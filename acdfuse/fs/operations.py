"""The FUSE operations: path -> node through the store, bytes through the content reader.

Thin by design: no caching policy here. Every method runs under ``_guard``, which turns any exception
into a FuseOSError with a meaningful errno (see errors.py), so nothing escapes to the binding.

The write operations live in writeops.py (a mixin). The read side here consults the write side for
files with a local copy: pending new files (``local:<n>`` ids, not on the server yet) show in lookups
and listings, and a file with unsaved writes shows its local size, mtime and bytes. Without a write side
(a ``--read-only`` mount) every change is refused with EROFS.

Lock order: DriveOperations._lock (nlink cache) -> HandleTable._lock. Neither is held across I/O.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from acdfuse.fs.attrops import AttrOperations
from acdfuse.fs.attrs import Ownership, entry_mode, node_attrs, statfs_attrs
from acdfuse.fs.binding import FuseOSError
from acdfuse.fs.handles import HandleTable, OpenDir, OpenFile
from acdfuse.fs.names import split
from acdfuse.fs.opbase import content_key
from acdfuse.fs.opbase import guard as _guard
from acdfuse.fs.trashops import TrashOperations
from acdfuse.fs.trashview import TrashView
from acdfuse.fs.writeops import DriveApi, NameIndex, WriteOperations

if TYPE_CHECKING:
    from acdfuse.fs.kernelcache import KernelSizes
    from acdfuse.store import Node
    from acdfuse.vfs.nodeattrs import NodeAttrs
    from acdfuse.vfs.writes import WriteSide

log = logging.getLogger(__name__)

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT


class Store(Protocol):
    def resolve(self, path: str) -> Node | None: ...
    def children(self, folder_id: str) -> list[Node]: ...
    def get(self, node_id: str) -> Node | None: ...
    def subfolder_count(self, folder_id: str) -> int: ...
    def trashed(self) -> list[Node]: ...
    def child(self, folder_id: str, name: str) -> Node | None: ...
    def path_of(self, node_id: str) -> str | None: ...


class Reader(Protocol):
    def open(self, node_id: str, content_key: str, size: int) -> Any: ...
    def read(self, handle: Any, offset: int, length: int) -> bytes: ...
    def release(self, handle: Any) -> None: ...
    def invalidate(self, node_id: str, keep_content: str | None = None) -> None: ...


class QuotaSource(Protocol):
    def sizes(self) -> tuple[int, int]: ...


class DriveOperations(TrashOperations, WriteOperations, AttrOperations):
    """FUSE operations over a node store and a content reader; served by ``binding.serve`` (raw_fi).

    Built by the composition root (``acdfuse.mount.build``), which is the place to add collaborators:
    each is one keyword of the constructor, stored as it is. ``writes`` and ``api`` (the write side and
    the client's namespace calls, writeops.py) make the mount writable; without them it is read-only.
    The attribute operations (chmod, chown, utimens, symlink, readlink, xattrs) are in attrops.py;
    without ``attrs`` (the NodeAttrs that sends changes) they answer EROFS, as on a read-only mount.
    ``/.Trash`` (the drive's trash, and the desktop's trash folder in it) is in trashops.py.
    """

    # the binding registers only the operations an object has; leaving one out makes libfuse answer
    # ENOSYS once, after which the kernel stops asking (flush on every close). xattrs are served
    # (attrops.py), so the kernel's questions for security.* and system.* names (ls -l, every write)
    # are answered there at once, without a lookup.
    # times in integer nanoseconds both ways (getattr, utimens): an mtime set with nanoseconds must
    # come back exactly, and a float of seconds since 1970 only holds about a quarter microsecond
    use_ns = True

    def __init__(self, store: Store, reader: Reader, quota: QuotaSource, owner: Ownership, *,
                 writes: WriteSide | None = None, api: DriveApi | None = None,
                 attrs: NodeAttrs | None = None, kernel_keeps: float = 0.0,
                 forget_entry: Callable[..., None] | None = None,
                 kernel_sizes: KernelSizes | None = None) -> None:
        """``store`` resolves paths to nodes, ``reader`` serves their bytes, ``quota`` answers statfs
        without I/O, ``owner`` says who owns every entry and whether it is writable, ``writes`` and
        ``api`` make changes, ``attrs`` stores POSIX attributes in node properties. ``kernel_keeps``:
        seconds the kernel keeps the attributes it is given (the mount's attribute and entry
        timeouts); 0 sends them with every READDIRPLUS listing. ``forget_entry(*paths)`` makes the kernel
        forget its entries at those paths (kernelcache.py); ``kernel_sizes`` keeps the sizes the kernel
        was given for files a sync changed (kernelcache.py), and an open of another size gets direct_io.
        No I/O here."""
        self._attrs = attrs
        self._store = store
        self._reader = reader
        self._quota = quota
        self._owner = owner
        self._writes = writes if api is not None else None
        self._pending = self._writes      # attrops: attributes of files whose content is local
        self._api = api
        self._handles = HandleTable()
        self._lock = threading.Lock()
        self._subfolders: dict[str, int] = {}   # folder id -> number of child folders (link count)
        self._names = NameIndex()
        self._kernel_keeps = kernel_keeps
        self._forget_entry = forget_entry
        self._kernel_sizes = kernel_sizes
        # folder id -> when its entries last went to the kernel with their attributes (monotonic);
        # emptied whenever a sync changes the tree
        self._listed_plus: dict[str, float] = {}
        self._trash: TrashView | None = TrashView(
            store, owner, forget=forget_entry,
            pending=self._writes.lookup_pending if self._writes is not None else None)

    def __call__(self, op: str, *args: Any) -> Any:
        method = getattr(self, op, None)
        if method is None:
            raise FuseOSError(errno.ENOSYS)
        return method(*args)

    # ----- called by the sync loop -----

    def invalidate(self, changed_ids: Iterable[str] | None = None) -> None:
        """Forget derived state after a sync applied changes.

        Link counts are all dropped (a new subfolder changes its parent's count, and the parent is
        not among the changed ids). Cached chunks of changed files are dropped at once, keeping only
        the new content's; None means "unknown, possibly everything", and then the reader's own
        check at the next open (a new content key purges the old one) does that work lazily.
        """
        with self._lock:
            self._subfolders.clear()
            self._listed_plus.clear()
        self._names.clear()
        ids = None if changed_ids is None else set(changed_ids)
        if self._trash is not None:
            self._trash.sync_changed(ids)
        for node_id in ids or ():
            node = self._store.get(node_id)
            if node is None:
                self._reader.invalidate(node_id)
            elif node.is_file:
                self._reader.invalidate(node_id, keep_content=content_key(node))

    @property
    def handles(self) -> HandleTable:
        return self._handles

    # ----- lookups -----

    def _lookup(self, path: str) -> Node | None:
        """The node at ``path`` as this mount shows it: a pending new file there first (it shadows a
        server file of the same name until its upload makes a conflict copy), else the store's node
        with the size and mtime of its local copy, if it has one."""
        if not path.isascii():
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                return None     # not UTF-8 (see fs/names.py): the drive holds no such name
        w = self._writes
        if self._in_trash(path):
            found = self._trash_find(path)
            if found is None:
                return None
            return w.overlay(found.node) if w is not None and found.node.is_file else found.node
        if w is not None and path != "/":
            parent_path, name = split(path)
            if w.has_pending(name):
                parent = self._store.resolve(parent_path)
                if parent is not None and parent.is_folder:
                    pending = w.lookup_pending(parent.id, name)
                    if pending is not None:
                        return pending
        node = self._store.resolve(path)
        if node is not None and w is not None and node.is_file:
            return w.overlay(node)
        return node

    def _node(self, path: str) -> Node:
        node = self._lookup(path)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        return node

    def _forget_subfolders(self, *folder_ids: str) -> None:
        with self._lock:
            for folder_id in folder_ids:
                self._subfolders.pop(folder_id, None)

    def _nlink(self, node: Node) -> int:
        if not node.is_folder:
            return max(len(node.parents), 1)
        count = self._subfolders.get(node.id)
        if count is None:
            count = self._store.subfolder_count(node.id)
            with self._lock:
                self._subfolders[node.id] = count
        return 2 + count

    @_guard
    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        # With an open file's handle (fstat, or the kernel checking the size on a read past EOF) the
        # answer comes from that file's node, not the path: a file renamed, moved or trashed on the
        # server keeps working through fds opened before, as after unlink on a local fs.
        entry = self._handles.file(fh.fh) if fh is not None else None
        if entry is None and self._in_trash(path):
            return self._trash_getattr(path)
        node = self._entry_node(entry) if entry is not None else None
        if node is not None and entry is not None and self._resized_under(entry, node):
            # the kernel asks with a handle when a read goes past the size it knows: the new size would
            # end (or stretch) this handle's version there, which is no version at all
            raise FuseOSError(errno.ESTALE)
        if node is None:
            node = self._lookup(path) or self._opened_at(path)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        if self._kernel_sizes is not None:
            self._kernel_sizes.told(node.id, node.size)
        return node_attrs(node, self._owner, self._nlink(node))

    def _kernel_size_differs(self, node: Node) -> bool:
        """A sync changed the file's size and the kernel may still end reads at the old one: this open
        reads past its page cache and size (direct_io), so it gets its content whole (kernelcache.py)."""
        sizes = self._kernel_sizes
        if sizes is None or not sizes.differs(node.id, node.size):
            return False
        log.debug("%s: the kernel may still hold an older size than %d; reading it with direct_io", node.id,
                  node.size)
        return True

    def _resized_under(self, entry: OpenFile, node: Node | None) -> bool:
        """A read handle pinned to content the node no longer has, of another size (its pinning: see
        vfs/fetch.py). Such a handle reads its own version's bytes or gets ESTALE; the kernel, though, keeps
        one size per inode and ends every read there. Told the new size, it would end the old version
        early (a shrink: the old bytes so far, then EOF) or let the old handle's short read at its own
        end cut the inode's size for every later open (a growth). The handle's reads and the kernel's
        size checks for it get ESTALE instead."""
        if entry.write is not None or entry.node is None or node is None or node.size == entry.node.size:
            return False
        if content_key(node) == entry.content_key:
            return False
        w = self._writes
        return not (w is not None and w.has_local(entry.node_id))

    def _entry_node(self, entry: OpenFile) -> Node | None:
        if entry.write is not None and self._writes is not None:
            return self._writes.node_of(entry.write)
        node: Node | None = self._store.get(entry.node_id) or entry.node
        return node

    def _opened_at(self, path: str) -> Node | None:
        """The node of a file still open at ``path`` although ``path`` leads nowhere now (renamed,
        moved or trashed on the server).

        On a writable mount the kernel asks for an open file's attributes by path, without its handle:
        every read marks its atime stale (FUSE does that unless the whole mount is read-only), and fstat
        then asks libfuse, whose path-based API names the file by the path it was opened at. Answering
        from the open handle keeps fstat working, as after an unlink on a local disk; the price is that a
        stat of that old path succeeds too until the file is closed (it is gone from listings, and opening
        it fails with ENOENT).
        """
        if self._writes is None:
            return None     # read-only: the kernel keeps the atime valid and asks with the handle
        for entry in self._handles.open_files():
            if entry.path == path:
                return self._entry_node(entry)
        return None

    @_guard
    def access(self, path: str, amode: int) -> int:
        node = self._node(path)
        if amode & os.W_OK and not self._owner.writable:
            raise FuseOSError(errno.EROFS)
        if amode & os.X_OK and not node.is_folder and not node_attrs(node, self._owner)["st_mode"] & 0o111:
            raise FuseOSError(errno.EACCES)   # executable only when a stored mode says so
        return 0

    @_guard
    def opendir(self, path: str) -> int:
        node = self._node(path)
        if not node.is_folder:
            raise FuseOSError(errno.ENOTDIR)
        return self._handles.add_dir(OpenDir(node.id))

    @_guard
    def readdir(self, path: str, fh: int) -> list[str | tuple[str, dict[str, int], int]]:
        entry = self._handles.dir(fh)
        folder_id = entry.node_id if entry is not None else self._node(path).id
        if self._in_trash(path):
            return self._trash_listing(path, folder_id, plus=False)
        # type and inode with each name: libfuse turns them into d_type/d_ino, so `find`, `ls` and
        # rsync learn which entries are folders without a lookup per entry
        dir_mode, file_mode = self._owner.dir_mode(), self._owner.file_mode()
        entries: list[str | tuple[str, dict[str, int], int]] = [".", ".."]
        # inode and type only: a local copy's size and times do not matter here
        entries.extend(
            (child.name, {"st_ino": child.ino, "st_mode": entry_mode(child, dir_mode, file_mode)}, 0)
            for child in self._children(folder_id, overlay=False))
        return entries

    @_guard
    def readdir_plus(self, path: str, fh: int) -> list[tuple[str, dict[str, int] | None]] | None:
        """The folder's entries with their full attributes, for the kernel's READDIRPLUS: then it needs
        no lookup per entry (a first ``ls -l`` of 10,000 entries 3x faster). None, meaning "a plain
        listing", once the folder was listed so since the tree last changed: the kernel asks
        READDIRPLUS at the start of every listing, and keeps the attributes it got (for the long
        timeouts; a sync's changes are invalidated in the kernel), so sending them again would only
        cost; but only while the kernel keeps them (``kernel_keeps``). "." and ".." come without
        attributes."""
        entry = self._handles.dir(fh)
        folder_id = entry.node_id if entry is not None else self._node(path).id
        if self._in_trash(path):
            return self._trash_listing(path, folder_id, plus=True)
        now = time.monotonic()
        with self._lock:
            sent = self._listed_plus.get(folder_id)
            if sent is not None and now - sent < self._kernel_keeps:
                return None
            self._listed_plus[folder_id] = now
        children = self._children(folder_id)
        entries: list[tuple[str, dict[str, int] | None]] = [(".", None), ("..", None)]
        entries.extend((child.name, node_attrs(child, self._owner, self._nlink(child))) for child in children)
        sizes = self._kernel_sizes
        if sizes is not None and len(sizes):
            for child in children:
                sizes.told(child.id, child.size)
        return entries

    @_guard
    def releasedir(self, path: str, fh: int) -> int:
        self._handles.pop_dir(fh)
        return 0

    @_guard
    def statfs(self, path: str) -> dict[str, int]:
        total, available = self._quota.sizes()
        return statfs_attrs(total, available)

    # ----- reading -----

    @_guard
    def open(self, path: str, fi: Any) -> int:
        if self._in_trash(path) and self._trash_open(path, fi) == 0:
            return 0
        if fi.flags & os.O_ACCMODE != os.O_RDONLY or fi.flags & os.O_TRUNC:
            if self._writes is None:
                return self._mutation("open for writing", path)
            return self._open_write(path, fi)
        node = self._node(path)
        if node.is_folder:
            raise FuseOSError(errno.EISDIR)
        w = self._writes
        if w is not None and w.has_local(node.id):
            wh = w.open(node, write=False)      # a file with unsaved writes: read its local copy
            if wh is not None:
                return self._add_write_handle(wh, node, fi, path)
        key = content_key(node)
        handle = self._reader.open(node.id, key, node.size)
        fh, mode = self._handles.add_file(OpenFile(node.id, key, handle, node.ino, node=node, path=path),
                                          direct=self._kernel_size_differs(node))
        fi.fh = fh
        fi.keep_cache = 1 if mode.keep_cache else 0
        fi.direct_io = 1 if mode.direct_io else 0
        return 0

    @_guard
    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        if fi.fh == 0 and self._in_trash(path):
            return self._trash_read(path, size, offset)     # an info file (trashops.py)
        entry = self._handles.file(fi.fh)
        if entry is None:
            raise FuseOSError(errno.EBADF)
        w = self._writes
        if entry.write is not None and w is not None:
            return w.read(entry.write, offset, size)
        if w is not None and w.has_local(entry.node_id):
            # opened before another handle started writing to it: it sees those writes, as on a disk
            local = w.read_node(entry.node_id, offset, size)
            if local is not None:
                return local
        self._handles.note_read(entry)
        data = self._reader.read(entry.reader_handle, offset, size)
        if len(data) < size and self._resized_under(entry, self._store.get(entry.node_id)):
            raise FuseOSError(errno.ESTALE)     # a short read would set the inode's size to this end
        return data

    @_guard
    def release(self, path: str, fi: Any) -> int:
        entry = self._handles.pop_file(fi.fh)
        if entry is None:
            return 0
        if entry.write is not None:
            if self._writes is not None:
                self._writes.release(entry.write)
        else:
            self._reader.release(entry.reader_handle)
        if (self._forget_entry is not None and entry.path and self._writes is not None
                and self._lookup(entry.path) is None and self._opened_at(entry.path) is None):
            # the last handle at a path that leads nowhere now: lookups while it was open found the file
            # (_opened_at), and the kernel would keep that answer for the whole entry timeout
            self._forget_entry(entry.path)
        return 0

    # ----- refusals -----

    def _mutation(self, what: str, path: str) -> int:
        log.debug("refused %s of %s: the mount is read-only", what, path)
        raise FuseOSError(errno.EROFS)

