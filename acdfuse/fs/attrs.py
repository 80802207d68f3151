"""Stat and statfs dictionaries in the binding's shape, built from store nodes and the account quota."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from acdfuse.store.node import FOLDER
from acdfuse.vfs.posixattrs import stat_fields

if TYPE_CHECKING:
    from acdfuse.store import Node

BLOCK_SIZE = 4096
# what stat reports as the preferred I/O size: one kernel FUSE read request, so tools that size their
# buffers by st_blksize (Python, cp) ask for whole requests
IO_SIZE = 128 * 1024
NAME_MAX = 255   # the kernel's own limit; the server allows 280 characters, which never reach us


@dataclass(frozen=True)
class Ownership:
    """Who owns every entry, and with which permission bits (the drive has neither)."""

    uid: int
    gid: int
    umask: int
    writable: bool = False
    _dir_mode: int = field(init=False, repr=False, compare=False, default=0)
    _file_mode: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        # computed once: every stat needs one of them
        base = 0o777 if self.writable else 0o555
        object.__setattr__(self, "_dir_mode", stat.S_IFDIR | (base & ~self.umask))
        base = 0o666 if self.writable else 0o444
        object.__setattr__(self, "_file_mode", stat.S_IFREG | (base & ~self.umask))

    def dir_mode(self) -> int:
        return self._dir_mode

    def file_mode(self) -> int:
        return self._file_mode


def node_attrs(node: Node, owner: Ownership, nlink: int = 1) -> dict[str, int]:
    """A stat result for a node: real size, the store's stable inode, and the POSIX attributes the node
    keeps in its properties (vfs/posixattrs.py) over the mount's defaults.

    Times are integer nanoseconds (the Operations class sets the binding's ``use_ns``), so an mtime set with
    nanoseconds comes back exactly. The drive keeps no atime: it is the mtime. The ctime is the mtime
    too, or the time a tool last changed the record when that is later (posixattrs, field ``k``).
    """
    mtime = round(node.modified * 1000) * 1_000_000   # the server's dates are milliseconds
    changed = 0
    uid, gid = owner.uid, owner.gid
    if node.kind == FOLDER:
        mode = owner._dir_mode
        size = 0
    else:
        mode = owner._file_mode
        size = node.size
    if node.posix is not None:
        fields = stat_fields(node.posix)
        if fields is not None:
            perms, r_uid, r_gid, r_mtime, r_cv, is_link, r_ctime = fields
            if is_link and node.kind != FOLDER:
                mode = stat.S_IFLNK | (0o777 if perms is None else perms)
            elif perms is not None:
                mode = stat.S_IFMT(mode) | perms   # the type is the node's kind, whatever the record says
            if r_uid is not None:
                uid = r_uid
            if r_gid is not None:
                gid = r_gid
            # an mtime set for older content does not describe this content (see posixattrs)
            if r_mtime is not None and (r_cv is None or r_cv == node.content_version):
                mtime = r_mtime
            if r_ctime is not None:
                changed = r_ctime
    return {
        "st_mode": mode,
        "st_ino": node.ino,
        "st_nlink": nlink,
        "st_uid": uid,
        "st_gid": gid,
        "st_size": size,
        "st_blocks": (size + 511) // 512,
        "st_blksize": IO_SIZE,
        "st_atime": mtime,
        "st_mtime": mtime,
        "st_ctime": changed if changed > mtime else mtime,
    }


def entry_mode(node: Node, dir_mode: int, file_mode: int) -> int:
    """The st_mode readdir reports with a name (only its type bits matter to the kernel)."""
    if node.is_folder:
        return dir_mode
    if node.posix is not None:
        fields = stat_fields(node.posix)
        if fields is not None and fields[5]:
            return stat.S_IFLNK | 0o777
    return file_mode


def statfs_attrs(total: int, available: int) -> dict[str, int]:
    """A statvfs result from the account quota, in BLOCK_SIZE units."""
    total = max(total, 0)
    available = min(max(available, 0), total) if total else max(available, 0)
    return {
        "f_bsize": BLOCK_SIZE,
        "f_frsize": BLOCK_SIZE,
        "f_blocks": total // BLOCK_SIZE,
        "f_bfree": available // BLOCK_SIZE,
        "f_bavail": available // BLOCK_SIZE,
        "f_namemax": NAME_MAX,
    }
