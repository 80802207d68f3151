"""The drive's trash as a folder of the mount: ``/.Trash``, and inside it the FreeDesktop trash folder of
the mount's owner, ``/.Trash/UID``, that GLib (``gio trash``, GNOME Files) and other trash tools use.

What this module decides (the operations in fs/trashops.py act on it):
- ``/.Trash`` lists every trashed node of the drive by name (as ``GET trash`` does); a trashed folder
  shows its content beneath it. It is not listed in the root folder (like ZFS's hidden ``.zfs``), so
  ``ls -a``, ``rsync -a`` and ``cp -a`` of the mount never take the trash along; it answers to its path.
- The drive lets the trash hold several nodes of one name; a folder cannot show them under one name.
  The newest (the last trashed: trashing stamps the modified date) keeps the plain name; each older one
  shows as ``stem (NODE_ID).ext``. A trashed node named like the owner's uid folder is shown so too.
- ``/.Trash`` is sticky and ``/.Trash/UID`` is owned by the mount's owner, so GLib chooses
  ``/.Trash/UID`` (the spec's shared trash, "$topdir/.Trash/$uid") and never makes ``.Trash-UID``
  folders on the drive. ``/.Trash/UID/files`` shows the same entries as ``/.Trash``; renaming a file
  into it trashes the node on the drive. ``/.Trash/UID/info`` holds one ``NAME.trashinfo`` per entry,
  made from the node (its original path and the time it was trashed), so tools that read the spec's
  info files see the whole drive trash; what a tool writes there is kept in memory only (a few).
- A real folder named ``.Trash`` at the drive's root wins: the view steps aside while it exists, and the
  mount shows that folder as it is.

Lock order: TrashView._lock is a leaf; the store is never called under it.
"""

from __future__ import annotations

import logging
import stat
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from acdfuse.fs.attrs import NAME_MAX, Ownership
from acdfuse.store.node import AVAILABLE, FILE, FOLDER, Node
from acdfuse.store.node import TRASH as TRASHED

log = logging.getLogger("acdfuse.fs.operations")

TRASH = "/.Trash"
INFO_SUFFIX = ".trashinfo"
# inode numbers of what only the view has; the mirror counts its own up from 2 and never gets near
_VIEW_INO = 1 << 62
_INFO_INO = 1 << 61         # | the entry's inode: the generated info file of that entry
_SCRATCH_INO = 1 << 60      # | a counter: an info file a tool wrote
SCRATCH_MAX = 64            # info files written by tools, kept in memory (GLib writes one per trashing)
# a sync that changed at most this many nodes is checked node by node for a change of the trash (point
# lookups); a bigger one lists the trash again (one scan of the mirror)
CHECK_MAX = 256

# the view's own folders, by id
ROOT, UID_DIR, FILES, INFO = "trash:root", "trash:uid", "trash:files", "trash:info"


