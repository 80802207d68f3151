"""Keeps the kernel's caches of the mount exact under long timeouts: after a sync, the kernel is told to
forget exactly the directory entries and attributes that the sync changed.

The kernel keeps a looked-up name (entry), a missing name (negative entry) and an inode's attributes
for as long as the mount's timeouts say, without asking again. Long timeouts make a repeated ``find``
or ``git status`` run from the kernel's caches, but a change on the server would then stay unseen.
So every sync ends with notices to the kernel (libfuse's low-level ``notify_*`` calls, which exist in
libfuse 2 and 3 alike): the entries at the old and the new place of every node that moved, appeared or
went, the attributes of every node that changed in place, and the folders around them. libfuse 3.12+
can expire an entry (the kernel asks again at its next use) rather than drop it; libfuse 2 drops it.

Those notices name kernel node ids, which the high-level libfuse API keeps to itself. The kernel
hands them out through ``name_to_handle_at(2)``: a FUSE file handle holds the node id. So the parent
folder's node id comes from a handle of its path on the mount, which only the kernel's own caches
answer unless the entry is unknown (then the kernel asks us, and there was nothing to forget below it).
This must never run on a libfuse worker thread: a lookup through our own mount would wait for itself.

The kernel's size of a file is one cache no notice can correct: ``inval_inode`` marks the attributes
stale, but the kernel goes on using the old size until it asks again, and a sync changes the store a
moment before its notices go out. A file opened meanwhile would get a handle on the new content while
the kernel ends reads at the old size (the new bytes cut short, or padded with zeros up to the old
size). ``KernelSizes`` keeps, for the files a sync changed, the size the kernel was last given, and an
open whose content has another size reads past the kernel's page cache and size (direct_io) instead.

Lock order: KernelCache._lock and KernelSizes._lock are leaves; no I/O under them.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

ROOT_NODEID = 1                 # FUSE_ROOT_ID: the mount's root, known without asking
AT_FDCWD = -100
FUSE_HANDLE_TYPES = (0x81, 0x82)   # the kernel's FUSE handles: node id (+ generation) [+ parent's]
# Past this many changed nodes one sync forgets everything below the root: cheaper than thousands of
# path walks, and a sync that big (a reset, a large import) rebuilds the caches either way.
TARGETED_MAX = 2000

Location = tuple[str, str]      # (the parent folder's drive path, the entry's name)


class Notifier(Protocol):
    """The kernel's invalidation calls (libfuse low level); each answers 0 or a negative errno."""

    def expire_entry(self, parent: int, name: str) -> int:
        """The kernel asks again at the next use of the name (drops it where expiring is unknown)."""

    def drop_entry(self, parent: int, name: str) -> int:
        """The entry and every cached entry below it are dropped now."""

    def inval_inode(self, nodeid: int) -> int:
        """The node's attributes and cached pages (a folder's: its listing) are forgotten."""


class Tree(Protocol):
    """What the store answers about the tree (acdfuse.store.NodeStore)."""

    def get(self, node_id: str) -> Any: ...
    def path_of(self, node_id: str) -> str | None: ...
    def root(self) -> Any: ...
    def children(self, folder_id: str) -> list[Any]: ...


HANDLE_BYTES = 64               # room for any FUSE handle (the kernel's are 12 or 24 bytes)


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * HANDLE_BYTES)]


