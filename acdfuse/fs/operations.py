"""The fusepy Operations class: path -> node through the store, bytes through the content reader.

Thin by design: no caching policy and no HTTP here. Every method runs under ``_guard``, which turns any
exception into a FuseOSError with a meaningful errno (see errors.py), so nothing escapes to fusepy.
Mutating calls answer EROFS until the write side exists; they all pass through ``_mutation`` so the
write-back spool can take over in one place.

Lock order: DriveOperations._lock (nlink cache) -> HandleTable._lock. Neither is held across I/O.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from acdfuse.fs.attrs import Ownership, node_attrs, statfs_attrs
from acdfuse.fs.binding import FuseOSError
from acdfuse.fs.errors import known_errno, to_errno
from acdfuse.fs.handles import HandleTable, OpenDir, OpenFile

if TYPE_CHECKING:
    from acdfuse.store import Node

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT


class Store(Protocol):
    def resolve(self, path: str) -> Node | None: ...
    def children(self, folder_id: str) -> list[Node]: ...
    def get(self, node_id: str) -> Node | None: ...
    def subfolder_count(self, folder_id: str) -> int: ...


class Reader(Protocol):
    def open(self, node_id: str, content_key: str, size: int) -> Any: ...
    def read(self, handle: Any, offset: int, length: int) -> bytes: ...
    def release(self, handle: Any) -> None: ...
    def invalidate(self, node_id: str, keep_content: str | None = None) -> None: ...


class QuotaSource(Protocol):
    def sizes(self) -> tuple[int, int]: ...


def content_key(node: Node) -> str:
    """The identity of a file's bytes: md5 when the server gave one, else the content version."""
    return node.md5 if node.md5 else f"v{node.content_version}"


