"""Stat and statfs dictionaries in fusepy's shape, built from store nodes and the account quota."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

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

    def dir_mode(self) -> int:
        base = 0o777 if self.writable else 0o555
        return stat.S_IFDIR | (base & ~self.umask)

    def file_mode(self) -> int:
        base = 0o666 if self.writable else 0o444
        return stat.S_IFREG | (base & ~self.umask)


def node_attrs(node: Node, owner: Ownership, nlink: int = 1) -> dict[str, int | float]:
    """A stat result for a node: real size and times, the store's stable inode."""
    if node.is_folder:
        mode = owner.dir_mode()
        size = 0
    else:
        mode = owner.file_mode()
        size = node.size
    return {
        "st_mode": mode,
        "st_ino": node.ino,
        "st_nlink": nlink,
        "st_uid": owner.uid,
        "st_gid": owner.gid,
        "st_size": size,
        "st_blocks": (size + 511) // 512,
        "st_blksize": IO_SIZE,
        "st_atime": node.modified,
        "st_mtime": node.modified,
        # the drive has no inode change time; the last modification is the closest truth
        "st_ctime": node.modified,
    }


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