_libc = ctypes.CDLL(None, use_errno=True)
_name_to_handle_at = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_FileHandle), ctypes.POINTER(ctypes.c_int),
    ctypes.c_int, use_errno=True)(("name_to_handle_at", _libc))
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
SYS_OPENAT2 = 437               # the same number on x86_64 and aarch64
RESOLVE_CACHED = 0x20           # openat2: fail with EAGAIN rather than ask the filesystem (Linux 5.12+)
AT_EMPTY_PATH = 0x1000


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def cached_nodeid(path: str | Path) -> int | None:
    """``kernel_nodeid`` from the kernel's caches alone: never a request to the filesystem, so it is
    safe on a libfuse worker thread. Raises BlockingIOError when the walk would have to ask (the
    entry is unknown, or is due to be checked); None when the cached answer is "no such entry"."""
    how = _OpenHow(flags=os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, mode=0, resolve=RESOLVE_CACHED)
    fd = int(_syscall(SYS_OPENAT2, AT_FDCWD, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise OSError(err, f"openat2: {os.strerror(err)}", str(path))
    try:
        fh = _FileHandle(handle_bytes=HANDLE_BYTES)
        mount_id = ctypes.c_int()
        if _name_to_handle_at(fd, b"", ctypes.byref(fh), ctypes.byref(mount_id), AT_EMPTY_PATH):
            err = ctypes.get_errno()
            raise OSError(err, f"name_to_handle_at: {os.strerror(err)}", str(path))
    finally:
        os.close(fd)
    if fh.handle_type not in FUSE_HANDLE_TYPES or fh.handle_bytes < 12:
        raise OSError(errno.EINVAL, f"not a FUSE file handle (type {fh.handle_type:#x})", str(path))
    high, low = struct.unpack_from("=II", bytes(fh.f_handle[:8]))
    return high << 32 | low


def kernel_nodeid(path: str | Path) -> int | None:
    """The FUSE node id the kernel uses for ``path`` on a FUSE mount; None when there is no such entry.

    Follows no symlink at the end. Raises OSError for anything else (not a FUSE mount, no handles).
    """
    fh = _FileHandle(handle_bytes=HANDLE_BYTES)
    mount_id = ctypes.c_int()
    if _name_to_handle_at(AT_FDCWD, os.fsencode(path), ctypes.byref(fh), ctypes.byref(mount_id), 0):
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.ENOTDIR, errno.ESTALE):
            return None
        raise OSError(err, f"name_to_handle_at: {os.strerror(err)}", str(path))
    if fh.handle_type not in FUSE_HANDLE_TYPES or fh.handle_bytes < 12:
        raise OSError(errno.EINVAL, f"not a FUSE file handle (type {fh.handle_type:#x})", str(path))
    high, low = struct.unpack_from("=II", bytes(fh.f_handle[:8]))
    return high << 32 | low


class LibfuseNotifier:
    """``Notifier`` over libfuse's low-level notify calls, for the session of one high-level mount.

    Made inside a FUSE callback (``from_callback``): only there does libfuse say which ``struct fuse``
    is ours. libfuse 2 sends notices through the session's channel, libfuse 3 through the session.
    """

    def __init__(self, lib: ctypes.CDLL, fuse: int) -> None:
        self.version = int(lib.fuse_version())
        get_session = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)(("fuse_get_session", lib))
        target = get_session(fuse)
        if self.version < 30:
            next_chan = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
                ("fuse_session_next_chan", lib))
            target = next_chan(target, None)
        if not target:
            raise OSError(errno.EINVAL, "libfuse has no session for this mount")
        self._target = target
        self._entry = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p,
                                       ctypes.c_size_t)(("fuse_lowlevel_notify_inval_entry", lib))
        self._inode = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64,
                                       ctypes.c_int64)(("fuse_lowlevel_notify_inval_inode", lib))
        # libfuse >= 3.12 on Linux >= 6.2 can expire an entry instead of dropping it: a folder that is a
        # working directory stays usable when it is still there, as after a timeout ran out
        self._expire: Any = None
        if self.version >= 312:
            self._expire = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p,
                                            ctypes.c_size_t)(("fuse_lowlevel_notify_expire_entry", lib))

    @classmethod
    def from_callback(cls, lib: ctypes.CDLL) -> LibfuseNotifier:
        """Call on a libfuse thread, inside a callback: ``fuse_get_context()->fuse`` names our mount."""
        get_context = ctypes.CFUNCTYPE(ctypes.POINTER(ctypes.c_void_p))(("fuse_get_context", lib))
        context = get_context()
        if not context or not context[0]:
            raise OSError(errno.EINVAL, "no FUSE context: not called from a libfuse callback")
        return cls(lib, context[0])

    def expire_entry(self, parent: int, name: str) -> int:
        if self._expire is not None:
            raw = os.fsencode(name)
            rc = int(self._expire(self._target, parent, raw, len(raw)))
            if rc != -errno.ENOSYS:
                return rc
            self._expire = None     # the kernel cannot: drop entries instead from now on
        return self.drop_entry(parent, name)

    def drop_entry(self, parent: int, name: str) -> int:
        raw = os.fsencode(name)
        return int(self._entry(self._target, parent, raw, len(raw)))

    def inval_inode(self, nodeid: int) -> int:
        # offset 0, length 0: the attributes and every cached page (a folder's: its listing)
        return int(self._inode(self._target, nodeid, 0, 0))


def places(tree: Tree, node_ids: Iterable[str]) -> dict[str, set[Location]]:
    """Where each node is now: (parent path, name) under every reachable parent; empty when gone."""
    found: dict[str, set[Location]] = {}
    parent_paths: dict[str, str | None] = {}
    for node_id in node_ids:
        at = found.setdefault(node_id, set())
        node = tree.get(node_id)
        if node is None or not node.is_available or node.is_root:
            continue
        for parent in node.parents:
            if parent not in parent_paths:
                parent_paths[parent] = tree.path_of(parent)
            path = parent_paths[parent]
            if path is not None:
                at.add((path, node.name))
    return found