def _guard(method: F) -> F:
    """Run an operation; whatever goes wrong leaves as FuseOSError with an errno, and is logged."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: DriveOperations, *args: Any) -> Any:
        try:
            return method(self, *args)
        except FuseOSError:
            raise
        except Exception as exc:  # every failure must reach the kernel as an errno, never kill the mount
            code = known_errno(exc)
            path = args[0] if args else "?"
            if code is None:
                code = to_errno(exc)
                log.exception("%s %s failed unexpectedly; answering %s", name, path,
                              errno.errorcode.get(code, code))
            elif isinstance(exc, OSError):
                log.warning("%s %s: %s", name, path, exc)
            else:
                log.warning("%s %s: %s -> %s", name, path, exc, errno.errorcode.get(code, code))
            raise FuseOSError(code) from exc

    return wrapper  # type: ignore[return-value]


class DriveOperations:
    """FUSE operations over a node store and a content reader; served by ``binding.serve`` (raw_fi).

    Built by the composition root (``acdfuse.mount.build``), which is the place to add collaborators
    (the write side's, for one): each is one keyword of the constructor, stored as it is.
    """

    # fusepy registers only the operations an object has; leaving these out makes libfuse answer
    # ENOSYS once, after which the kernel stops asking (flush on every close, xattrs on every ls -l).
    use_ns = False

    def __init__(self, store: Store, reader: Reader, quota: QuotaSource, owner: Ownership) -> None:
        """``store`` resolves paths to nodes, ``reader`` serves their bytes, ``quota`` answers statfs
        without I/O, ``owner`` says who owns every entry and whether it is writable. No I/O here."""
        self._store = store
        self._reader = reader
        self._quota = quota
        self._owner = owner
        self._handles = HandleTable()
        self._lock = threading.Lock()
        self._subfolders: dict[str, int] = {}   # folder id -> number of child folders (link count)

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
        for node_id in changed_ids or ():
            node = self._store.get(node_id)
            if node is None:
                self._reader.invalidate(node_id)
            elif node.is_file:
                self._reader.invalidate(node_id, keep_content=content_key(node))

    @property
    def handles(self) -> HandleTable:
        return self._handles

    # ----- lookups -----

    def _node(self, path: str) -> Node:
        node = self._store.resolve(path)
        if node is None:
            raise FuseOSError(errno.ENOENT)
        return node

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
    def getattr(self, path: str, fh: Any = None) -> dict[str, int | float]:
        # With an open file's handle (fstat, or the kernel checking the size on a read past EOF) the
        # answer comes from that file's node, not the path: a file renamed, moved or trashed on the
        # server keeps working through fds opened before, as after unlink on a local fs.
        entry = self._handles.file(fh.fh) if fh is not None else None
        if entry is not None:
            node = self._store.get(entry.node_id) or entry.node
            if node is not None:
                return node_attrs(node, self._owner, self._nlink(node))
        node = self._node(path)
        return node_attrs(node, self._owner, self._nlink(node))

    @_guard
    def fgetattr(self, path: str, fh: Any = None) -> dict[str, int | float]:
        """Never called by name: its presence makes fusepy register fgetattr, so ``getattr`` gets
        the open file's handle when the kernel has one."""
        return self.getattr(path, fh)

    @_guard
    def access(self, path: str, amode: int) -> int:
        node = self._node(path)
        if amode & os.W_OK and not self._owner.writable:
            raise FuseOSError(errno.EROFS)
        if amode & os.X_OK and not node.is_folder:
            raise FuseOSError(errno.EACCES)   # the drive has no executable files
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
        # type and inode with each name: libfuse turns them into d_type/d_ino, so `find`, `ls` and
        # rsync learn which entries are folders without a lookup per entry
        dir_mode, file_mode = self._owner.dir_mode(), self._owner.file_mode()
        entries: list[str | tuple[str, dict[str, int], int]] = [".", ".."]
        entries.extend(
            (child.name, {"st_ino": child.ino, "st_mode": dir_mode if child.is_folder else file_mode}, 0)
            for child in self._store.children(folder_id))
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
        if fi.flags & WRITE_FLAGS:
            return self._mutation("open for writing", path)
        node = self._node(path)
        if node.is_folder:
            raise FuseOSError(errno.EISDIR)
        key = content_key(node)
        handle = self._reader.open(node.id, key, node.size)
        fh, mode = self._handles.add_file(OpenFile(node.id, key, handle, node.ino, node=node))
        fi.fh = fh
        fi.keep_cache = 1 if mode.keep_cache else 0
        fi.direct_io = 1 if mode.direct_io else 0
        return 0

    @_guard
    def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
        entry = self._handles.file(fi.fh)
        if entry is None:
            raise FuseOSError(errno.EBADF)
        self._handles.note_read(entry)
        return self._reader.read(entry.reader_handle, offset, size)

    @_guard
    def release(self, path: str, fi: Any) -> int:
        entry = self._handles.pop_file(fi.fh)
        if entry is not None:
            self._reader.release(entry.reader_handle)
        return 0

    # ----- the write side: read-only until the write-back spool exists -----

    def _mutation(self, what: str, path: str) -> int:
        log.debug("refused %s of %s: the mount is read-only", what, path)
        raise FuseOSError(errno.EROFS)

    @_guard
    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return self._mutation("create", path)

    @_guard
    def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
        return self._mutation("write", path)

    @_guard
    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        return self._mutation("truncate", path)

    @_guard
    def mkdir(self, path: str, mode: int) -> int:
        return self._mutation("mkdir", path)

    @_guard
    def mknod(self, path: str, mode: int, dev: int) -> int:
        return self._mutation("mknod", path)

    @_guard
    def rmdir(self, path: str) -> int:
        return self._mutation("rmdir", path)

    @_guard
    def unlink(self, path: str) -> int:
        return self._mutation("unlink", path)

    @_guard
    def rename(self, old: str, new: str) -> int:
        return self._mutation("rename", old)

    @_guard
    def link(self, target: str, source: str) -> int:
        return self._mutation("link", target)

    @_guard
    def symlink(self, target: str, source: str) -> int:
        return self._mutation("symlink", target)

    @_guard
    def chmod(self, path: str, mode: int) -> int:
        return self._mutation("chmod", path)

    @_guard
    def chown(self, path: str, uid: int, gid: int) -> int:
        return self._mutation("chown", path)

    @_guard
    def utimens(self, path: str, times: Any = None) -> int:
        return self._mutation("utimens", path)

    @_guard
    def setxattr(self, path: str, name: str, value: bytes, options: int, position: int = 0) -> int:
        return self._mutation("setxattr", path)

    @_guard
    def removexattr(self, path: str, name: str) -> int:
        return self._mutation("removexattr", path)