class TrashStore(Protocol):
    def trashed(self) -> list[Node]: ...
    def get(self, node_id: str) -> Node | None: ...
    def child(self, folder_id: str, name: str) -> Node | None: ...
    def children(self, folder_id: str) -> list[Node]: ...
    def resolve(self, path: str) -> Node | None: ...
    def path_of(self, node_id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Found:
    """What a path in the view leads to. ``node``: the drive's node, or the view's own folder or info
    file as a Node; ``entry``: the top-level trashed node the path is in (None for the view's own
    folders); ``top``: the path names that entry itself; ``info``: an info file's bytes."""

    node: Node
    entry: Node | None = None
    top: bool = False
    info: bytes | None = None
    scratch: bool = False

    @property
    def virtual(self) -> bool:
        return self.node.id.startswith("trash:")


def decorated(name: str, node_id: str) -> str:
    """``report.pdf`` -> ``report (ID).pdf``: one of several trashed nodes of the same name."""
    stem, dot, ext = name.rpartition(".")
    if not stem:                        # no extension, or a dot file
        stem, dot, ext = name, "", ""
    tag = f" ({node_id})"
    room = NAME_MAX - len((tag + dot + ext).encode("utf-8"))
    stem = stem.encode("utf-8")[:max(room, 1)].decode("utf-8", "ignore")
    return f"{stem}{tag}{dot}{ext}"


def trash_path(path: str) -> bool:
    return path == TRASH or path.startswith(TRASH + "/")


class TrashView:
    """Path lookups and listings of ``/.Trash`` (see the module docstring). Built with the store and the
    mount's owner; ``changed()`` after anything that may have changed the trash (a sync, a local trash or
    restore) drops the listing and reports which names of the view the kernel must forget."""

    def __init__(self, store: TrashStore, owner: Ownership,
                 forget: Callable[..., None] | None = None,
                 pending: Callable[[str, str], Node | None] | None = None) -> None:
        """``forget(*paths, now=)`` makes the kernel forget entries (kernelcache.py); ``pending(folder
        id, name)`` finds a new file not uploaded yet (it goes to its folder even in the trash)."""
        self._store = store
        self._pending = pending
        self._owner = owner
        self._forget = forget
        self.uid_name = str(owner.uid)
        self._lock = threading.Lock()
        self._entries: dict[str, Node] | None = None      # shown name -> trashed node; None: stale
        self._shown: dict[str, Node] | None = None        # the last listing built: what the kernel
                                                           # may have been told, for changed()
        self._generation = 0                               # bumped by changed(): a listing built
                                                           # before it is not kept
        self._scratch: OrderedDict[str, bytes] = OrderedDict()
        self._scratch_ino: dict[str, int] = {}
        self._scratch_time: dict[str, float] = {}       # when a tool last wrote it: its mtime
        self._next_scratch = 1

    # ---- which nodes, under which names --------------------------------------------------------
    def active(self) -> bool:
        """False while the drive's root has a real folder or file named ``.Trash`` (it wins)."""
        return self._store.resolve(TRASH) is None

    def entries(self) -> dict[str, Node]:
        with self._lock:
            if self._entries is not None:
                return self._entries
            generation = self._generation
        entries = self._build()
        with self._lock:
            self._shown = entries
            if generation == self._generation:
                self._entries = entries
        return entries

    def _build(self) -> dict[str, Node]:
        by_name: dict[str, list[Node]] = {}
        for node in self._store.trashed():
            if node.name:
                by_name.setdefault(node.name, []).append(node)
        entries: dict[str, Node] = {}
        for name, nodes in by_name.items():
            nodes.sort(key=lambda n: (-n.modified, n.id))     # the last trashed first
            for i, node in enumerate(nodes):
                plain = i == 0 and name != self.uid_name
                entries[name if plain else decorated(name, node.id)] = node
        return entries

    def sync_changed(self, node_ids: set[str] | None) -> None:
        """After a sync that changed ``node_ids`` (None: anything): ``changed()`` unless none of them
        is or was in the trash, so a sync that did not touch the trash costs no listing of it."""
        if node_ids is not None and len(node_ids) <= CHECK_MAX:
            with self._lock:
                shown = self._shown
            if shown is None:
                return      # nobody looked since the last change: nothing to list again or forget
            was = {n.id for n in shown.values()}
            if not any(i in was for i in node_ids) and not any(
                    (n := self._store.get(i)) is not None and n.status == TRASHED for i in node_ids):
                return
        self.changed()

    def added(self, node: Node, now: bool = False) -> None:
        """``node`` was just trashed here: what ``changed()`` does, without listing the trash again
        (an rsync that replaces thousands of files trashes each one). The last trashed takes the plain
        name (see the module docstring), so only its name and the former holder's change."""
        with self._lock:
            old, self._entries = self._shown, None
            self._generation += 1
            if old is None:
                return      # nobody looked: the kernel holds nothing of the view
            shown = dict(old)
            for name in [n for n, e in shown.items() if e.id == node.id]:
                del shown[name]
            names = set()
            plain = node.name
            holder = shown.get(plain)
            if plain == self.uid_name:
                plain = decorated(plain, node.id)
            elif holder is not None:
                names.add(decorated(plain, holder.id))
                shown[decorated(plain, holder.id)] = holder
            shown[plain] = node
            names.add(plain)
            self._shown = shown
        self._forget_names(names, now)

    def changed(self, trashed_as: str | None = None, now: bool = False) -> None:
        """The trash may have changed: the next lookup lists it again. The names that now lead
        elsewhere (or nowhere, or somewhere new) are forgotten in the kernel, at ``/.Trash``, in
        ``files`` and in ``info``; ``trashed_as`` is a name a tool just renamed into ``files``.
        ``now``: the caller is an operation that holds no folder of the view locked in the kernel, so
        the kernel can forget before it answers (``rm x; cat /.Trash/x`` finds the file)."""
        with self._lock:
            old, self._entries = self._shown, None
            self._generation += 1
        if self._forget is None or (old is None and trashed_as is None):
            return      # nobody looked: the kernel holds nothing of the view
        names: set[str] = set()
        if old is not None:
            new = self.entries()
            for name in old.keys() | new.keys():
                before, after = old.get(name), new.get(name)
                if before is None or after is None or before.id != after.id:
                    names.add(name)
        if trashed_as is not None:
            names.add(trashed_as)
        self._forget_names(names, now)

    def _forget_names(self, names: set[str], now: bool) -> None:
        if not names or self._forget is None:
            return
        base = f"{TRASH}/{self.uid_name}"
        paths = [f"{TRASH}/{n}" for n in names] + [f"{base}/files/{n}" for n in names]
        paths += [f"{base}/info/{n}{INFO_SUFFIX}" for n in names]
        self._forget(*paths, now=now)

    # ---- lookups --------------------------------------------------------------------------------
    def _folder(self, node_id: str, name: str, n: int) -> Node:
        return Node(id=node_id, name=name, kind=FOLDER, status=AVAILABLE, parents=(), size=0, md5=None,
                     content_version=0, version=0, created=0.0, modified=0.0, ino=_VIEW_INO + n,
                     is_root=False)

    def _info_node(self, name: str, size: int, ino: int, modified: float) -> Node:
        return Node(id="trash:info:" + name, name=name, kind=FILE, status=AVAILABLE, parents=(), size=size,
                     md5=None, content_version=0, version=0, created=modified, modified=modified, ino=ino,
                     is_root=False)

    def resolve(self, path: str) -> Found | None:
        """What ``path`` (``/.Trash`` or below) leads to, None if nothing."""
        parts = [p for p in path[len(TRASH):].split("/") if p]
        if not parts:
            return Found(self._folder(ROOT, ".Trash", 0))
        if parts[0] == self.uid_name:
            if len(parts) == 1:
                return Found(self._folder(UID_DIR, self.uid_name, 1))
            if parts[1] == "files":
                if len(parts) == 2:
                    return Found(self._folder(FILES, "files", 2))
                return self._in_entry(parts[2], parts[3:])
            if parts[1] == "info":
                if len(parts) == 2:
                    return Found(self._folder(INFO, "info", 3))
                if len(parts) == 3:
                    return self._info(parts[2])
            return None
        return self._in_entry(parts[0], parts[1:])

    def _in_entry(self, name: str, rest: list[str]) -> Found | None:
        entry = self.entries().get(name)
        if entry is None:
            return None
        node = entry
        for part in rest:
            if not node.is_folder:
                return None
            child = self._store.child(node.id, part)
            if child is None and self._pending is not None:
                child = self._pending(node.id, part)
            if child is None:
                return None
            node = child
        return Found(node, entry=entry, top=not rest)

    def _info(self, name: str) -> Found | None:
        with self._lock:
            data = self._scratch.get(name)
            ino = self._scratch_ino.get(name, 0)
            written = self._scratch_time.get(name, 0.0)
        if data is not None:
            return Found(self._info_node(name, len(data), ino, written), info=data, scratch=True)
        if not name.endswith(INFO_SUFFIX):
            return None
        entry = self.entries().get(name[:-len(INFO_SUFFIX)])
        if entry is None:
            return None
        data = self.info_text(entry)
        return Found(self._info_node(name, len(data), _INFO_INO | entry.ino, entry.modified), entry=entry,
                     info=data)

    def info_text(self, entry: Node) -> bytes:
        """The spec's info file of a trashed node: where it was (relative to the mount, as GLib writes
        it for a trash that is not in the home folder) and when it was trashed (local time)."""
        where = None
        for parent in entry.parents:
            where = self._store.path_of(parent)
            if where is not None:
                break
        original = ((where or "/").rstrip("/") + "/" + entry.name).lstrip("/")
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(entry.modified))
        return (f"[Trash Info]\nPath={urllib.parse.quote(original, safe='/')}\n"
                f"DeletionDate={when}\n").encode()

    # ---- listings and attributes ------------------------------------------------------------------
    def listing(self, folder_id: str) -> list[tuple[str, Node]]:
        """(name, node) of one of the view's own folders."""
        if folder_id == UID_DIR:
            return [("files", self._folder(FILES, "files", 2)), ("info", self._folder(INFO, "info", 3))]
        if folder_id == INFO:
            out: dict[str, Node] = {}
            for name in self.entries():
                found = self._info(name + INFO_SUFFIX)
                if found is not None:
                    out[name + INFO_SUFFIX] = found.node
            with self._lock:
                scratch = list(self._scratch)
            for name in scratch:
                found = self._info(name)
                if found is not None:
                    out[name] = found.node
            return sorted(out.items())
        listed = sorted(self.entries().items())
        if folder_id == ROOT:
            listed.insert(0, (self.uid_name, self._folder(UID_DIR, self.uid_name, 1)))
        return listed

    def attrs(self, found: Found, attrs: dict[str, int]) -> dict[str, int]:
        """A stat of something in the view, from the one ``node_attrs`` made: read-only for the trash
        itself; sticky ``/.Trash`` and the owner's own folders for the desktop's trash."""
        node = found.node
        writable = self._owner.writable
        if node.id == ROOT:
            mode = stat.S_IFDIR | (0o1777 if writable else 0o1555)
        elif node.id in (UID_DIR, FILES, INFO):
            mode = stat.S_IFDIR | (0o700 if writable else 0o500)
        elif found.info is not None:
            mode = stat.S_IFREG | (0o600 if writable and found.scratch else 0o400)
        else:
            # the drive's trash: readable, never writable in place (see the module docstring)
            mode = attrs["st_mode"] & ~0o222
        out = dict(attrs, st_mode=mode)
        if found.virtual:
            out.update(st_uid=self._owner.uid, st_gid=self._owner.gid)
        return out

    # ---- info files written by tools ------------------------------------------------------------
    def info_name(self, path: str) -> str | None:
        """The file name when ``path`` is a file directly in the owner's ``info`` folder."""
        prefix = f"{TRASH}/{self.uid_name}/info/"
        if path.startswith(prefix) and "/" not in path[len(prefix):] and len(path) > len(prefix):
            return path[len(prefix):]
        return None

    def files_name(self, path: str) -> str | None:
        """The name when ``path`` is an entry directly in the owner's ``files`` folder."""
        prefix = f"{TRASH}/{self.uid_name}/files/"
        if path.startswith(prefix) and "/" not in path[len(prefix):] and len(path) > len(prefix):
            return path[len(prefix):]
        return None

    def put_scratch(self, name: str, data: bytes) -> None:
        with self._lock:
            if name not in self._scratch_ino:
                self._scratch_ino[name] = _SCRATCH_INO | self._next_scratch
                self._next_scratch += 1
            self._scratch[name] = data
            self._scratch_time[name] = time.time()
            self._scratch.move_to_end(name)
            while len(self._scratch) > SCRATCH_MAX:
                dropped, _ = self._scratch.popitem(last=False)
                self._scratch_ino.pop(dropped, None)
                self._scratch_time.pop(dropped, None)

    def scratch(self, name: str) -> bytes | None:
        with self._lock:
            return self._scratch.get(name)

    def drop_scratch(self, name: str) -> bool:
        with self._lock:
            self._scratch_ino.pop(name, None)
            self._scratch_time.pop(name, None)
            return self._scratch.pop(name, None) is not None

    def rename_scratch(self, old: str, new: str) -> bool:
        with self._lock:
            data = self._scratch.pop(old, None)
            ino = self._scratch_ino.pop(old, None)
            written = self._scratch_time.pop(old, 0.0)
            if data is None or ino is None:
                return False
            self._scratch[new] = data
            self._scratch_ino[new] = ino
            self._scratch_time[new] = written
            return True