class KernelSizes:
    """For the files a sync changed: the size the kernel was last given (see the module docstring).

    ``before_change`` runs before the store applies a sync and notes the sizes the store had, which the
    kernel may hold; every attribute answer (``told``) replaces a noted size with the one the kernel
    now gets; ``differs`` tells an open that the kernel's size is not its content's. After each sync the
    sizes that match the store again are dropped (``prune``), and at most ``limit`` are kept (the oldest
    go first: a kernel that has not asked about a file for that long has mostly forgotten it).
    """

    def __init__(self, tree: Tree, limit: int = 100_000) -> None:
        self._tree = tree
        self._limit = limit
        self._lock = threading.Lock()
        self._sizes: OrderedDict[str, int] = OrderedDict()      # node id -> size the kernel was given

    def before_change(self, node_ids: Iterable[str]) -> None:
        noted = []
        for node_id in node_ids:
            node = self._tree.get(node_id)
            if node is not None and node.is_file:
                noted.append((node_id, node.size))
        with self._lock:
            for node_id, size in noted:
                # an older noted size stays: the kernel has not been told anything since
                self._sizes.setdefault(node_id, size)
            while len(self._sizes) > self._limit:
                self._sizes.popitem(last=False)

    def told(self, node_id: str, size: int) -> None:
        """An attribute answer (getattr, lookup, READDIRPLUS) gave the kernel ``size``."""
        if node_id in self._sizes:
            with self._lock:
                if node_id in self._sizes:
                    self._sizes[node_id] = size

    def differs(self, node_id: str, size: int) -> bool:
        """The kernel may hold another size than ``size`` for the file."""
        held = self._sizes.get(node_id)
        return held is not None and held != size

    def prune(self) -> None:
        """Drop the sizes the store has again (run by the sync thread, between syncs)."""
        if not self._sizes:
            return
        with self._lock:
            noted = list(self._sizes.items())
        same = []
        for node_id, size in noted:
            node = self._tree.get(node_id)
            if node is None or not node.is_file or node.size == size:
                same.append((node_id, size))
        with self._lock:
            for node_id, size in same:
                if self._sizes.get(node_id) == size:
                    del self._sizes[node_id]

    def __len__(self) -> int:
        return len(self._sizes)


