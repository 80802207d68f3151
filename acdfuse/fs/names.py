"""File names between the kernel and the drive: splitting paths and the limits a name must meet.

The kernel hands over names as bytes; the drive stores Unicode. The binding decodes them with
``surrogateescape`` (fs/binding.py), so a name that is not UTF-8 arrives with lone surrogates and
``check_name`` refuses it with EINVAL.
"""

from __future__ import annotations

import errno
import logging

from acdfuse.fs.attrs import NAME_MAX
from acdfuse.fs.binding import FuseOSError

log = logging.getLogger("acdfuse.fs.operations")


def split(path: str) -> tuple[str, str]:
    """'/a/b/c' -> ('/a/b', 'c'); '/c' -> ('/', 'c')."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return parent or "/", name


def check_name(name: str) -> None:
    """ENAMETOOLONG over 255 bytes, EINVAL for a name that is not valid UTF-8 (never EIO)."""
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise FuseOSError(errno.ENAMETOOLONG)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        # decoded with surrogateescape (see fs/binding.py): undecodable bytes arrive as lone surrogates
        log.info("refused the name %r: it is not valid UTF-8, which the drive cannot store", name)
        raise FuseOSError(errno.EINVAL) from None