class KernelCache:
    """Turns each sync into the kernel invalidations it needs (see the module docstring).

    ``watch(get_changes)`` wraps the changes stream: once the stream has been read, before the store
    applies it, the places of the nodes it names are taken from the store. ``after_sync`` compares them
    with the places after the sync:
    - a place a node left or arrived at: its entry is forgotten (a rename, a move, a deletion, a new
      node where the kernel may remember a miss), and so are the folder's attributes (links, listing);
    - a node that stayed where it was (new content, new times): only its attributes are forgotten, so
      a folder that is some shell's working directory stays where it is.
    Until ``attach`` gives a notifier nothing is sent (then the kernel has nothing cached either).
    """

    def __init__(self, mountpoint: Path, tree: Tree,
                 nodeid_of: Callable[[str], int | None] = kernel_nodeid) -> None:
        self._mountpoint = str(mountpoint)
        self._tree = tree
        self._nodeid_of = nodeid_of
        self._lock = threading.Lock()
        self._notifier: Notifier | None = None
        self._before: dict[str, set[Location]] | None = None   # None: forget everything after this sync
        self._root_names: set[str] = set()
        self.sent = 0                                             # notices sent, for the log and tests
        self.sizes = KernelSizes(tree)

    def attach(self, notifier: Notifier) -> None:
        with self._lock:
            self._notifier = notifier

    def watch(self, get_changes: Callable[..., Iterable[Any]]) -> Callable[..., Iterator[Any]]:
        def changes(*args: Any, **kwargs: Any) -> Iterator[Any]:
            ids: set[str] = set()
            reset = False
            for changeset in get_changes(*args, **kwargs):
                reset = reset or bool(changeset.reset)
                if not reset and len(ids) <= TARGETED_MAX:
                    ids.update(node["id"] for node in changeset.nodes)
                    ids.update(p if isinstance(p, str) else p["id"] for p in changeset.purged_nodes)
                yield changeset
            # the stream is read; the store applies it only after this generator has ended
            self._note_before(None if reset or len(ids) > TARGETED_MAX else ids)

        return changes

    def _note_before(self, ids: set[str] | None) -> None:
        before = None if ids is None else places(self._tree, ids)
        names = self._root_children() if ids is None else set()
        if ids is not None:
            self.sizes.before_change(ids)
        with self._lock:
            self._before, self._root_names = before, names

    def _root_children(self) -> set[str]:
        root = self._tree.root()
        return {child.name for child in self._tree.children(root.id)} if root is not None else set()

    def forget_soon(self, *paths: str, now: bool = False) -> None:
        """Forget the kernel's entries at ``paths`` (drive paths), from a thread of its own: the caller
        may be a libfuse worker, which must not walk its own mount. For an answer that was true only
        for a while, such as a file still open at a path that leads nowhere (operations.py,
        _opened_at), which the kernel would otherwise keep for the whole entry timeout, or names in
        ``/.Trash`` that a trash or restore gave to other nodes (fs/trashview.py).

        ``now``: first forget, before returning, what the kernel's caches alone can name (see
        ``cached_nodeid``), so the caller's answer reaches the application after the kernel forgot; only
        for places whose folders the calling operation does not hold locked in the kernel (a notice
        about an entry of a folder waits for that folder's lock). The rest goes to the thread."""
        with self._lock:
            notifier = self._notifier
        places: set[Location] = set()
        for path in paths:
            if path not in ("", "/"):
                parent, _, name = path.rpartition("/")
                places.add((parent or "/", name))
        if notifier is None or not places:
            return
        if now:
            places = self._forget_cached(notifier, places)
            if not places:
                return

        def forget() -> None:
            try:
                self._forget(notifier, places, set())
            except OSError as exc:
                log.warning("kernel cache: cannot forget %s: %s", ", ".join(paths), exc)

        threading.Thread(target=forget, name="acdfuse-forget", daemon=True).start()

    def _forget_cached(self, notifier: Notifier, places: set[Location]) -> set[Location]:
        """Forget the places whose folder the kernel's caches name; returns those it could not."""
        left: set[Location] = set()
        done: dict[str, int | None] = {}
        for parent, name in places:
            if parent not in done:
                try:
                    done[parent] = cached_nodeid(self._on_mount(parent))
                except BlockingIOError:
                    left.add((parent, name))
                    continue
                except OSError as exc:
                    log.debug("kernel cache: %s is not at hand (%s); forgetting it later", parent, exc)
                    left.add((parent, name))
                    continue
            parent_id = done[parent]
            if parent_id is not None:
                notifier.expire_entry(parent_id, name)
                self.sent += 1
        for parent_id in {p for p in done.values() if p is not None}:
            notifier.inval_inode(parent_id)
            self.sent += 1
        return left

    def after_sync(self, changed: Iterable[str] | None, reset: bool) -> None:
        """Forget what the sync just applied changed: ``changed`` node ids, None meaning "anything"."""
        with self._lock:
            notifier = self._notifier
            before, root_names = self._before, self._root_names
            self._before, self._root_names = {}, set()
        self.sizes.prune()
        if notifier is None:
            return
        if reset or changed is None or before is None:
            self._forget_all(notifier, root_names | self._root_children())
            return
        after = places(self._tree, changed)
        moved: set[Location] = set()       # entries to forget: left or arrived at
        stayed: set[Location] = set()      # attributes to forget: the node is still there
        for node_id in before.keys() | after.keys():
            was, now = before.get(node_id, set()), after.get(node_id, set())
            moved |= was ^ now
            stayed |= was & now
        try:
            self._forget(notifier, moved, stayed)
        except OSError as exc:
            log.warning("kernel cache: cannot find changed places on the mount (%s); forgetting everything",
                        exc)
            self._forget_all(notifier, root_names | self._root_children())

    def _forget_all(self, notifier: Notifier, root_names: set[str]) -> None:
        """Every entry of the root (and so everything below it), and the root's attributes."""
        notifier.inval_inode(ROOT_NODEID)
        for name in root_names:
            notifier.drop_entry(ROOT_NODEID, name)
        self.sent += 1 + len(root_names)
        log.debug("kernel cache: forgot everything (%d entries of the root)", len(root_names))

    def _on_mount(self, folder: str, name: str | None = None) -> str:
        path = self._mountpoint + ("" if folder == "/" else folder)
        return path if name is None else os.path.join(path, name)

    def _forget(self, notifier: Notifier, moved: set[Location], stayed: set[Location]) -> None:
        sent = 0
        for parent, name in stayed:
            node = self._nodeid_of(self._on_mount(parent, name))
            if node is not None:
                notifier.inval_inode(node)
                sent += 1
        by_parent: dict[str, set[str]] = {}
        for parent, name in moved:
            by_parent.setdefault(parent, set()).add(name)
        # deepest first: their parents are still cached, so the walks ask us for nothing
        for parent in sorted(by_parent, key=lambda p: 0 if p == "/" else p.count("/"), reverse=True):
            parent_id = self._nodeid_of(self._on_mount(parent))
            if parent_id is None:
                continue        # the kernel knows nothing at that place
            for name in by_parent[parent]:
                notifier.expire_entry(parent_id, name)
            notifier.inval_inode(parent_id)     # its link count and listing
            sent += len(by_parent[parent]) + 1
        self.sent += sent
        log.debug("kernel cache: %d notices (%d entries moved, %d nodes changed in place)", sent, len(moved),
                  len(stayed))
